// One in-memory libvirt for the agent's unit and model-based tests. It implements the agent's port
// (src/agent/libvirt-port.ts) with the behaviour of libvirtd 9.0 as far as the agent can observe it.
//
// Checked against the real libvirtd (test/integration/libvirt/nwfilter.test.ts and domain.test.ts
// assert the same on the real daemon):
// - redefining a filter name with another UUID fails ("already exists with uuid");
// - a define that would create a reference loop fails; a define of malformed XML fails;
// - undefine of a filter another filter references, or a running interface uses, fails "in use";
// - a running interface cannot bind a filter whose tree is incomplete (the update fails, the old
//   binding stays), and a domain whose interfaces reference a missing filter does not start;
// - QEMU emits device-added for a live hot-plug and no event for a --config-only device change
//   (test/integration/libvirt/device-events.test.ts, fail-closed.test.ts fault 5).
// Assumed (not observable through the port in a way the agent depends on): a define that
// references a filter that does not exist yet is accepted; undefine of a filter referenced only by
// a shut-off domain's persistent definition is accepted.
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { randomUUID } from 'node:crypto';
import type { AgentLibvirt, DomainEvent, DomainInfo, LibvirtErrorKind } from '../../src/agent/libvirt-port.js';

export class FakeLibvirtError extends Error {
  override name = 'FakeLibvirtError';
  constructor(
    readonly kind: LibvirtErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export interface FakeBinding {
  filter: string;
  parameters: { name: string; value: string }[];
}

export interface FakeInterface {
  mac: string;
  filterref?: FakeBinding;
  /** Live only: the host-side device. */
  target?: string;
}

interface FakeDomain {
  name: string;
  uuid: string;
  persistent: boolean;
  active: boolean;
  config: FakeInterface[];
  live: FakeInterface[];
}

/** What migrates: the running domain's definition. */
export interface DomainSnapshot {
  name: string;
  uuid: string;
  interfaces: FakeInterface[];
}

// XML 1.0 Char production: anything else makes libxml2 refuse the document.
// eslint-disable-next-line no-control-regex
const NOT_XML_CHAR = /[^\u0009\u000A\u000D\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (n) => ['filterref', 'parameter', 'rule'].includes(n) });

const clone = <T>(v: T): T => structuredClone(v);

export class FakeLibvirt implements AgentLibvirt {
  private readonly filters = new Map<string, { uuid: string; xml: string; refs: string[] }>();
  private readonly domains = new Map<string, FakeDomain>();
  private readonly handlers: ((e: DomainEvent) => void)[] = [];
  private connected = true;
  private tapSeq = 0;
  private readonly failures: { op: string; kind: LibvirtErrorKind }[] = [];
  /** Filter names whose define libvirt refuses as invalid, as long as they are listed. */
  readonly refused = new Set<string>();
  /** Calls per method of the port. */
  readonly calls: Record<string, number> = {};
  /** Writes: define, undefine, update-device. */
  writes = 0;
  /** Interfaces rebuilt because a filter they use was redefined. */
  rebuilds = 0;
  /** Called after every write (for invariant checks in the middle of an agent's work). */
  onWrite: ((what: string) => void) | undefined;

  // ---- the port ----

  private async enter(op: string): Promise<void> {
    this.calls[op] = (this.calls[op] ?? 0) + 1;
    await new Promise((r) => setImmediate(r));
    if (!this.connected) throw new FakeLibvirtError('disconnected', `${op}: not connected to libvirtd`);
    const i = this.failures.findIndex((f) => f.op === op);
    if (i >= 0) {
      const [f] = this.failures.splice(i, 1);
      throw new FakeLibvirtError(f!.kind, `${op}: injected failure`);
    }
  }

  private wrote(what: string): void {
    this.writes++;
    this.onWrite?.(what);
  }

  async listFilters(): Promise<{ name: string; uuid: string }[]> {
    await this.enter('listFilters');
    return [...this.filters].map(([name, f]) => ({ name, uuid: f.uuid }));
  }

  async filterXml(name: string): Promise<string | undefined> {
    await this.enter('filterXml');
    return this.filters.get(name)?.xml;
  }

