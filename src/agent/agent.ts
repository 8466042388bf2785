import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Condition, VMFilter } from '../api/index.js';
import { CONDITION, REASON } from '../controller/status.js';
import {
  StatusWriter,
  WorkQueue,
  instrumentedQueue,
  allSynced,
  createPolicyInformers,
  findCondition,
  parseObject,
  typedList,
  type PolicyInformers,
  setCondition,
  type KindName,
  type KubeClients,
} from '../kube/index.js';
import { PolicyIndex, isManagedFilterName, vmFilterName, type InterfaceBinding, type VmCompiled } from '../policy/index.js';
import type { Metrics } from '../runtime/metrics.js';
import { FilterStore } from './filter-store.js';
import { domainInterfaces, interfaceXmlWithBinding, sameBinding } from './interfaces.js';
import type { AgentLibvirt, DomainInfo } from './libvirt-port.js';
import { filterRefsOf } from './refs.js';

export interface AgentOptions {
  nodeName: string;
  clients: KubeClients;
  libvirt: AgentLibvirt;
  log: Logger;
  metrics: Metrics;
  resyncMs: number;
  concurrency: number;
}

const GC_KEY = '#gc';

/** Agent-owned reasons of the Applied condition (docs/status.md). */
export const AGENT_REASON = {
  applied: 'Applied',
  domainNotFound: 'DomainNotFound',
  compileFailed: 'CompileFailed',
  libvirtError: 'LibvirtError',
  removed: REASON.removed,
  invalidSpec: REASON.invalidSpec,
} as const;

/**
 * The node agent: compiles the policies of the VMs on its node, defines their filters in libvirt
 * (only what changed, referenced filters first), attaches each VM's root filter to its interfaces,
 * repairs drift, removes orphans and reports `Applied` on each VMFilter.
 */
export class Agent {
  private readonly informers: PolicyInformers;
  private readonly queue: WorkQueue;
  private readonly index: PolicyIndex;
  private readonly filters: FilterStore;
  private readonly status: StatusWriter;
  private readonly log: Logger;
  private domains = new Map<string, DomainInfo>();
  private domainsByName = new Map<string, DomainInfo>();
  /** VMFilter name -> filters its last successful apply defined on this node (kept while it cannot be compiled). */
  private readonly appliedTrees = new Map<string, string[]>();
  /** VMFilter name -> key of the last verified interface binding (hash, domain, state). */
  private readonly attached = new Map<string, string>();
  private resyncTimer: NodeJS.Timeout | undefined;
  private domainRefresh: Promise<void> | undefined;
  private domainsLoaded = false;
  private stopped = false;

  constructor(private readonly o: AgentOptions) {
    this.log = o.log;
    this.informers = createPolicyInformers(o.clients, o.log, o.metrics);
    this.index = new PolicyIndex({ services: () => this.typed('ServicePolicy'), departments: () => this.typed('DepartmentPolicy') });
    this.filters = new FilterStore(o.libvirt, o.metrics, o.log);
    this.status = new StatusWriter(o.clients.custom, `nwfilter-operator-agent-${o.nodeName}`.slice(0, 128), (kind) => o.metrics.statusWrites.inc({ kind }));
    this.queue = instrumentedQueue('agent', (key) => (key === GC_KEY ? this.collectGarbage() : this.reconcileVm(key)), o.concurrency, o.log, o.metrics);
    this.wire();
  }

  private typed<K extends KindName>(kind: K) {
    return typedList(this.informers, kind);
  }

  private wire(): void {
    this.informers.VMFilter.onChange((o) => this.queue.add(o.metadata!.name!));
    for (const kind of ['ServicePolicy', 'DepartmentPolicy'] as const) {
      this.informers[kind].onChange(() => {
        this.index.invalidate();
        this.enqueueAllVms();
        this.queue.addAfter(GC_KEY, 1000);
      });
    }
    this.o.libvirt.onDomainEvent((e) => {
      if (!e.uuid) {
        // (Re)connected: events may have been missed while disconnected.
        this.resync();
        return;
      }
      this.log.debug({ domain: e.name, event: e.kind }, 'domain event');
      this.refreshDomainsThen(() => {
        for (const vm of this.informers.VMFilter.list()) {
          const spec = (vm as VMFilter).spec;
          if (spec?.domain?.name === e.name || spec?.domain?.uuid?.toLowerCase() === e.uuid.toLowerCase()) {
            this.attached.delete(vm.metadata!.name!);
            this.queue.add(vm.metadata!.name!);
          }
        }
      });
    });
  }

