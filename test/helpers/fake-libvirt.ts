// One in-memory libvirt for the agent's unit and model-based tests. It implements the agent's port
// (src/agent/libvirt-port.ts) with the behaviour of libvirtd 9.0 as far as the agent can observe it;
// test/unit/agent/fake-libvirt.test.ts pins every rule below down.
//
// VERIFIED against the real libvirtd 9.0.0 (QEMU 7.2, TCG guests with type='ethernet' NICs) with
// `virsh -c qemu:///system` (nwfilter-define, nwfilter-undefine, define, start, destroy, undefine,
// create, update-device --live/--config, attach-device/detach-device --live/--config, and
// `virsh event --all --loop` for the events), and through the production port
// (connectAgentLibvirt, src/agent/libvirt-adapter.ts) for the error codes, e.g.
//   virsh nwfilter-define f.xml; virsh nwfilter-undefine f; virsh define d.xml; virsh start d;
//   virsh update-device d nic.xml --live --config; virsh attach-device d nic.xml --config;
//   virsh undefine d (running); virsh create t.xml; virsh event --all --loop
// (throwaway names, removed afterwards):
// - nwfilter-define of a filter whose <filterref> names a filter that does not exist: ACCEPTED.
//   Only binding it fails later (start, create, update-device --live, attach-device --live).
// - Redefining a name with another <uuid>: "operation failed: filter 'x' already exists with uuid U".
//   The same for a redefinition WITHOUT <uuid> (libvirt gives the new definition a random UUID
//   first). A new name with a UUID another filter has: "filter with same UUID but different name".
//   UUIDs compare case-insensitively.
// - A reference cycle, self-reference included: "operation failed: filter would introduce a loop";
//   the old definition stays.
// - Not well-formed XML, U+FFFE, U+FFFF, C0 controls other than tab/LF/CR (raw or as &#N;),
//   undefined entities, a bare '&', '<' in an attribute, two root elements, text after the root:
//   refused (libxml2, error code 35 VIR_ERR_XML_DETAIL). Tab, LF, CR are accepted. A lone UTF-16
//   surrogate is ACCEPTED through the port: the client encodes it as U+FFFD.
// - nwfilter-undefine of a missing name: "Network filter not found" (not-found).
// - nwfilter-undefine of a filter ONLY another filter references: ACCEPTED (the referencing filter
//   then points at a missing filter). Of a filter in the tree of a RUNNING interface, directly or
//   through other filters: "Requested operation is not valid: nwfilter is in use" (in-use).
//   Of a filter referenced only by a domain's persistent (inactive) definition, directly or through
//   other filters, running domain or not: ACCEPTED.
// - Redefining a filter in a running interface's tree so that the tree misses a filter: refused,
//   "internal error: referenced filter 'x' is missing", the old definition stays.
// - start, create (transient) of a domain with an interface whose tree misses a filter (directly
//   or deeper): "internal error: referenced filter 'x' is missing"; the domain stays shut off / is
//   not created, and no lifecycle event at all is sent.
// - update-device --live on a shut-off domain: "Requested operation is not valid: domain is not
//   running" (also with --config: nothing changes). --config on a transient domain: "Requested
//   operation is not valid: transient domains do not have any persistent config".
// - update-device --live naming a missing filter (or an incomplete tree): "operation failed: failed
//   to add new filter rules to 'vnetN' - attempting to restore old rules"; with --live --config
//   NEITHER view changes. --config alone with a missing filter: accepted.
// - update-device with a MAC the view does not have: "device not found: no device found at address
//   '(<null>)' matching MAC address 'M' ..." (code 99); MACs compare case-insensitively.
// - update-device and attach/detach-device --config send NO event (running or shut off).
//   attach-device --live sends device-added, detach-device --live device-removed (a USB NIC; a
//   filterref to a missing filter makes attach --live fail); define sends defined (Added/Updated);
//   undefine of a running persistent domain makes it transient and sends undefined; destroy of a
//   transient domain removes it (stopped).
// - domain XML of a shut-off domain without the inactive flag is its persistent definition; with the
//   inactive flag a transient domain gives its running definition without runtime details.
// - unknown domain UUID for domain XML / update-device: "Domain not found" (not-found).
//
// ASSUMED (not verified here):
// - Migration (one host only): the destination refuses a domain whose interfaces reference a filter
//   it lacks, before the domain appears (same code path as start: the filters are instantiated when
//   the incoming QEMU starts). Events: 'migrated' (STARTED/MIGRATED, mapped by src/libvirt/events.ts)
//   then 'defined' on a persistent destination (libvirt's migration Finish persists the definition);
//   'migrated' (STOPPED/MIGRATED) on the source, which keeps a shut-off definition with keepSource.
// - A hot-plugged NIC whose MAC the view already has is refused.
//
// FAKE-ONLY (the agent's connection, not libvirtd): disconnect()/reconnect(), failNext(), delayMs,
// holdListDomains(); events queued when the connection drops are lost, as on a real socket.
//
// DELIBERATE DIFFERENCES from libvirtd:
// - filterXml returns the XML as given. libvirt returns its own formatting (with <uuid>, comments cut
//   at 256 bytes, measured: possibly inside a multi-byte character); the agent compares canonical
//   forms and compiles comments already clamped.
// - No schema validation (nwfilter.rng): add a name to `refused` to have a define refused as invalid.
// - libvirt's shipped filters (clean-traffic & co.) count as present for instantiation but are not
//   listed (builtinFilters 'implicit', the default); 'defined' lists them, 'none' leaves them out.
// - Error kinds follow the port's contract (libvirt-port.ts). The production classifier
//   (classifyLibvirtError) maps two of these refusals to 'other' instead of 'invalid': libxml2
//   parse errors (code 35 VIR_ERR_XML_DETAIL is not in isInvalidXml) and "same UUID but different
//   name" (isUuidMismatch only matches "already exists with uuid").
// - The production adapter's defineFilter retries a UUID clash with the existing UUID (the client's
//   adoptExistingUuid default), so through it a redefinition with another or no UUID SUCCEEDS and
//   overwrites the existing filter. This fake refuses like libvirtd; `adoptExistingUuid: true`
//   models the adapter.
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { createHash, randomUUID } from 'node:crypto';
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
  /** 'network' (default, source network='default'), 'bridge', 'ethernet', ... */
  type?: string;
  /** Attributes of <source>; defaults from the type. */
  source?: Record<string, string>;
  /** The host-side device: given (kept in both views) or vnetN in the live view. */
  target?: string;
  /** Given (kept in both views when it starts with 'ua-') or netN in the live view. */
  alias?: string;
  filterref?: FakeBinding;
}