  async defineFilter(xml: string): Promise<void> {
    await this.enter('defineFilter');
    if (NOT_XML_CHAR.test(xml) || XMLValidator.validate(xml) !== true) throw new FakeLibvirtError('invalid', 'XML error: document is not well-formed');
    const doc = parser.parse(xml) as { filter?: { name?: string; uuid?: string; filterref?: { filter: string }[] } };
    const f = doc.filter;
    if (!f?.name) throw new FakeLibvirtError('invalid', 'invalid nwfilter: missing name');
    if (this.refused.has(f.name)) throw new FakeLibvirtError('invalid', `invalid nwfilter '${f.name}': refused by the test`);
    const existing = this.filters.get(f.name);
    if (existing && f.uuid && existing.uuid !== f.uuid.toLowerCase()) throw new FakeLibvirtError('invalid', `filter '${f.name}' already exists with uuid ${existing.uuid}`);
    const refs = (f.filterref ?? []).map((r) => r.filter);
    if (this.reaches(refs, f.name)) throw new FakeLibvirtError('invalid', `filter '${f.name}' would introduce a loop`);
    const next = { uuid: existing?.uuid ?? f.uuid?.toLowerCase() ?? randomUUID(), xml, refs };
    // libvirt rebuilds every running interface that uses the filter; it fails (and keeps the old
    // definition) when one of them could not be instantiated any more.
    const users = this.liveInterfaces().filter((i) => i.filterref && this.treeOf(i.filterref.filter).has(f.name!));
    const saved = existing;
    this.filters.set(f.name, next);
    if (users.some((i) => this.missingIn(i.filterref!.filter).length > 0)) {
      if (saved) this.filters.set(f.name, saved);
      else this.filters.delete(f.name);
      throw new FakeLibvirtError('other', `cannot instantiate filter '${f.name}' on running interfaces`);
    }
    this.rebuilds += users.length;
    this.wrote(`define ${f.name}`);
  }

  async undefineFilter(name: string): Promise<void> {
    await this.enter('undefineFilter');
    if (!this.filters.has(name)) throw new FakeLibvirtError('not-found', `Network filter not found: no nwfilter with matching name '${name}'`);
    const referenced = [...this.filters.values()].some((f) => f.refs.includes(name));
    const bound = this.liveInterfaces().some((i) => i.filterref?.filter === name);
    if (referenced || bound) throw new FakeLibvirtError('in-use', 'nwfilter is in use');
    this.filters.delete(name);
    this.wrote(`undefine ${name}`);
  }

  async listDomains(): Promise<DomainInfo[]> {
    await this.enter('listDomains');
    return this.listDomainsSync();
  }

  async domainXml(uuid: string, inactive: boolean): Promise<string> {
    await this.enter('domainXml');
    const d = this.domain(uuid);
    const view = inactive && d.persistent ? d.config : d.active ? d.live : d.config;
    const ifaces = view
      .map((i) => {
        const ref = i.filterref
          ? `<filterref filter='${i.filterref.filter}'>${i.filterref.parameters.map((p) => `<parameter name='${p.name}' value='${p.value}'/>`).join('')}</filterref>`
          : '';
        const target = !inactive && i.target ? `<target dev='${i.target}'/>` : '';
        return `<interface type='ethernet'><mac address='${i.mac}'/>${target}<model type='virtio'/>${ref}</interface>`;
      })
      .join('');
    return `<domain type='qemu'><name>${d.name}</name><uuid>${d.uuid}</uuid><devices>${ifaces}</devices></domain>`;
  }