  private enqueueAllVms(): void {
    for (const vm of this.informers.VMFilter.list()) this.queue.add(vm.metadata!.name!);
  }

  get synced(): boolean {
    return this.domainsLoaded && allSynced(this.informers);
  }

  async start(): Promise<void> {
    // libvirtd may not be up yet: keep trying (the agent is not ready meanwhile).
    for (let delay = 250; !this.stopped; delay = Math.min(delay * 2, 10_000)) {
      try {
        await this.refreshDomains();
        break;
      } catch (err) {
        this.log.warn({ err: String((err as Error)?.message ?? err), retryInMs: delay }, 'cannot list domains yet');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    await Promise.all(Object.values(this.informers).map((i) => i.start()));
    this.enqueueAllVms();
    this.queue.addAfter(GC_KEY, 2000);
    this.resyncTimer = setInterval(() => this.resync(), this.o.resyncMs);
  }

  /** Re-verifies everything against libvirt: drift shows up as a mismatch and is repaired. */
  resync(): void {
    this.filters.invalidate();
    this.attached.clear();
    this.refreshDomainsThen(() => {
      this.enqueueAllVms();
      this.queue.add(GC_KEY);
    });
  }

  async drain(): Promise<void> {
    await this.queue.drain();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    this.resyncTimer = undefined;
    await this.queue.shutdown();
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
  }

  /** Refreshes the domain list, then runs `next`; a failure is logged and retried at the next resync. */
  private refreshDomainsThen(next: () => void): void {
    this.refreshDomains().then(next, (err: unknown) => {
      this.o.metrics.errors.inc({ component: 'agent' });
      this.log.warn({ err: String((err as Error)?.message ?? err) }, 'cannot list domains; retrying at the next resync');
    });
  }

  private refreshDomains(): Promise<void> {
    this.domainRefresh ??= (async () => {
      try {
        const list = await this.o.libvirt.listDomains();
        this.domains = new Map(list.map((d) => [d.uuid.toLowerCase(), d]));
        this.domainsByName = new Map(list.map((d) => [d.name, d]));
        this.domainsLoaded = true;
      } finally {
        this.domainRefresh = undefined;
      }
    })();
    return this.domainRefresh;
  }

  private domainOf(vm: VMFilter): DomainInfo | undefined {
    const ref = vm.spec.domain;
    return ref.uuid ? this.domains.get(ref.uuid.toLowerCase()) : this.domainsByName.get(ref.name!);
  }

  /** A VM is this node's when its spec names the node, or names no node and its domain is here. */
  private isOurs(vm: VMFilter, domain: DomainInfo | undefined): boolean {
    return vm.spec.nodeName ? vm.spec.nodeName === this.o.nodeName : domain !== undefined;
  }

  private async reconcileVm(name: string): Promise<void> {
    const raw = this.informers.VMFilter.get(name);
    const end = this.o.metrics.reconcileDuration.startTimer({ kind: 'VMFilter' });
    try {
      if (!raw || raw.metadata?.deletionTimestamp) {
        await this.remove(name, raw);
      } else {
        await this.apply(raw);
      }
      this.o.metrics.reconcileTotal.inc({ kind: 'VMFilter', result: 'success' });
    } catch (err) {
      this.o.metrics.reconcileTotal.inc({ kind: 'VMFilter', result: 'error' });
      this.o.metrics.errors.inc({ component: 'agent' });
      if (raw && !raw.metadata?.deletionTimestamp) await this.reportApplied(raw as VMFilter, 'False', AGENT_REASON.libvirtError, String((err as Error)?.message ?? err)).catch(() => undefined);
      throw err;
    } finally {
      end();
    }
  }

  private async apply(raw: KubernetesObject): Promise<void> {
    const name = raw.metadata!.name!;
    const parsed = parseObject('VMFilter', raw);
    if (!parsed.ok) {
      // Cannot tell whether it is ours; if we applied it before, keep its filter and say why.
      if (this.appliedTrees.has(name)) await this.reportApplied(raw as VMFilter, 'False', AGENT_REASON.invalidSpec, `${parsed.field}: ${parsed.message}; the last applied filter stays in place.`);
      return;
    }
    const vm = parsed.value;
    const domain = this.domainOf(vm);
    if (!this.isOurs(vm, domain)) {
      if (this.appliedTrees.has(name) || (raw as VMFilter).status?.nodeName === this.o.nodeName) await this.remove(name, raw, /* handOver */ true);
      return;
    }
    const compiled = this.index.vm(vm);
    if (!compiled.ok) {
      const e = compiled.diagnostics.find((d) => d.severity === 'error')!;
      await this.reportApplied(vm, 'False', AGENT_REASON.compileFailed, `${e.reason}: ${e.message}. The last applied filter stays in place.`);
      return;
    }
    // Referenced filters first: a filterref to a missing filter would fail when the VM starts.
    for (const f of compiled.treeFilters) await this.filters.ensure(f.filter.name, f.xml);
    this.appliedTrees.set(name, compiled.tree);
    this.o.metrics.managedFilters.set(this.filters.size);
    if (!domain) {
      await this.reportApplied(vm, 'False', AGENT_REASON.domainNotFound, `Filters are defined; domain ${vm.spec.domain.name ?? vm.spec.domain.uuid} does not exist on node ${this.o.nodeName} yet.`, compiled);
      return;
    }
    const bound = await this.attach(vm, domain, compiled);
    await this.reportApplied(vm, 'True', AGENT_REASON.applied, `${compiled.filter.filter.name} on ${bound} interface(s) of domain ${domain.name}.`, compiled);
  }

  /** Puts the VM's filterref on the selected interfaces; returns how many carry it. */
  private async attach(vm: VMFilter, domain: DomainInfo, compiled: VmCompiled): Promise<number> {
    // The binding's parameters are not in the hash (it covers the filters only): a change of
    // spec.parameters alone must still reach the interfaces.
    const key = `${compiled.hash}/${JSON.stringify(compiled.binding)}/${domain.uuid}/${domain.active}/${(vm.spec.interfaces ?? []).join(',')}`;
    const cached = this.attached.get(vm.metadata.name);
    if (cached?.startsWith(key + '#')) return Number(cached.split('#')[1]);
    const binding: InterfaceBinding = compiled.binding;
    const selected = (macs: (string | undefined)[]) => (mac: string | undefined) => !vm.spec.interfaces?.length || (mac !== undefined && macs.includes(mac));
    const wanted = selected((vm.spec.interfaces ?? []).map((m) => m.toLowerCase()));
    // Persistent definition first, then the running instance: each is updated only where it differs.
    let count = 0;
    for (const t of this.targetsOf(domain)) {
      const ifaces = domainInterfaces(await this.o.libvirt.domainXml(domain.uuid, t.inactive)).filter((i) => wanted(i.mac));
      count = ifaces.length;
      for (const iface of ifaces) {
        if (sameBinding(iface.filterref, binding)) continue;
        if (iface.filterref && isManagedFilterName(iface.filterref.filter) && iface.filterref.filter === binding.filter) {
          this.o.metrics.driftRepairs.inc({ what: 'binding' });
        }
        await this.o.libvirt.updateDevice(domain.uuid, interfaceXmlWithBinding(iface, binding), { live: t.live, config: t.config });
        this.o.metrics.libvirtWrites.inc({ op: 'update-device' });
        this.log.info({ vmfilter: vm.metadata.name, domain: domain.name, mac: iface.mac, live: t.live }, 'attached filter');
      }
    }
    this.attached.set(vm.metadata.name, `${key}#${count}`);
    return count;
  }

  /** Where a domain's interfaces live: its persistent definition and/or its running instance. */
  private targetsOf(domain: DomainInfo): { live: boolean; config: boolean; inactive: boolean }[] {
    return [
      ...(domain.persistent ? [{ live: false, config: true, inactive: true }] : []),
      ...(domain.active ? [{ live: true, config: false, inactive: false }] : []),
    ];
  }

  /** Removes the filterref to `filter` from every interface of the domain that carries it. */
  private async detach(filter: string, domain: DomainInfo): Promise<void> {
    for (const t of this.targetsOf(domain)) {
      for (const iface of domainInterfaces(await this.o.libvirt.domainXml(domain.uuid, t.inactive))) {
        if (iface.filterref?.filter !== filter) continue;
        await this.o.libvirt.updateDevice(domain.uuid, interfaceXmlWithBinding(iface, undefined), { live: t.live, config: t.config });
        this.o.metrics.libvirtWrites.inc({ op: 'update-device' });
        this.log.info({ filter, domain: domain.name, mac: iface.mac, live: t.live }, 'detached filter');
      }
    }
  }

  private async remove(name: string, raw: KubernetesObject | undefined, handOver = false): Promise<void> {
    const vm = raw as VMFilter | undefined;
    const ref = vm?.spec?.domain;
    const domain = ref ? (ref.uuid ? this.domains.get(ref.uuid.toLowerCase()) : this.domainsByName.get(ref.name ?? '')) : undefined;
    const wasOurs = this.appliedTrees.has(name) || vm?.status?.nodeName === this.o.nodeName || (vm ? this.isOurs(vm, domain) : false);
    if (!wasOurs) return;
    const filterName = vmFilterName(name);
    if (domain) await this.detach(filterName, domain);
    if ((await this.o.libvirt.filterXml(filterName)) !== undefined) await this.filters.undefine(filterName);
    this.appliedTrees.delete(name);
    this.attached.delete(name);
    this.queue.addAfter(GC_KEY, 500);
    if (vm && (vm.metadata.deletionTimestamp || handOver)) {
      await this.writeStatus(vm, {
        nodeName: this.o.nodeName,
        conditions: this.appliedCondition(vm, 'False', AGENT_REASON.removed, handOver ? `Handed over: the VM is no longer on node ${this.o.nodeName}.` : `Detached and undefined on node ${this.o.nodeName}.`),
      });
    }
  }

  private appliedCondition(vm: VMFilter, status: 'True' | 'False', reason: string, message: string): Condition[] {
    const prev = findCondition(vm.status?.conditions, CONDITION.applied);
    return setCondition(prev ? [prev] : [], { type: CONDITION.applied, status, reason, message }, vm.metadata.generation, new Date());
  }

  private async reportApplied(vm: VMFilter, status: 'True' | 'False', reason: string, message: string, compiled?: VmCompiled): Promise<void> {
    const fields: Record<string, unknown> = { nodeName: this.o.nodeName, conditions: this.appliedCondition(vm, status, reason, message) };
    // appliedHash/appliedGeneration describe what is in libvirt: keep the previous values on failure.
    const hash = compiled && (status === 'True' || reason === AGENT_REASON.domainNotFound) ? compiled.hash : vm.status?.appliedHash;
    const generation = compiled && (status === 'True' || reason === AGENT_REASON.domainNotFound) ? vm.metadata.generation : vm.status?.appliedGeneration;
    if (hash) fields.appliedHash = hash;
    if (generation !== undefined) fields.appliedGeneration = generation;
    await this.writeStatus(vm, fields);
  }

  private async writeStatus(vm: VMFilter, fields: Record<string, unknown>): Promise<void> {
    await this.status.write('VMFilter', vm.metadata.name, vm.metadata.uid, fields);
  }

  /**
   * Undefines managed filters that nothing on this node needs any more. Roots are the VM filters
   * of VMFilters that exist and are this node's (whether or not they compile now: a VM that cannot
   * be compiled keeps its last filter); everything they reference in libvirt is kept too.
   */
  private async collectGarbage(): Promise<void> {
    if (!this.synced) return; // an unsynced cache would look like "no VMs" and delete everything
    const inLibvirt = (await this.o.libvirt.listFilters()).map((f) => f.name).filter(isManagedFilterName);
    const roots = new Set<string>();
    for (const vm of this.typed('VMFilter')) {
      if (vm.metadata.deletionTimestamp) continue;
      if (this.isOurs(vm, this.domainOf(vm))) roots.add(vmFilterName(vm.metadata.name));
    }
    for (const tree of this.appliedTrees.values()) tree.forEach((n) => roots.add(n));
    const keep = new Set<string>();
    const visit = async (name: string): Promise<void> => {
      if (keep.has(name)) return;
      keep.add(name);
      const xml = await this.o.libvirt.filterXml(name);
      if (xml) for (const ref of filterRefsOf(xml)) await visit(ref);
    };
    for (const r of roots) if (inLibvirt.includes(r)) await visit(r);
    const orphans = inLibvirt.filter((n) => !keep.has(n));
    // VM filters first (after detaching), then what they referenced, so undefine never hits "in use".
    orphans.sort((a, b) => Number(b.startsWith('nwf-vm-')) - Number(a.startsWith('nwf-vm-')) || Number(a === 'nwf-global') - Number(b === 'nwf-global'));
    for (const name of orphans) {
      try {
        if (name.startsWith('nwf-vm-')) {
          for (const d of this.domains.values()) await this.detach(name, d);
        }
        await this.filters.undefine(name);
        this.log.info({ filter: name }, 'removed orphaned filter');
      } catch (err) {
        if (this.o.libvirt.classify(err) === 'in-use') this.log.warn({ filter: name }, 'orphaned filter still in use; will retry at the next resync');
        else if (this.o.libvirt.classify(err) !== 'not-found') throw err;
      }
    }
    this.o.metrics.managedFilters.set(inLibvirt.length - orphans.length);
  }
}