export type FakeView = 'config' | 'live';

interface FakeDomain {
  name: string;
  uuid: string;
  id: number;
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

export type FakeOp = 'listFilters' | 'filterXml' | 'defineFilter' | 'undefineFilter' | 'listDomains' | 'domainXml' | 'updateDevice';

export interface FakeLibvirtOptions {
  /** Latency of every port call in ms (0: answered after one setImmediate). */
  delayMs?: number;
  /** libvirt's shipped filters: present but unlisted ('implicit', default), listed ('defined'), absent ('none'). */
  builtinFilters?: 'implicit' | 'defined' | 'none';
  /** Model the production adapter, which retries a UUID clash with the existing UUID. */
  adoptExistingUuid?: boolean;
}

/** libvirt-daemon-config-nwfilter's filters (libvirt 9.0) and the filters each references. */
const BUILTIN_FILTERS: Record<string, string[]> = {
  'allow-arp': [],
  'allow-dhcp': [],
  'allow-dhcp-server': [],
  'allow-dhcpv6': [],
  'allow-dhcpv6-server': [],
  'allow-incoming-ipv4': [],
  'allow-incoming-ipv6': [],
  'allow-ipv4': [],
  'allow-ipv6': [],
  'clean-traffic': ['no-mac-spoofing', 'no-ip-spoofing', 'allow-incoming-ipv4', 'no-arp-spoofing', 'no-other-l2-traffic', 'qemu-announce-self'],
  'clean-traffic-gateway': ['no-mac-spoofing', 'no-ip-spoofing', 'no-arp-spoofing', 'no-other-l2-traffic', 'qemu-announce-self'],
  'no-arp-ip-spoofing': [],
  'no-arp-mac-spoofing': [],
  'no-arp-spoofing': ['no-arp-mac-spoofing', 'no-arp-ip-spoofing'],
  'no-ip-multicast': [],
  'no-ip-spoofing': [],
  'no-ipv6-multicast': [],
  'no-ipv6-spoofing': [],
  'no-mac-broadcast': [],
  'no-mac-spoofing': [],
  'no-other-l2-traffic': [],
  'no-other-rarp-traffic': [],
  'qemu-announce-self': ['qemu-announce-self-rarp', 'no-other-rarp-traffic'],
  'qemu-announce-self-rarp': [],
};

// ---- XML ----

// XML 1.0 forbids these code units anywhere in a document (lone surrogates reach libvirt as U+FFFD).
// eslint-disable-next-line no-control-regex
const FORBIDDEN_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;
const xmlCharAllowed = (c: number) => c === 0x9 || c === 0xa || c === 0xd || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);
const PREDEFINED_ENTITIES = new Set(['amp', 'lt', 'gt', 'apos', 'quot']);
const orderedParser = new XMLParser({ preserveOrder: true, ignoreAttributes: false, attributeNamePrefix: '', ignoreDeclaration: true, ignorePiTags: true, parseAttributeValue: false, parseTagValue: false });

type OrderedNode = Record<string, unknown> & { ':@'?: Record<string, string> };
const tagOf = (n: OrderedNode): string | undefined => Object.keys(n).find((k) => k !== ':@');
const childrenOf = (n: OrderedNode): OrderedNode[] => {
  const t = tagOf(n);
  return t && Array.isArray(n[t]) ? (n[t] as OrderedNode[]) : [];
};