  async updateDevice(uuid: string, deviceXml: string, target: { live: boolean; config: boolean }): Promise<void> {
    await this.enter('updateDevice');
    const d = this.domain(uuid);
    const doc = parser.parse(deviceXml) as { interface?: { mac?: { address?: string }; filterref?: { filter: string; parameter?: { name: string; value: string }[] }[] } };
    const mac = doc.interface?.mac?.address?.toLowerCase();
    if (!mac) throw new FakeLibvirtError('invalid', 'XML error: missing mac address');
    const ref = doc.interface?.filterref?.[0];
    const binding: FakeBinding | undefined = ref ? { filter: ref.filter, parameters: (ref.parameter ?? []).map((p) => ({ name: p.name, value: String(p.value) })) } : undefined;
    if (target.live && !d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is not running');
    if (target.config && !d.persistent) throw new FakeLibvirtError('other', 'Requested operation is not valid: cannot modify device on transient domain');
    const views = [...(target.config ? [d.config] : []), ...(target.live ? [d.live] : [])];
    for (const v of views) if (!v.some((i) => i.mac === mac)) throw new FakeLibvirtError('other', `operation failed: no device matching MAC address ${mac} found`);
    if (target.live && binding && this.missingIn(binding.filter).length > 0) {
      throw new FakeLibvirtError('other', `referenced filter '${this.missingIn(binding.filter)[0]}' is missing`);
    }
    for (const v of views) {
      const iface = v.find((i) => i.mac === mac)!;
      if (binding) iface.filterref = clone(binding);
      else delete iface.filterref;
    }
    this.wrote(`update-device ${d.name} ${mac}`);
  }

  onDomainEvent(handler: (e: DomainEvent) => void): void {
    this.handlers.push(handler);
  }

  isConnected(): boolean {
    return this.connected;
  }

  classify(err: unknown): LibvirtErrorKind {
    return err instanceof FakeLibvirtError ? err.kind : 'other';
  }

  async close(): Promise<void> {}

  // ---- test controls ----

  private emit(d: { uuid: string; name: string }, kind: DomainEvent['kind']): void {
    if (!this.connected) return;
    const e: DomainEvent = { uuid: d.uuid, name: d.name, kind };
    setImmediate(() => this.handlers.forEach((h) => h(e)));
  }

  private domain(uuid: string): FakeDomain {
    const d = this.domains.get(uuid.toLowerCase());
    if (!d) throw new FakeLibvirtError('not-found', `Domain not found: no domain with matching uuid '${uuid}'`);
    return d;
  }

  private liveInterfaces(): FakeInterface[] {
    return [...this.domains.values()].flatMap((d) => (d.active ? d.live : []));
  }

  private reaches(from: string[], target: string, seen = new Set<string>()): boolean {
    for (const r of from) {
      if (r === target) return true;
      if (seen.has(r)) continue;
      seen.add(r);
      if (this.reaches(this.filters.get(r)?.refs ?? [], target, seen)) return true;
    }
    return false;
  }

  /** Names of the filters `name`'s tree needs (itself included). */
  treeOf(name: string, out = new Set<string>()): Set<string> {
    if (out.has(name)) return out;
    out.add(name);
    for (const r of this.filters.get(name)?.refs ?? []) this.treeOf(r, out);
    return out;
  }

  /** Filters of the tree that do not exist (libvirt's own clean-traffic is assumed present). */
  missingIn(name: string): string[] {
    return [...this.treeOf(name)].filter((n) => n !== 'clean-traffic' && !this.filters.has(n));
  }

  failNext(op: string, kind: LibvirtErrorKind): void {
    this.failures.push({ op, kind });
  }

  listDomainsSync(): DomainInfo[] {
    return [...this.domains.values()].map((d) => ({ name: d.name, uuid: d.uuid, active: d.active, persistent: d.persistent }));
  }

  interfacesOf(uuid: string, view: 'config' | 'live'): FakeInterface[] {
    const d = this.domains.get(uuid.toLowerCase());
    if (!d) return [];
    if (view === 'config') return d.persistent ? clone(d.config) : [];
    return d.active ? clone(d.live) : [];
  }

  filterXmlSync(name: string): string | undefined {
    return this.filters.get(name)?.xml;
  }

  filterUuid(name: string): string | undefined {
    return this.filters.get(name)?.uuid;
  }

  defineDomain(o: { name: string; uuid?: string; interfaces: FakeInterface[] }): string {
    const uuid = (o.uuid ?? randomUUID()).toLowerCase();
    if ([...this.domains.values()].some((d) => d.name === o.name && d.uuid !== uuid)) throw new FakeLibvirtError('other', `domain '${o.name}' already exists`);
    const existing = this.domains.get(uuid);
    this.domains.set(uuid, {
      name: o.name,
      uuid,
      persistent: true,
      active: existing?.active ?? false,
      config: clone(o.interfaces.map((i) => ({ ...i, mac: i.mac.toLowerCase() }))),
      live: existing?.live ?? [],
    });
    this.emit({ uuid, name: o.name }, 'defined');
    return uuid;
  }

  private liveCopy(ifaces: FakeInterface[]): FakeInterface[] {
    return ifaces.map((i) => ({ ...clone(i), target: `vnet${this.tapSeq++}` }));
  }

  async startDomain(uuid: string): Promise<void> {
    const d = this.domain(uuid);
    if (d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is already running');
    const missing = d.config.flatMap((i) => (i.filterref ? this.missingIn(i.filterref.filter) : []));
    if (missing.length) throw new FakeLibvirtError('other', `referenced filter '${missing[0]}' is missing`);
    d.live = this.liveCopy(d.config);
    d.active = true;
    this.emit(d, 'started');
  }

  async stopDomain(uuid: string): Promise<void> {
    const d = this.domain(uuid);
    if (!d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is not running');
    d.active = false;
    d.live = [];
    if (!d.persistent) this.domains.delete(d.uuid);
    this.emit(d, 'stopped');
  }

  async undefineDomain(uuid: string): Promise<void> {
    const d = this.domain(uuid);
    if (!d.persistent) throw new FakeLibvirtError('other', 'Requested operation is not valid: cannot undefine transient domain');
    if (d.active) {
      d.persistent = false;
      d.config = [];
    } else {
      this.domains.delete(d.uuid);
    }
    this.emit(d, 'undefined');
  }

  /** The running domain as it would be migrated. */
  snapshot(uuid: string): DomainSnapshot {
    const d = this.domain(uuid);
    if (!d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is not running');
    return { name: d.name, uuid: d.uuid, interfaces: clone(d.live).map(({ target: _t, ...i }) => i) };
  }

  /**
   * A domain arrives by live migration (`virsh migrate --live --persistent --undefinesource`):
   * it fails, and the domain does not appear, when a filter its interfaces reference is missing here.
   */
  async migrateIn(s: DomainSnapshot): Promise<void> {
    if (!this.connected) throw new FakeLibvirtError('disconnected', 'migrate: destination unreachable');
    if (this.domains.has(s.uuid) || [...this.domains.values()].some((d) => d.name === s.name)) throw new FakeLibvirtError('other', `domain '${s.name}' already exists`);
    const missing = s.interfaces.flatMap((i) => (i.filterref ? this.missingIn(i.filterref.filter) : []));
    if (missing.length) throw new FakeLibvirtError('other', `referenced filter '${missing[0]}' is missing`);
    const live = this.liveCopy(s.interfaces);
    this.domains.set(s.uuid, { name: s.name, uuid: s.uuid, persistent: true, active: true, config: clone(s.interfaces), live });
    this.emit(s, 'migrated');
  }

  /** The source side of a completed migration with --undefinesource: the domain is gone. */
  async migrateOut(uuid: string): Promise<void> {
    const d = this.domain(uuid);
    this.domains.delete(d.uuid);
    this.emit(d, 'migrated');
  }

  /** attach-device: live changes send device-added; a --config-only change sends no event (like QEMU). */
  async hotplugInterface(uuid: string, iface: FakeInterface, target: { live: boolean; config: boolean }): Promise<void> {
    const d = this.domain(uuid);
    if (target.live && !d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is not running');
    const mac = iface.mac.toLowerCase();
    if (target.live && iface.filterref && this.missingIn(iface.filterref.filter).length) throw new FakeLibvirtError('other', 'referenced filter is missing');
    if (target.config && d.persistent) d.config.push(clone({ ...iface, mac }));
    if (target.live) {
      d.live.push(...this.liveCopy([{ ...iface, mac }]));
      this.emit(d, 'device-added');
    }
  }

  disconnect(): void {
    this.connected = false;
  }

  reconnect(): void {
    this.connected = true;
    setImmediate(() => this.handlers.forEach((h) => h({ uuid: '', name: '', kind: 'reconnected' })));
  }
}
