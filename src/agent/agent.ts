import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { VMFilter } from '../api/index.js';
import { VMFILTER_INPUTS } from '../controller/status.js';
import { ChangeFilter, instrumentedQueue, parseObject, type HandlerResult, type WorkQueue } from '../kube/index.js';
import { PolicyIndex, canonicalFilter, quarantineFilter, sha256Hex, vmFilterName, type VmCompiled } from '../policy/index.js';
import { Backoff, backoffDelay } from '../runtime/backoff.js';
import type { Metrics } from '../runtime/metrics.js';
import { decide, rawDomainRef, type Decision, type DecisionContext } from './desired-state.js';
import { AddressSetError, AddressSets, type KernelSetPort } from './address-sets.js';
import { ANNOUNCE_FROM_INTERFACES, expectedRebuildSeconds } from './define-budget.js';
import { DomainCache } from './domain-cache.js';
import { KubernetesError, RealizeError } from './errors.js';
import { GarbageCollector } from './garbage-collector.js';
import type { AgentLibvirt, DomainEvent, DomainInfo } from './libvirt-port.js';
import type { PolicySource } from './policy-source.js';
import { Realizer, type BindResult } from './realizer.js';
import { AGENT_REASON, StatusReporter, type AppliedReport, type StatusSink, type StatusTarget } from './status-reporter.js';
import { VmFilterIndex } from './vm-index.js';

export { AGENT_REASON } from './status-reporter.js';

export interface AgentOptions {
  nodeName: string;
  source: PolicySource;
  status: StatusSink;
  libvirt: AgentLibvirt;
  log: Logger;
  metrics: Metrics;
  resyncMs: number;
  concurrency: number;
  /** Quarantine domains whose VMFilter cannot be compiled and that nothing of ours protects yet. */
  quarantine: boolean;
  /** Delay before a garbage collection after something was removed (coalesces bursts). */
  gcDelayMs?: number;
  /**
   * The kernel's IP sets (address groups and peer selectors). Without it the agent keeps no sets:
   * a VM whose rules name a group is not applied (AddressSetError) and keeps its last filter.
   */
  kernelSets?: KernelSetPort;
}

const GC_KEY = '#gc';
/** A deleted VMFilter's filter is checked this often until a collection undefined it, at most DELETION_CHECKS times. */
const DELETION_CHECK_MS = 500;
const DELETION_CHECKS = 60;
const RETRY = { baseMs: 500, maxMs: 30_000 };

type Protect = Extract<Decision, { kind: 'protect' }>;

/**
 * The node agent. Its parts, each on its own: the policy source (what Kubernetes wants), the
 * domain cache (what libvirt has), the desired state (decide(): what to do about one VMFilter),
 * the realizer (owns what is in libvirt), the garbage collector, and the status reporter. This
 * class wires them: events and resyncs become work-queue keys, and each key runs decide -> realize
 * -> report. The invariant it keeps (docs/architecture.md): an interface that carries a filter of
 * ours keeps carrying one, at least as strict as the last one applied, until the user asks
 * otherwise (deletes the VMFilter or deselects the interface).
 */