/** Why libxml2 would refuse the document, or undefined when it is well-formed XML 1.0. */
export function xmlProblem(xml: string): string | undefined {
  const bad = FORBIDDEN_CHAR.exec(xml);
  if (bad) return `Char 0x${bad[0].charCodeAt(0).toString(16).toUpperCase()} out of allowed range`;
  const v = XMLValidator.validate(xml);
  if (v !== true) return v.err.msg;
  // What fast-xml-parser's validator lets through: references, '<' in attribute values, content after the root.
  const markupless = xml
    .replace(/<!--[\s\S]*?-->/g, '')
    .replace(/<!\[CDATA\[[\s\S]*?\]\]>/g, '')
    .replace(/<\?[\s\S]*?\?>/g, '')
    .replace(/<!DOCTYPE[^>]*>/gi, '');
  for (const m of markupless.matchAll(/&([^;&<>\s'"]*)(;?)/g)) {
    const [, ref, semi] = m;
    if (!semi) return "EntityRef: expecting ';'";
    if (ref!.startsWith('#')) {
      const code = ref!.startsWith('#x') || ref!.startsWith('#X') ? parseInt(ref!.slice(2), 16) : parseInt(ref!.slice(1), 10);
      if (!Number.isFinite(code) || !xmlCharAllowed(code)) return `xmlParseCharRef: invalid xmlChar value ${ref!.slice(1)}`;
    } else if (!PREDEFINED_ENTITIES.has(ref!)) return `Entity '${ref}' not defined`;
  }
  if (/=\s*("[^"]*<[^"]*"|'[^']*<[^']*')/.test(markupless)) return "Unescaped '<' not allowed in attributes values";
  const lastTag = markupless.slice(markupless.lastIndexOf('<'));
  if (lastTag.slice(lastTag.indexOf('>') + 1).trim() !== '') return 'Extra content at the end of the document';
  let top: OrderedNode[];
  try {
    top = orderedParser.parse(xml) as OrderedNode[];
  } catch (err) {
    return String(err);
  }
  const elements = top.filter((n) => tagOf(n) !== '#text');
  const text = top.filter((n) => tagOf(n) === '#text' && String(n['#text']).trim() !== '');
  if (elements.length !== 1 || text.length > 0) return elements.length === 0 ? 'Start tag expected' : 'Extra content at the end of the document';
  return undefined;
}

/** The one root element of a well-formed document. */
function rootOf(xml: string): OrderedNode {
  return (orderedParser.parse(xml) as OrderedNode[]).find((n) => tagOf(n) !== '#text')!;
}

const UUID_RE = /^([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})$/i;

function parseFilter(xml: string): { name: string; uuid: string | undefined; refs: string[] } {
  const problem = xmlProblem(xml);
  if (problem) throw new FakeLibvirtError('invalid', `(nwfilter_definition):1: ${problem}`);
  const root = rootOf(xml);
  if (tagOf(root) !== 'filter') throw new FakeLibvirtError('invalid', `XML error: expecting root element of 'filter', not '${tagOf(root)}'`);
  const name = root[':@']?.name;
  if (!name) throw new FakeLibvirtError('invalid', 'XML document failed to validate against schema: filter has no name');
  const kids = childrenOf(root);
  const uuidNode = kids.find((k) => tagOf(k) === 'uuid');
  let uuid: string | undefined;
  if (uuidNode) {
    const text = childrenOf(uuidNode).map((t) => String(t['#text'] ?? '')).join('').trim();
    const m = UUID_RE.exec(text);
    if (!m) throw new FakeLibvirtError('invalid', 'XML error: malformed uuid element');
    uuid = m.slice(1, 6).join('-').toLowerCase();
  }
  const refs = kids.filter((k) => tagOf(k) === 'filterref').map((k) => k[':@']?.filter ?? '');
  if (refs.some((r) => !r)) throw new FakeLibvirtError('invalid', 'XML document failed to validate against schema: filterref without filter');
  return { name, uuid, refs };
}

function parseInterface(xml: string): { mac: string | undefined; binding: FakeBinding | undefined } {
  const problem = xmlProblem(xml);
  if (problem) throw new FakeLibvirtError('invalid', `(device_definition):1: ${problem}`);
  const root = rootOf(xml);
  if (tagOf(root) !== 'interface') throw new FakeLibvirtError('invalid', `unsupported configuration: unknown device type '${tagOf(root)}'`);
  const kids = childrenOf(root);
  const mac = kids.find((k) => tagOf(k) === 'mac')?.[':@']?.address?.toLowerCase();
  const ref = kids.find((k) => tagOf(k) === 'filterref');
  const binding = ref
    ? {
        filter: ref[':@']?.filter ?? '',
        parameters: childrenOf(ref)
          .filter((p) => tagOf(p) === 'parameter')
          .map((p) => ({ name: p[':@']?.name ?? '', value: p[':@']?.value ?? '' })),
      }
    : undefined;
  return { mac, binding };
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');
const clone = <T>(v: T): T => structuredClone(v);

function stableUuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// ---- the fake ----

export class FakeLibvirt implements AgentLibvirt {
  private readonly filters = new Map<string, { uuid: string; xml: string; refs: string[] }>();
  private readonly domains = new Map<string, FakeDomain>();
  private readonly handlers: ((e: DomainEvent) => void)[] = [];
  private readonly failures: { op: FakeOp; kind: LibvirtErrorKind; afterEffect: boolean }[] = [];
  private readonly listGates = new Set<Promise<void>>();
  private readonly builtins: 'implicit' | 'defined' | 'none';
  private readonly adoptExistingUuid: boolean;
  private connected = true;
  private closed = false;
  /** Changes on every disconnect/reconnect: events queued before it are lost. */
  private epoch = 0;
  private tapSeq = 0;
  private domainIds = 1;

  /** Latency of every port call in ms (0: one setImmediate). */
  delayMs: number;
  /** Filter names whose define libvirt refuses as invalid (schema), as long as they are listed. */
  readonly refused = new Set<string>();
  /** Calls per method of the port (failed ones included). */
  readonly calls: Record<string, number> = {};
  /** Successful writes: define, undefine, update-device. */
  writes = 0;
  /** Running interfaces rebuilt because a filter of their tree was redefined with other content. */
  rebuilds = 0;
  /** Every event delivered to the handlers, in order. */
  readonly delivered: DomainEvent[] = [];
  /** Called after every successful write (for invariant checks in the middle of an agent's work). */
  onWrite: ((what: string) => void) | undefined;

  constructor(options: FakeLibvirtOptions = {}) {
    this.delayMs = options.delayMs ?? 0;
    this.builtins = options.builtinFilters ?? 'implicit';
    this.adoptExistingUuid = options.adoptExistingUuid ?? false;
    if (this.builtins === 'defined') {
      for (const [name, refs] of Object.entries(BUILTIN_FILTERS)) {
        const uuid = stableUuid(`builtin/${name}`);
        const xml = `<filter name='${name}' chain='root'><uuid>${uuid}</uuid>${refs.map((r) => `<filterref filter='${r}'/>`).join('')}</filter>`;
        this.filters.set(name, { uuid, xml, refs: [...refs] });
      }
    }
  }

  // ---- the port ----

  private async call<T>(op: FakeOp, effect: () => T): Promise<T> {
    this.calls[op] = (this.calls[op] ?? 0) + 1;
    await this.latency();
    return this.finish(op, effect);
  }

  private latency(): Promise<void> {
    return new Promise((r) => (this.delayMs > 0 ? setTimeout(r, this.delayMs) : setImmediate(r)));
  }

  private finish<T>(op: FakeOp, effect: () => T): T {
    if (!this.connected) throw new FakeLibvirtError('disconnected', `${op}: not connected to libvirtd`);
    const i = this.failures.findIndex((f) => f.op === op);
    if (i < 0) return effect();
    const [f] = this.failures.splice(i, 1);
    if (f!.afterEffect) effect();
    throw new FakeLibvirtError(f!.kind, `${op}: injected failure (${f!.kind})`);
  }

  private wrote(what: string): void {
    this.writes++;
    this.onWrite?.(what);
  }

  listFilters(): Promise<{ name: string; uuid: string }[]> {
    return this.call('listFilters', () => [...this.filters].map(([name, f]) => ({ name, uuid: f.uuid })));
  }

  /** The call deadlines the agent asked for (undefined: the client's default), in call order. */
  readonly deadlines: { op: 'filterXml' | 'defineFilter'; timeoutMs: number | undefined }[] = [];

  filterXml(name: string, options: { timeoutMs?: number } = {}): Promise<string | undefined> {
    this.deadlines.push({ op: 'filterXml', timeoutMs: options.timeoutMs });
    return this.call('filterXml', () => this.filters.get(name)?.xml);
  }

  defineFilter(xml: string, options: { timeoutMs?: number } = {}): Promise<void> {
    this.deadlines.push({ op: 'defineFilter', timeoutMs: options.timeoutMs });
    return this.call('defineFilter', () => this.defineFilterNow(xml));
  }

  private defineFilterNow(xml: string): void {
    const f = parseFilter(xml);
    if (this.refused.has(f.name)) throw new FakeLibvirtError('invalid', `XML document failed to validate against schema: '${f.name}' refused by the test`);
    const existing = this.filters.get(f.name);
    let uuid = f.uuid;
    if (existing) {
      if (uuid !== existing.uuid) {
        if (!this.adoptExistingUuid) throw new FakeLibvirtError('invalid', `operation failed: filter '${f.name}' already exists with uuid ${existing.uuid}`);
        uuid = existing.uuid;
      }
    } else {
      const other = [...this.filters].find(([, o]) => o.uuid === uuid);
      if (other) throw new FakeLibvirtError('invalid', `operation failed: filter with same UUID but different name ('${other[0]}') already exists`);
      uuid ??= randomUUID();
    }
    if (this.reaches(f.refs, f.name)) throw new FakeLibvirtError('invalid', 'operation failed: filter would introduce a loop');
    // libvirt re-instantiates every running interface whose tree holds the filter; when one of them
    // cannot be instantiated any more, the define fails and the old definition stays.
    const next = { uuid: uuid!, xml, refs: f.refs };
    this.filters.set(f.name, next);
    const users = this.liveInterfaces().filter((i) => i.filterref && this.walk(i.filterref.filter).present.has(f.name));
    const broken = users.map((i) => this.walk(i.filterref!.filter).missing[0]).find((m) => m !== undefined);
    if (broken !== undefined) {
      if (existing) this.filters.set(f.name, existing);
      else this.filters.delete(f.name);
      throw new FakeLibvirtError('other', `internal error: referenced filter '${broken}' is missing`);
    }
    if (existing?.xml !== xml) this.rebuilds += users.length;
    this.wrote(`define ${f.name}`);
  }

  undefineFilter(name: string): Promise<void> {
    return this.call('undefineFilter', () => {
      if (!this.filters.has(name)) throw new FakeLibvirtError('not-found', `Network filter not found: no nwfilter with matching name '${name}'`);
      // Only running interfaces hold a filter: references from other filters and from persistent
      // definitions do not (libvirt accepts those undefines).
      if (this.liveInterfaces().some((i) => i.filterref && this.walk(i.filterref.filter).present.has(name))) {
        throw new FakeLibvirtError('in-use', 'Requested operation is not valid: nwfilter is in use');
      }
      this.filters.delete(name);
      this.wrote(`undefine ${name}`);
    });
  }

  async listDomains(): Promise<DomainInfo[]> {
    this.calls.listDomains = (this.calls.listDomains ?? 0) + 1;
    const gates = [...this.listGates];
    // A held listing answers what libvirt had when the call was made.
    const early = gates.length > 0 ? this.listDomainsSync() : undefined;
    await this.latency();
    await Promise.all(gates);
    return this.finish('listDomains', () => early ?? this.listDomainsSync());
  }

  domainXml(uuid: string, inactive: boolean): Promise<string> {
    return this.call('domainXml', () => {
      const d = this.domain(uuid);
      if (inactive && d.persistent) return this.render(d, d.config, false);
      if (d.active) return this.render(d, d.live, !inactive);
      return this.render(d, d.config, false);
    });
  }

  updateDevice(uuid: string, deviceXml: string, target: { live: boolean; config: boolean }): Promise<void> {
    return this.call('updateDevice', () => {
      const d = this.domain(uuid);
      const current = !target.live && !target.config;
      const live = target.live || (current && d.active);
      const config = target.config || (current && !d.active);
      if (live && !d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is not running');
      if (config && !d.persistent) throw new FakeLibvirtError('other', 'Requested operation is not valid: transient domains do not have any persistent config');
      const { mac, binding } = parseInterface(deviceXml);
      const views = [...(config ? [d.config] : []), ...(live ? [d.live] : [])];
      const found = views.map((v) => v.find((i) => i.mac === mac));
      if (!mac || found.some((i) => !i)) {
        throw new FakeLibvirtError('other', `device not found: no device found at address '(<null>)' matching MAC address '${mac ?? '(<null>)'}' and alias '(<null>)'`);
      }
      if (live && binding && this.walk(binding.filter).missing.length > 0) {
        const dev = d.live.find((i) => i.mac === mac)!.target;
        throw new FakeLibvirtError('other', `operation failed: failed to add new filter rules to '${dev}' - attempting to restore old rules`);
      }
      for (const iface of found) {
        if (binding) iface!.filterref = clone(binding);
        else delete iface!.filterref;
      }
      this.wrote(`update-device ${d.name} ${mac} ${live ? 'live' : ''}${config ? ' config' : ''}`);
    });
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

  async close(): Promise<void> {
    this.closed = true;
    this.connected = false;
    this.epoch++;
  }

  // ---- rendering ----

  private render(d: FakeDomain, ifaces: FakeInterface[], runtime: boolean): string {
    const lines = [`<domain type='kvm'${runtime ? ` id='${d.id}'` : ''}>`, `  <name>${esc(d.name)}</name>`, `  <uuid>${d.uuid}</uuid>`];
    lines.push("  <memory unit='KiB'>65536</memory>", "  <vcpu placement='static'>1</vcpu>", "  <os>\n    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>\n  </os>");
    lines.push('  <devices>', '    <emulator>/usr/bin/qemu-system-x86_64</emulator>');
    ifaces.forEach((i, n) => {
      const type = i.type ?? 'network';
      const source = i.source ?? (type === 'network' ? { network: 'default' } : type === 'bridge' ? { bridge: 'virbr0' } : undefined);
      lines.push(`    <interface type='${esc(type)}'>`, `      <mac address='${i.mac}'/>`);
      if (source) lines.push(`      <source ${Object.entries(source).map(([k, v]) => `${k}='${esc(v)}'`).join(' ')}/>`);
      const userTarget = i.target !== undefined && !/^vnet\d+$/.test(i.target);
      if (i.target !== undefined && (runtime || userTarget)) lines.push(`      <target dev='${esc(i.target)}'${userTarget ? " managed='yes'" : ''}/>`);
      lines.push("      <model type='virtio'/>");
      if (i.filterref) {
        const params = i.filterref.parameters.map((p) => `        <parameter name='${esc(p.name)}' value='${esc(p.value)}'/>`);
        lines.push(params.length ? [`      <filterref filter='${esc(i.filterref.filter)}'>`, ...params, '      </filterref>'].join('\n') : `      <filterref filter='${esc(i.filterref.filter)}'/>`);
      }
      if (i.alias !== undefined && (runtime || i.alias.startsWith('ua-'))) lines.push(`      <alias name='${esc(i.alias)}'/>`);
      lines.push(`      <address type='pci' domain='0x0000' bus='0x00' slot='0x${(n + 3).toString(16).padStart(2, '0')}' function='0x0'/>`, '    </interface>');
    });
    lines.push('  </devices>', '</domain>');
    return lines.join('\n');
  }

  // ---- events ----

  private emit(d: { uuid: string; name: string }, kind: DomainEvent['kind']): void {
    if (!this.connected) return;
    const epoch = this.epoch;
    const e: DomainEvent = { uuid: d.uuid, name: d.name, kind };
    setImmediate(() => {
      if (!this.connected || this.epoch !== epoch) return;
      this.delivered.push(e);
      for (const h of [...this.handlers]) h(e);
    });
  }

  // ---- filter trees ----

  private builtinRefs(name: string): string[] | undefined {
    return this.builtins === 'implicit' && !this.filters.has(name) ? BUILTIN_FILTERS[name] : undefined;
  }

  private refsOf(name: string): string[] | undefined {
    return this.filters.get(name)?.refs ?? this.builtinRefs(name);
  }

  /** The filters `name`'s tree uses (itself included) that exist, and those it misses, in depth-first order. */
  private walk(name: string): { present: Set<string>; missing: string[] } {
    const present = new Set<string>();
    const missing: string[] = [];
    const visit = (n: string) => {
      if (present.has(n) || missing.includes(n)) return;
      const refs = this.refsOf(n);
      if (refs === undefined) {
        missing.push(n);
        return;
      }
      present.add(n);
      refs.forEach(visit);
    };
    visit(name);
    return { present, missing };
  }

  private reaches(from: string[], target: string): boolean {
    const seen = new Set<string>();
    const stack = [...from];
    while (stack.length) {
      const r = stack.pop()!;
      if (r === target) return true;
      if (seen.has(r)) continue;
      seen.add(r);
      stack.push(...(this.refsOf(r) ?? []));
    }
    return false;
  }

  /**
   * The names of the filters `name`'s tree uses, itself included. Throws (kind 'not-found') when
   * the tree misses a filter, as libvirt does when it instantiates it.
   */
  treeOf(name: string): Set<string> {
    const { present, missing } = this.walk(name);
    if (missing.length) throw new FakeLibvirtError('not-found', `internal error: referenced filter '${missing[0]}' is missing`);
    return present;
  }

  /** The filters `name`'s tree misses (itself included when it does not exist). */
  missingIn(name: string): string[] {
    return this.walk(name).missing;
  }

  /** libvirt could instantiate `name` on an interface now. */
  isClosedTree(name: string): boolean {
    return this.walk(name).missing.length === 0;
  }

  // ---- inspection (synchronous, never counted, work while disconnected) ----

  listDomainsSync(): DomainInfo[] {
    return [...this.domains.values()].map((d) => ({ name: d.name, uuid: d.uuid, active: d.active, persistent: d.persistent }));
  }

  /** The interfaces of a view (config: [] for a transient domain; live: [] when shut off), or of both. */
  interfacesOf(uuid: string): { config: FakeInterface[]; live: FakeInterface[] };
  interfacesOf(uuid: string, view: FakeView): FakeInterface[];
  interfacesOf(uuid: string, view?: FakeView): FakeInterface[] | { config: FakeInterface[]; live: FakeInterface[] } {
    const d = this.domains.get(uuid.toLowerCase());
    const config = d?.persistent ? clone(d.config) : [];
    const live = d?.active ? clone(d.live) : [];
    if (view === undefined) return { config, live };
    return view === 'config' ? config : live;
  }

  bindingOf(uuid: string, mac: string, view: FakeView): FakeBinding | undefined {
    return this.interfacesOf(uuid, view).find((i) => i.mac === mac.toLowerCase())?.filterref;
  }

  filterXmlSync(name: string): string | undefined {
    return this.filters.get(name)?.xml;
  }

  filterUuid(name: string): string | undefined {
    return this.filters.get(name)?.uuid;
  }

  // ---- test controls (the host and its users; they work while the agent is disconnected) ----

  private domain(uuid: string): FakeDomain {
    const d = this.domains.get(uuid.toLowerCase());
    if (!d) throw new FakeLibvirtError('not-found', `Domain not found: no domain with matching uuid '${uuid}'`);
    return d;
  }

  private liveInterfaces(): FakeInterface[] {
    return [...this.domains.values()].flatMap((d) => (d.active ? d.live : []));
  }

  private normalized(ifaces: FakeInterface[]): FakeInterface[] {
    return clone(ifaces).map((i) => ({ ...i, mac: i.mac.toLowerCase() }));
  }

  /** A running copy: every interface gets its vnetN and netN unless given. */
  private liveCopy(ifaces: FakeInterface[], from = 0): FakeInterface[] {
    return this.normalized(ifaces).map((i, n) => ({ ...i, target: i.target ?? `vnet${this.tapSeq++}`, alias: i.alias ?? `net${from + n}` }));
  }

  /** The persistent form of running interfaces: without the runtime target and alias. */
  private configCopy(ifaces: FakeInterface[]): FakeInterface[] {
    return this.normalized(ifaces).map(({ target, alias, ...i }) => ({
      ...i,
      ...(target !== undefined && !/^vnet\d+$/.test(target) ? { target } : {}),
      ...(alias?.startsWith('ua-') ? { alias } : {}),
    }));
  }

  private firstMissing(ifaces: FakeInterface[]): string | undefined {
    for (const i of ifaces) if (i.filterref) {
      const m = this.walk(i.filterref.filter).missing[0];
      if (m !== undefined) return m;
    }
    return undefined;
  }

  private checkNewName(name: string, uuid: string): void {
    const clash = [...this.domains.values()].find((d) => d.name === name && d.uuid !== uuid);
    if (clash) throw new FakeLibvirtError('other', `operation failed: domain '${name}' already exists with uuid ${clash.uuid}`);
  }

  /** `virsh define`: a new persistent, shut-off domain, or a new definition for an existing one (event 'defined'). */
  defineDomain(o: { name: string; uuid?: string; interfaces: FakeInterface[] }): string {
    const uuid = (o.uuid ?? randomUUID()).toLowerCase();
    this.checkNewName(o.name, uuid);
    const existing = this.domains.get(uuid);
    if (existing && existing.name !== o.name) throw new FakeLibvirtError('other', `operation failed: domain '${existing.name}' already exists with uuid ${uuid}`);
    const config = this.configCopy(o.interfaces);
    if (existing) {
      existing.persistent = true;
      existing.config = config;
    } else {
      this.domains.set(uuid, { name: o.name, uuid, id: -1, persistent: true, active: false, config, live: [] });
    }
    this.emit({ uuid, name: o.name }, 'defined');
    return uuid;
  }

  /** `virsh start`: fails, and nothing happens, when an interface's filter tree is incomplete. */
  async startDomain(uuid: string): Promise<void> {
    const d = this.domain(uuid);
    if (d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is already running');
    const missing = this.firstMissing(d.config);
    if (missing !== undefined) throw new FakeLibvirtError('other', `internal error: referenced filter '${missing}' is missing`);
    d.live = this.liveCopy(d.config);
    d.active = true;
    d.id = this.domainIds++;
    this.emit(d, 'started');
  }

  /** `virsh create`: a running transient domain (event 'started'); same refusal as start. */
  async createTransient(o: { name: string; uuid?: string; interfaces: FakeInterface[] }): Promise<string> {
    const uuid = (o.uuid ?? randomUUID()).toLowerCase();
    this.checkNewName(o.name, uuid);
    if (this.domains.has(uuid)) throw new FakeLibvirtError('other', `operation failed: domain with uuid ${uuid} already exists`);
    const missing = this.firstMissing(o.interfaces);
    if (missing !== undefined) throw new FakeLibvirtError('other', `internal error: referenced filter '${missing}' is missing`);
    const d: FakeDomain = { name: o.name, uuid, id: this.domainIds++, persistent: false, active: true, config: [], live: this.liveCopy(o.interfaces) };
    this.domains.set(uuid, d);
    this.emit(d, 'started');
    return uuid;
  }

  /** `virsh destroy`: a transient domain is gone afterwards (event 'stopped'). */
  async stopDomain(uuid: string): Promise<void> {
    const d = this.domain(uuid);
    if (!d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is not running');
    d.active = false;
    d.live = [];
    d.id = -1;
    if (!d.persistent) this.domains.delete(d.uuid);
    this.emit(d, 'stopped');
  }

  /** `virsh undefine`: a shut-off domain is gone, a running one becomes transient (event 'undefined'). */
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
    return { name: d.name, uuid: d.uuid, interfaces: this.configCopy(d.live) };
  }

  /**
   * A domain arrives by live migration (`virsh migrate --live [--persistent]`), running: events
   * 'migrated' and, when persistent, 'defined'. It fails, and the domain does not appear, when a
   * filter its interfaces need is missing here.
   */
  async migrateIn(s: DomainSnapshot, o: { persistent?: boolean } = {}): Promise<void> {
    const uuid = s.uuid.toLowerCase();
    const persistent = o.persistent ?? true;
    this.checkNewName(s.name, uuid);
    const existing = this.domains.get(uuid);
    if (existing?.active) throw new FakeLibvirtError('other', `Requested operation is not valid: domain '${s.name}' is already active`);
    const missing = this.firstMissing(s.interfaces);
    if (missing !== undefined) throw new FakeLibvirtError('other', `internal error: referenced filter '${missing}' is missing`);
    const d: FakeDomain = {
      name: s.name,
      uuid,
      id: this.domainIds++,
      persistent: persistent || existing !== undefined,
      active: true,
      config: persistent ? this.configCopy(s.interfaces) : (existing?.config ?? []),
      live: this.liveCopy(s.interfaces),
    };
    this.domains.set(uuid, d);
    this.emit(d, 'migrated');
    if (persistent) this.emit(d, 'defined');
  }

  /**
   * The source side of a completed migration (event 'migrated'): the domain is gone
   * (`--undefinesource`), or with keepSource its persistent definition stays, shut off.
   */
  async migrateOut(uuid: string, o: { keepSource?: boolean } = {}): Promise<void> {
    const d = this.domain(uuid);
    if (!d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is not running');
    if (o.keepSource && d.persistent) {
      d.active = false;
      d.live = [];
      d.id = -1;
    } else {
      this.domains.delete(d.uuid);
    }
    this.emit(d, 'migrated');
  }

  /**
   * `virsh attach-device [--live] [--config]` of a NIC (default --current: live when running,
   * else config). A live
   * attach sends 'device-added' and fails when the NIC's filter tree is incomplete; a config-only
   * attach sends no event and accepts any filter name.
   */
  async hotplugInterface(uuid: string, iface: FakeInterface, target?: { live: boolean; config: boolean }): Promise<void> {
    const d = this.domain(uuid);
    const { live, config } = target ?? { live: d.active, config: !d.active };
    if (live && !d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is not running');
    if (config && !d.persistent) throw new FakeLibvirtError('other', 'Requested operation is not valid: transient domains do not have any persistent config');
    const mac = iface.mac.toLowerCase();
    for (const v of [...(config ? [d.config] : []), ...(live ? [d.live] : [])]) {
      if (v.some((i) => i.mac === mac)) throw new FakeLibvirtError('other', `operation failed: network device with mac ${mac} already exists`);
    }
    const missing = live ? this.firstMissing([iface]) : undefined;
    if (missing !== undefined) throw new FakeLibvirtError('other', `internal error: referenced filter '${missing}' is missing`);
    if (config) d.config.push(...this.configCopy([iface]));
    if (live) {
      const used = new Set(d.live.map((i) => i.alias));
      let n = 0;
      while (used.has(`net${n}`)) n++;
      d.live.push(...this.liveCopy([iface], n));
      this.emit(d, 'device-added');
    }
  }

  /** `virsh detach-device [--live] [--config]` of the NIC with `mac` (default --current): a live detach sends 'device-removed'. */
  async unplugInterface(uuid: string, mac: string, target?: { live: boolean; config: boolean }): Promise<void> {
    const d = this.domain(uuid);
    const { live, config } = target ?? { live: d.active, config: !d.active };
    if (live && !d.active) throw new FakeLibvirtError('other', 'Requested operation is not valid: domain is not running');
    if (config && !d.persistent) throw new FakeLibvirtError('other', 'Requested operation is not valid: transient domains do not have any persistent config');
    const m = mac.toLowerCase();
    const views = [...(config ? [d.config] : []), ...(live ? [d.live] : [])];
    if (views.some((v) => !v.some((i) => i.mac === m))) throw new FakeLibvirtError('other', `device not found: no device found matching MAC address '${m}'`);
    if (config) d.config = d.config.filter((i) => i.mac !== m);
    if (live) {
      d.live = d.live.filter((i) => i.mac !== m);
      this.emit(d, 'device-removed');
    }
  }

  /** The agent's connection drops: every call rejects 'disconnected' and events are lost until reconnect(). */
  disconnect(): void {
    this.connected = false;
    this.epoch++;
  }

  /** The connection is back: one 'reconnected' event (events in between were lost). */
  reconnect(): void {
    if (this.closed) throw new Error('FakeLibvirt: reconnect after close()');
    if (this.connected) return;
    this.connected = true;
    this.epoch++;
    this.emit({ uuid: '', name: '' }, 'reconnected');
  }

  /**
   * The next call of `op` fails with an error of `kind` (and no effect); with afterEffect the call
   * takes effect first, like a write whose answer was lost.
   */
  failNext(op: FakeOp, kind: LibvirtErrorKind, o: { afterEffect?: boolean } = {}): void {
    this.failures.push({ op, kind, afterEffect: o.afterEffect ?? false });
  }

  /** Holds every listDomains() made from now until the returned release is called; they answer what libvirt had when they were made. */
  holdListDomains(): () => void {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    this.listGates.add(gate);
    return () => {
      this.listGates.delete(gate);
      release();
    };
  }
}