export class Agent {
  private readonly queue: WorkQueue;
  private readonly index: PolicyIndex;
  private readonly domains: DomainCache;
  private readonly realizer: Realizer;
  private readonly gc: GarbageCollector;
  private readonly reporter: StatusReporter;
  private readonly decision: DecisionContext;
  private readonly log: Logger;
  /** The VMFilters of the view by domain and by department (lookups instead of walks). */
  private readonly vmIndex = new VmFilterIndex();
  /** Last known state of each VMFilter, to undo its binding once the object is gone. */
  private readonly lastSeen = new Map<string, KubernetesObject>();
  private readonly changes = new ChangeFilter({ ...VMFILTER_INPUTS, finalizers: false });
  /** Deleted VMFilters whose filter garbage collection has not undefined yet: checks so far. */
  private readonly deletionChecks = new Map<string, number>();
  /** The filter names of each VM's tree as last ensured here. */
  private readonly trees = new Map<string, readonly string[]>();
  /** Attempts per key while libvirtd is unreachable (quiet, jittered retries). */
  private readonly disconnectedRetries = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** VMFilters that lost a domain to an older one: decided again whenever any VMFilter changes. */
  private readonly conflicted = new Set<string>();
  /** VMFilter name -> reason of the Applied condition this agent holds for it (vm_protection gauge). */
  private readonly reasons = new Map<string, string>();
  private readonly sets: AddressSets | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly o: AgentOptions) {
    this.log = o.log;
    this.domains = new DomainCache(o.libvirt);
    this.realizer = new Realizer(o.libvirt, o.metrics, o.log, { runningInterfaces: (filter) => this.runningInterfacesUsing(filter) });
    this.reporter = new StatusReporter(o.nodeName, async (name, uid, fields) => {
      await o.status(name, uid, fields);
      o.metrics.statusWrites.inc({ kind: 'VMFilter' });
    });
    this.index = new PolicyIndex({
      services: () => o.source.services(),
      departments: () => o.source.departments(),
      addressGroups: () => o.source.addressGroups(),
    });
    this.sets = o.kernelSets ? new AddressSets(o.kernelSets, o.log, o.metrics) : undefined;
    this.decision = {
      nodeName: o.nodeName,
      domains: this.domains,
      claimants: (d) => this.objectsNamed(this.vmIndex.naming({ name: d.name, uuid: d.uuid })),
      quarantine: o.quarantine,
    };
    this.gc = new GarbageCollector({
      libvirt: o.libvirt,
      realizer: this.realizer,
      domains: this.domains,
      vmFilters: () => o.source.vmFilters(),
      fetchVmFilter: (name) => o.source.fetchVmFilter(name),
      knownVmFilterNames: () => this.lastSeen.keys(),
      decision: this.decision,
      log: o.log,
      metrics: o.metrics,
    });
    // Keys collect from the first watch event on, but none is processed before every cache synced
    // (start()): a VMFilter compiled before its department arrived would be quarantined for nothing.
    this.queue = instrumentedQueue('agent', (key) => (key === GC_KEY ? this.collectGarbage() : this.reconcile(key)), o.concurrency, o.log, o.metrics, {
      paused: true,
      kindOf: (key) => (key === GC_KEY ? 'GarbageCollection' : 'VMFilter'),
    });
    this.wire();
  }

  private wire(): void {
    this.o.source.onVmFilterChange((name, obj) => {
      const previous = this.lastSeen.get(name);
      this.lastSeen.set(name, obj);
      const current = this.o.source.vmFilter(name);
      this.vmIndex.set(name, current);
      this.o.metrics.watchedVmFilters.set(this.vmIndex.size);
      // The controller's status writes change nothing the agent reads.
      if (!this.changes.changed(name, current)) return;
      this.queue.add(name);
      // Which VMFilter keeps a domain depends on the others naming it (duplicates): they are
      // decided again when one of them appears, goes, or names another domain.
      for (const loser of this.conflicted) if (loser !== name) this.queue.add(loser);
      for (const ref of [rawDomainRef(obj), rawDomainRef(previous)]) {
        for (const other of this.vmIndex.naming(ref)) if (other !== name) this.queue.add(other);
      }
    });
    this.o.source.onPolicyChange((kind, obj) => {
      this.index.invalidate();
      if (kind === 'ServicePolicy') {
        // Services shape the global filter, which every VM references.
        this.enqueueAll();
        return;
      }
      // A department reaches only its members (by the raw spec: an object that does not parse
      // today keeps its filter and has nothing to recompile).
      for (const member of this.vmIndex.members(obj.metadata?.name ?? '')) this.queue.add(member);
    });
    this.o.source.onAddressGroupChange((obj, change) => {
      this.index.invalidate();
      const group = obj.metadata?.name ?? '';
      // A group that appears or goes changes which VMs compile (AddressGroupNotFound, PeersNotResolved):
      // all of them are decided again. A membership change reaches only the VMs whose sets come
      // from the group, and their reconcile updates set members without redefining a filter.
      if (change !== 'changed') this.enqueueAll();
      else {
        for (const vm of this.sets?.usersOf(group) ?? []) this.queue.add(vm);
        // A VM waiting for the group's resolution (PeersNotResolved) is no user yet: decide it again too.
        for (const [vm, reason] of this.reasons) {
          if (reason === AGENT_REASON.compileFailed || reason === AGENT_REASON.quarantined) this.queue.add(vm);
        }
      }
    });
    this.o.libvirt.onDomainEvent((e) => this.onDomainEvent(e));
  }

  private onDomainEvent(e: DomainEvent): void {
    if (e.kind === 'reconnected') {
      // Events may have been missed while disconnected.
      this.resync();
      return;
    }
    this.log.debug({ domain: e.name, event: e.kind }, 'domain event');
    this.refreshDomains(() => {
      for (const name of this.vmIndex.naming({ name: e.name, uuid: e.uuid })) {
        this.realizer.forgetBinding(name);
        this.queue.add(name);
      }
      if (e.kind === 'undefined' || e.kind === 'migrated') this.scheduleGc();
    });
  }

  /**
   * Refreshes the domain list, then runs `next`. A failed listing is retried with jittered backoff
   * until it succeeds (or the agent stops): an event is never dropped because libvirt hiccuped.
   */
  private refreshDomains(next: () => void, backoff = new Backoff(RETRY)): void {
    this.domains.refresh().then(next, (err: unknown) => {
      if (this.stopped) return;
      const delay = backoff.next();
      this.o.metrics.errors.inc({ component: 'agent' });
      this.log.warn({ err: String((err as Error)?.message ?? err), retryInMs: delay }, 'cannot list domains; retrying');
      this.later(delay, () => this.refreshDomains(next, backoff));
    });
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.stopped) fn();
    }, ms);
    this.timers.add(t);
  }

  /**
   * Running interfaces on this node whose filter tree contains `filter` (libvirt rebuilds each of
   * them inside a define of it): the interfaces of active domains whose VM's compiled tree names it.
   */
  private runningInterfacesUsing(filter: string): number {
    let count = 0;
    for (const obj of this.o.source.vmFilters()) {
      const domain = this.domains.find(rawDomainRef(obj));
      if (!domain?.active) continue;
      const parsed = parseObject('VMFilter', obj);
      if (!parsed.ok) continue;
      const compiled = this.index.vm(parsed.value);
      if (!compiled.ok || !compiled.treeFilters.some((f) => f.filter.name === filter)) continue;
      count += this.realizer.boundInterfaces(parsed.value.metadata.name) ?? 1;
    }
    return count;
  }

  private objectsNamed(names: Iterable<string>): KubernetesObject[] {
    const out: KubernetesObject[] = [];
    for (const n of names) {
      const obj = this.o.source.vmFilter(n);
      if (obj) out.push(obj);
    }
    return out;
  }

  private enqueueAll(): void {
    for (const obj of this.o.source.vmFilters()) {
      const name = obj.metadata!.name!;
      if (!this.lastSeen.has(name)) this.lastSeen.set(name, obj);
      this.vmIndex.set(name, obj);
      this.queue.add(name);
    }
  }

  private scheduleGc(): void {
    this.queue.addAfter(GC_KEY, this.o.gcDelayMs ?? 1000);
  }

  get synced(): boolean {
    return this.domains.loaded && this.o.source.synced();
  }

  async start(): Promise<void> {
    // libvirtd may not be up yet: keep trying (the agent is not ready meanwhile).
    const backoff = new Backoff({ baseMs: 250, maxMs: 10_000 });
    while (!this.stopped) {
      try {
        await this.domains.refresh();
        break;
      } catch (err) {
        const delay = backoff.next();
        this.log.warn({ err: String((err as Error)?.message ?? err), retryInMs: delay }, 'cannot list domains yet');
        await new Promise<void>((r) => this.later(delay, r));
      }
    }
    await this.o.source.start();
    this.enqueueAll();
    this.queue.start();
    this.scheduleGc();
    this.resyncTimer = setInterval(() => this.resync(), this.o.resyncMs);
  }

  /** Re-verifies everything against libvirt: drift shows up as a mismatch and is repaired. */
  resync(): void {
    this.o.metrics.resyncs.inc();
    this.realizer.invalidate();
    this.refreshDomains(() => {
      this.enqueueAll();
      this.queue.add(GC_KEY);
    });
  }

  /** Work waiting, running or scheduled (retries, collections, domain listings to redo). */
  get pending(): number {
    return this.queue.pending + this.timers.size;
  }

  async drain(): Promise<void> {
    await this.queue.drain();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    this.resyncTimer = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.queue.shutdown();
    await this.o.source.stop();
  }

  private async collectGarbage(): Promise<void> {
    // An unsynced cache would look like "no VMFilters" and remove everything.
    if (!this.synced) {
      this.scheduleGc();
      return;
    }
    await this.gc.collect();
    // Sets no VM wants any more go (the kernel keeps those an interface's rules still use).
    await this.sets?.collect();
  }

  private async reconcile(name: string): Promise<HandlerResult> {
    let raw = this.o.source.vmFilter(name);
    try {
      // Gone from the view is not necessarily deleted: a VMFilter re-pinned to another node leaves
      // this node's watch while its domain may still be here (docs/architecture.md). Ask the API server.
      const left = !raw && this.lastSeen.has(name);
      if (left) raw = await this.fetchLeft(name);
      const decision = decide(raw, this.decision);
      const result = await this.realize(name, decision);
      if (left && decision.kind === 'elsewhere') this.forget(name);
      this.disconnectedRetries.delete(name);
      return result;
    } catch (err) {
      if (err instanceof RealizeError && err.transient) {
        // libvirtd is unreachable: nothing is wrong with the VMFilter; retry quietly. The reconnect
        // triggers a resync as well.
        const attempt = (this.disconnectedRetries.get(name) ?? 0) + 1;
        this.disconnectedRetries.set(name, attempt);
        this.log.debug({ vmfilter: name, err: err.message }, 'libvirtd unreachable; will retry');
        return { requeueAfterMs: backoffDelay(RETRY, attempt), failed: true };
      }
      this.o.metrics.errors.inc({ component: 'agent' });
      if (err instanceof RealizeError && raw && !raw.metadata?.deletionTimestamp) {
        await this.reporter.report(raw, { status: 'False', reason: AGENT_REASON.libvirtError, message: `${err.message}; retrying with backoff.` }).catch(() => undefined);
      }
      throw err;
    }
  }

  private async fetchLeft(name: string): Promise<KubernetesObject | undefined> {
    try {
      return await this.o.source.fetchVmFilter(name);
    } catch (err) {
      throw new KubernetesError(`read VMFilter ${name}, which left this node's watch`, err);
    }
  }

  private async realize(name: string, d: Decision): Promise<HandlerResult> {
    if (d.kind === 'conflict') this.conflicted.add(name);
    else this.conflicted.delete(name);
    switch (d.kind) {
      case 'gone':
        // Nothing waits for this one (no finalizer held it): the collection finishes on its own.
        await this.detachDeleted(name, this.lastSeen.get(name), undefined);
        this.forget(name);
        return undefined;
      case 'deleting': {
        await this.detachDeleted(name, d.raw, d.domain);
        if (await this.awaitingCollection(name)) return { requeueAfterMs: DELETION_CHECK_MS };
        this.forget(name);
        await this.report(d.raw, d.reportStatus, { status: 'False', reason: AGENT_REASON.removed, message: `Detached and undefined on node ${this.o.nodeName}.` });
        return undefined;
      }
      case 'elsewhere':
        return this.release(name, d);
      case 'conflict':
        this.queue.add(d.winner);
        await this.report(d.obj, d.reportStatus, {
          status: 'False',
          reason: AGENT_REASON.conflict,
          message: `VMFilter ${d.winner} (older) already protects domain ${d.domain.name}; this one is not applied. Delete one of them, or give both disjoint spec.interfaces.`,
        });
        return;
      case 'unparseable':
        return this.keepOrQuarantine(d.raw, d.domain, undefined, d.quarantine, d.reportStatus, `${d.field}: ${d.message}`, AGENT_REASON.invalidSpec);
      case 'protect':
        return this.protect(d);
    }
  }

  private async report(obj: StatusTarget, allowed: boolean, report: AppliedReport): Promise<void> {
    const name = obj.metadata?.name ?? '';
    const held = allowed && report.reason !== AGENT_REASON.removed;
    this.countReason(name, held ? report.reason : undefined);
    if (allowed) await this.reporter.report(obj, report);
  }

  /** Keeps the vm_protection gauge: one entry per VMFilter this agent holds, by reason. */
  private countReason(name: string, reason: string | undefined): void {
    const prev = this.reasons.get(name);
    if (prev === reason) return;
    if (prev !== undefined) this.o.metrics.protectionStates.dec({ reason: prev });
    if (reason === undefined) this.reasons.delete(name);
    else {
      this.reasons.set(name, reason);
      this.o.metrics.protectionStates.inc({ reason });
    }
  }

  /**
   * The VMFilter was deleted: the user asked to unprotect its domain (docs/status.md, "Deletion").
   * Detaches it from the domain it names; undefining is garbage collection's job, which first
   * detaches the filter from every interface that still carries it (another domain the VMFilter
   * named earlier, or a domain this process never saw), so no persistent definition is left
   * pointing at a missing filter. One coalesced collection serves a burst of deletions: a pass
   * reads every domain and filter, and one per deleted VM made deleting 1,000 VMs quadratic.
   */
  private async detachDeleted(name: string, last: KubernetesObject | undefined, known: DomainInfo | undefined): Promise<void> {
    const domain = known ?? (last ? this.domains.find((last as VMFilter).spec?.domain) : undefined);
    if (domain) await this.realizer.unbind(vmFilterName(name), domain);
    this.scheduleGc();
  }

  /**
   * True while a deleted VMFilter's filter is still defined: Removed (which lets the finalizer go)
   * waits for the collection, at most DELETION_CHECKS checks. A filter still defined after that is
   * held by something outside the operator ("in use"); the object goes and later passes retry.
   */
  private async awaitingCollection(name: string): Promise<boolean> {
    const checks = this.deletionChecks.get(name) ?? 0;
    if (checks >= DELETION_CHECKS || !(await this.realizer.exists(vmFilterName(name)))) return false;
    this.deletionChecks.set(name, checks + 1);
    return true;
  }

  /** Forgets a VMFilter that is deleted, or no longer this node's and not in its view. */
  private forget(name: string): void {
    this.lastSeen.delete(name);
    this.deletionChecks.delete(name);
    this.changes.forget(name);
    this.trees.delete(name);
    this.countReason(name, undefined);
    this.realizer.forgetBinding(name);
    this.index.forgetVm(name);
    this.sets?.forget(name);
    this.conflicted.delete(name);
    this.disconnectedRetries.delete(name);
  }

  /** The VM is another node's and its domain is not here: hand over (remove what this node had). */
  private async release(name: string, d: Extract<Decision, { kind: 'elsewhere' }>): Promise<void> {
    this.realizer.forgetBinding(name);
    // Garbage collection undefines the filter unless an interface here still carries it (a domain
    // the VMFilter named before): that interface stays protected.
    if (await this.realizer.exists(vmFilterName(name))) this.scheduleGc();
    const where = d.vm.spec.nodeName ? `spec.nodeName is ${d.vm.spec.nodeName}` : 'no node is pinned';
    await this.report(d.vm, d.reportStatus, {
      status: 'False',
      reason: AGENT_REASON.removed,
      message: `Handed over: domain ${d.vm.spec.domain.name ?? d.vm.spec.domain.uuid} is not on node ${this.o.nodeName} (${where}); its filter was removed here.`,
    });
  }

  private async protect(d: Protect): Promise<void> {
    const { vm, domain } = d;
    const compiled = this.index.vm(vm);
    if (!compiled.ok) {
      const e = compiled.diagnostics.find((x) => x.severity === 'error')!;
      const why = `${e.reason}: ${e.message}`;
      if (!domain) {
        await this.report(vm, d.reportStatus, { status: 'False', reason: AGENT_REASON.compileFailed, message: `${why}. The domain is not on node ${this.o.nodeName} yet.` });
        return;
      }
      return this.keepOrQuarantine(vm, domain, selectionOf(vm), d.quarantine, d.reportStatus, why, AGENT_REASON.compileFailed);
    }
    // A define that rebuilds many running interfaces takes seconds each: say so meanwhile.
    const announce = async (filter: string, interfaces: number): Promise<void> => {
      if (interfaces < ANNOUNCE_FROM_INTERFACES) return;
      this.log.info({ vmfilter: vm.metadata.name, filter, interfaces }, 'redefining a filter that running interfaces use');
      await this.report(vm, d.reportStatus, {
        status: 'False',
        reason: AGENT_REASON.realizing,
        message:
          `libvirt is rebuilding the firewall of ${interfaces} running interfaces that use ${filter} ` +
          `(about ${expectedRebuildSeconds(interfaces)} s); the previous rules hold until each is rebuilt.`,
      });
    };
    // The sets must exist before libvirt instantiates a rule that matches them; their members are
    // the groups' as of this compile.
    if (!(await this.ensureSets(vm, compiled, d.reportStatus))) return;
    // Collect garbage only when this VM's tree stopped naming a filter (it may be unused now): a
    // department's new rules keep the names, and a collection reads every filter and domain back.
    const names = compiled.treeFilters.map((f) => f.filter.name);
    const before = this.trees.get(vm.metadata.name);
    try {
      await this.realizer.ensureTree(compiled.treeFilters, announce);
      this.trees.set(vm.metadata.name, names);
      if (before?.some((n) => !names.includes(n))) this.scheduleGc();
    } catch (err) {
      if (err instanceof RealizeError && err.terminal) {
        await this.report(vm, d.reportStatus, { status: 'False', reason: AGENT_REASON.invalidFilter, message: `libvirt refused the filter: ${err.message}. The last applied filter stays in place; fix the policy.` });
        return;
      }
      throw err;
    }
    const realized = { hash: compiled.hash, generation: vm.metadata.generation };
    if (!domain) {
      await this.report(vm, d.reportStatus, {
        status: 'False',
        reason: AGENT_REASON.domainNotFound,
        message: `Filters are defined on node ${this.o.nodeName}; domain ${vm.spec.domain.name ?? vm.spec.domain.uuid} does not exist here yet (they attach when it arrives, by migration too).`,
        realized,
      });
      return;
    }
    const result = await this.bindCompiled(vm, domain, compiled);
    await this.report(vm, d.reportStatus, { ...this.describeBinding(vm, domain, compiled, result, d.pinnedTo), realized });
  }

  /** True when the VM's kernel sets are in place; false (reported, last filter kept) when they cannot be. */
  private async ensureSets(vm: VMFilter, compiled: VmCompiled, reportStatus: boolean): Promise<boolean> {
    if (compiled.sets.length === 0) {
      await this.sets?.want(vm.metadata.name, []);
      return true;
    }
    if (!this.sets) {
      await this.report(vm, reportStatus, {
        status: 'False',
        reason: AGENT_REASON.addressSetError,
        message: `Rules name address groups or peers, and this agent keeps no kernel IP sets (--kernel-sets=off). The last applied filter stays in place.`,
      });
      return false;
    }
    try {
      await this.sets.want(vm.metadata.name, compiled.sets);
      return true;
    } catch (err) {
      if (!(err instanceof AddressSetError)) throw err;
      await this.report(vm, reportStatus, {
        status: 'False',
        reason: AGENT_REASON.addressSetError,
        message: `${err.message}. The last applied filter stays in place; retrying with backoff.`,
      });
      throw err;
    }
  }

  private bindCompiled(vm: VMFilter, domain: DomainInfo, compiled: VmCompiled): Promise<BindResult> {
    const selection = selectionOf(vm);
    // The binding's parameters are not in the hash (it covers the filters only).
    const key = `${compiled.hash}/${JSON.stringify(compiled.binding)}/${[...(selection ?? [])].join(',')}`;
    return this.realizer.bind(vm.metadata.name, domain, compiled.binding, selection, key);
  }

  private describeBinding(vm: VMFilter, domain: DomainInfo, compiled: VmCompiled, r: BindResult, pinnedTo: string | undefined): Omit<AppliedReport, 'realized'> {
    const filter = compiled.filter.filter.name;
    const foreign = r.foreign.map((f) => `${f.mac ?? '?'} (${f.filter})`).join(', ');
    if (r.protectedCount === 0 && r.foreign.length === 0) {
      const what = vm.spec.interfaces?.length ? `no interface matches spec.interfaces (${vm.spec.interfaces.join(', ')})` : 'it has no interfaces';
      return { status: 'False', reason: AGENT_REASON.noInterfaces, message: `Nothing is protected: ${what} on domain ${domain.name}. The filters are defined.` };
    }
    if (r.foreign.length > 0) {
      return {
        status: 'False',
        reason: AGENT_REASON.foreignFilter,
        message: `${filter} on ${r.protectedCount} interface(s) of domain ${domain.name}; left alone: ${foreign}, which carry a filter the operator does not manage. Remove that <filterref> (spec.department's cleanTraffic gives clean-traffic inside our tree) or deselect them.`,
      };
    }
    if (pinnedTo && pinnedTo !== this.o.nodeName) {
      return {
        status: 'False',
        reason: AGENT_REASON.nodeMismatch,
        message: `spec.nodeName is ${pinnedTo}, but domain ${domain.name} is still on node ${this.o.nodeName}: ${filter} stays on its ${r.protectedCount} interface(s) here until the domain leaves (migration completes or it is undefined).`,
      };
    }
    return { status: 'True', reason: AGENT_REASON.applied, message: `${filter} on ${r.protectedCount} interface(s) of domain ${domain.name}.` };
  }

  /**
   * The VMFilter cannot be compiled (or parsed). A domain that carries our filter keeps it (the
   * last applied policy); a domain that carries none gets the quarantine filter unless disabled.
   */
  private async keepOrQuarantine(
    obj: StatusTarget,
    domain: DomainInfo | undefined,
    selection: ReadonlySet<string> | undefined,
    quarantine: boolean,
    reportStatus: boolean,
    why: string,
    reason: string,
  ): Promise<void> {
    const name = obj.metadata!.name!;
    const filter = vmFilterName(name);
    if (!domain) {
      await this.report(obj, reportStatus, { status: 'False', reason, message: `${why}. The last applied filter (if any) stays in place.` });
      return;
    }
    const kept = await this.realizer.carrying(domain, filter);
    if (kept) {
      // Interfaces added since (hot-plug) get the same filter: nothing of the domain stays open.
      await this.realizer.bind(name, domain, kept, selection, `keep/${JSON.stringify(kept)}/${[...(selection ?? [])].join(',')}`);
      const quarantined = await this.isQuarantine(name);
      await this.report(obj, reportStatus, {
        status: 'False',
        reason: quarantined ? AGENT_REASON.quarantined : reason,
        message: quarantined ? `${why}. Domain ${domain.name} stays quarantined (all IP traffic dropped) until the VMFilter compiles.` : `${why}. The last applied filter stays in place.`,
      });
      return;
    }
    if (!quarantine) {
      await this.report(obj, reportStatus, { status: 'False', reason, message: `${why}. Domain ${domain.name} is NOT protected: quarantine is disabled for it.` });
      return;
    }
    const q = quarantineFilter(name);
    await this.realizer.ensureTree([q]);
    const r = await this.realizer.bind(name, domain, { filter, parameters: [] }, selection, `quarantine/${[...(selection ?? [])].join(',')}`);
    this.log.warn({ vmfilter: name, domain: domain.name, why }, 'quarantined domain: its VMFilter cannot be compiled');
    await this.report(obj, reportStatus, {
      status: 'False',
      reason: AGENT_REASON.quarantined,
      message: `${why}. Domain ${domain.name} is quarantined on ${r.protectedCount} interface(s) (all IP traffic dropped) until the VMFilter compiles.`,
    });
  }

  private async isQuarantine(name: string): Promise<boolean> {
    const xml = await this.o.libvirt.filterXml(vmFilterName(name)).catch(() => undefined);
    return xml !== undefined && sha256Hex(canonicalFilter(xml)) === sha256Hex(canonicalFilter(quarantineFilter(name).xml));
  }
}

function selectionOf(vm: VMFilter): ReadonlySet<string> | undefined {
  return vm.spec.interfaces?.length ? new Set(vm.spec.interfaces.map((m) => m.toLowerCase())) : undefined;
}
