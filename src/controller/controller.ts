import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { CustomRule, DepartmentPolicy, ServicePolicy, VMFilter } from '../api/index.js';
import {
  ChangeFilter,
  EventRecorder,
  FINALIZER,
  StatusWriter,
  WorkQueue,
  instrumentedQueue,
  onSpecChange,
  allSynced,
  createPolicyInformers,
  findCondition,
  parseObject,
  typedList,
  type PolicyInformers,
  removeFinalizer,
  addFinalizer,
  type KindName,
  type KubeClients,
} from '../kube/index.js';
import { PolicyIndex, type VmResult } from '../policy/index.js';
import type { Metrics } from '../runtime/metrics.js';
import { Aggregates, type Contribution } from './aggregates.js';
import { Fingerprints, groupMembersPrint, groupObjectPrint, peerInputsPrint } from './fingerprints.js';
import { GroupReferences } from './group-references.js';
import { PeerGroupWriter, peerGroupWrites } from './peer-group-writer.js';
import { peerGroupAction } from './peer-groups.js';
import {
  CONDITION,
  CONTROLLER_OWNED,
  REASON,
  VMFILTER_INPUTS,
  addressGroupControllerStatus,
  departmentControllerStatus,
  invalidGroupStatus,
  invalidSpecStatus,
  serviceControllerStatus,
  vmControllerStatus,
  vmState,
} from './status.js';

export const CONTROLLER_FIELD_MANAGER = 'nwfilter-operator-controller';

export interface ControllerOptions {
  clients: KubeClients;
  log: Logger;
  metrics: Metrics;
  identity: string;
  resyncMs: number;
  /** Aggregated department/service status is written at most once per this delay per object. */
  coalesceMs: number;
  concurrency?: number;
}

const groupKey = (name: string): string => `AddressGroup/${name}`;

/**
 * Watches our kinds and writes their status; manages the VMFilter finalizer and the AddressGroups of
 * rules' peer selectors, whose members it resolves from the VMFilters (as the endpoints controller
 * resolves a Service's selector). It never talks to libvirt: the node agents apply filters and
 * report `Applied`, from which `Ready` and the realization counts are derived here.
 */
export class Controller {
  private readonly informers: PolicyInformers;
  private readonly queue: WorkQueue;
  private readonly index: PolicyIndex;
  private readonly status: StatusWriter;
  private readonly events: EventRecorder;
  private readonly log: Logger;
  /** Department and service realization counts, updated as each VMFilter is reconciled. */
  private readonly aggregates = new Aggregates();
  /**
   * VMFilters of the first sync not counted yet: aggregates are written only once this is empty, so
   * a restart never writes a department status from a half-counted cache. (A VMFilter added later
   * is counted by its own reconcile, which re-queues the aggregates it changes.)
   */
  private readonly uncounted = new Set<string>();
  private readonly vmChanges = new ChangeFilter({ ...VMFILTER_INPUTS, finalizers: true });
  /** Which objects' rules name which AddressGroups; kept by the informer events, complete once every cache synced. */
  private readonly references = new GroupReferences();
  private readonly peerInputs = new Fingerprints();
  private readonly groupObjects = new Fingerprints();
  private readonly groupMembers = new Fingerprints();
  private readonly peerGroups: PeerGroupWriter;
  /** User groups holding the name of a rule's selector, warned about once each. */
  private readonly clashes = new Set<string>();

  constructor(private readonly o: ControllerOptions) {
    this.log = o.log;
    this.informers = createPolicyInformers(o.clients, o.log, o.metrics, o.resyncMs);
    this.index = new PolicyIndex(
      { services: () => this.typed('ServicePolicy'), departments: () => this.typed('DepartmentPolicy'), addressGroups: () => this.typed('AddressGroup') },
      { cacheVms: false },
    );
    this.status = new StatusWriter(o.clients.custom, CONTROLLER_FIELD_MANAGER, (kind) => o.metrics.statusWrites.inc({ kind }));
    this.events = new EventRecorder(o.clients.events, 'nwfilter.infinibay.io/controller', o.identity, o.log);
    this.peerGroups = new PeerGroupWriter(o.clients.custom, CONTROLLER_FIELD_MANAGER, o.log, peerGroupWrites(o.metrics.registry));
    // Events enqueue from the first list on, but nothing is reconciled before run(): a VMFilter
    // compiled before the departments' cache synced would get a false DepartmentNotFound.
    // Its reconciles wait on the API server, not on this process: 16 in flight hide that latency.
    this.queue = instrumentedQueue('controller', (key) => this.reconcile(key), o.concurrency ?? 16, o.log, o.metrics, {
      paused: true,
      kindOf: (key) => key.slice(0, key.indexOf('/')),
    });
    this.wire();
  }

  private typed<K extends KindName>(kind: K) {
    return typedList(this.informers, kind);
  }

  private wire(): void {
    const vmKey = (o: KubernetesObject): string => `VMFilter/${o.metadata!.name}`;
    const departmentOf = (o: KubernetesObject | undefined): unknown => (o as { spec?: { department?: unknown } } | undefined)?.spec?.department;
    this.informers.VMFilter.onChange((o) => {
      const name = o.metadata!.name!;
      const current = this.informers.VMFilter.get(name);
      this.track('VMFilter', name, current);
      // Which VMs a selector picks and their addresses: every group with peers is resolved again,
      // coalesced (they are few; a burst of 1,000 new VMs is one resolution per group).
      if (this.peerInputs.changed(name, peerInputsPrint(current))) this.resolvePeersLater();
      // Its reconcile recounts it and re-queues only the aggregates whose counts changed. Updates
      // of nothing it reads (its own status writes) re-queue nothing.
      if (this.vmChanges.changed(name, current)) this.queue.add(vmKey(o));
    });
    // Status-only updates (the controller's own writes among them) change nothing compiled.
    onSpecChange(this.informers.DepartmentPolicy, (o, change) => {
      this.track('DepartmentPolicy', o.metadata!.name!, change === 'deleted' ? undefined : o);
      this.index.invalidate();
      this.queue.add(`DepartmentPolicy/${o.metadata!.name}`);
      for (const v of this.informers.VMFilter.list()) if (departmentOf(v) === o.metadata!.name) this.queue.add(vmKey(v));
    });
    onSpecChange(this.informers.ServicePolicy, (o) => {
      this.index.invalidate();
      this.queue.add(`ServicePolicy/${o.metadata!.name}`);
      // Services shape the global filter and every VM's effective services.
      for (const v of this.informers.VMFilter.list()) this.queue.add(vmKey(v));
    });
    for (const kind of ['ServicePolicy', 'DepartmentPolicy', 'VMFilter'] as const) {
      // Maps keyed by objects forget them when they go (10,000 VMs come and go over a day).
      this.informers[kind].on('delete', (o) => {
        this.status.forget(kind, o.metadata!.name!, o.metadata?.uid);
        if (kind === 'VMFilter') this.index.forgetVm(o.metadata!.name!);
      });
      this.informers[kind].onResync((objs) => objs.forEach((o) => this.queue.add(`${kind}/${o.metadata!.name}`)));
    }
    this.wireGroups();
  }

  private wireGroups(): void {
    const groups = this.informers.AddressGroup;
    groups.onChange((o) => {
      const name = o.metadata!.name!;
      const current = groups.get(name);
      if (this.groupObjects.changed(name, groupObjectPrint(current))) this.queue.add(groupKey(name));
      // The group appeared, went, or its members changed: the compiles that read it change.
      if (this.groupMembers.changed(name, groupMembersPrint(current))) {
        this.index.invalidate();
        this.requeueUsersOf(name);
      }
    });
    groups.on('delete', (o) => {
      this.status.forget('AddressGroup', o.metadata!.name!, o.metadata?.uid);
      this.clashes.delete(o.metadata!.name!);
    });
    // Names only a rule knows (a managed group deleted by hand) come back through the rule's object.
    groups.onResync((objs) => objs.forEach((o) => this.queue.add(groupKey(o.metadata!.name!))));
  }

  /**
   * Records which groups a DepartmentPolicy's or VMFilter's rules name (nothing when it is gone or
   * does not parse). Peer groups it started or stopped using are reconciled: created or deleted.
   */
  private track(kind: 'VMFilter' | 'DepartmentPolicy', name: string, raw: KubernetesObject | undefined): void {
    const parsed = raw ? parseObject(kind, raw) : undefined;
    const rules: readonly CustomRule[] | undefined = parsed?.ok ? parsed.value.spec.rules : undefined;
    for (const group of this.references.set(`${kind}/${name}`, rules)) this.queue.add(groupKey(group));
  }

  private resolvePeersLater(): void {
    for (const g of this.informers.AddressGroup.list()) {
      if ((g as { spec?: { peers?: unknown } }).spec?.peers !== undefined) this.queue.addAfter(groupKey(g.metadata!.name!), this.o.coalesceMs);
    }
  }

  /**
   * The objects whose compile reads the group: those whose rules name it and the members of the
   * departments among them (a department's rules are in each member's tree). Only these, not every
   * VM: a peer group's members change whenever a VM of its department comes or goes.
   */
  private requeueUsersOf(group: string): void {
    const departments = new Set<string>();
    for (const owner of this.references.ownersOf(group)) {
      this.queue.add(owner);
      if (owner.startsWith('DepartmentPolicy/')) departments.add(owner.slice('DepartmentPolicy/'.length));
    }
    if (departments.size === 0) return;
    for (const v of this.informers.VMFilter.list()) {
      const department = (v as { spec?: { department?: unknown } }).spec?.department;
      if (typeof department === 'string' && departments.has(department)) this.queue.add(`VMFilter/${v.metadata!.name}`);
    }
  }

  get synced(): boolean {
    return allSynced(this.informers);
  }

  /** Starts the watches; returns when all have synced. Reconciling starts with `run()`. */
  async startInformers(): Promise<void> {
    await Promise.all(Object.values(this.informers).map((i) => i.start()));
  }

  /** Enqueues everything once (informer events enqueue the rest). */
  run(): void {
    for (const o of this.informers.VMFilter.list()) this.uncounted.add(o.metadata!.name!);
    for (const kind of ['VMFilter', 'DepartmentPolicy', 'ServicePolicy'] as const) {
      for (const o of this.informers[kind].list()) this.queue.add(`${kind}/${o.metadata!.name}`);
    }
    // Existing groups (status, or deletion when unused) and the peer groups rules use (creation).
    for (const o of this.informers.AddressGroup.list()) this.queue.add(groupKey(o.metadata!.name!));
    for (const name of this.references.peerGroups()) this.queue.add(groupKey(name));
    this.queue.start();
  }

  async drain(): Promise<void> {
    await this.queue.drain();
  }

  async stop(): Promise<void> {
    await this.queue.shutdown();
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
  }

  /** Keys are `<kind>/<name>`; the queue's wrapper times and counts each run by kind. */
  private async reconcile(key: string): Promise<void> {
    const [kind, name] = key.split('/') as [KindName, string];
    try {
      if (kind === 'VMFilter') await this.reconcileVm(name);
      else if (kind === 'DepartmentPolicy') await this.reconcileDepartment(name);
      else if (kind === 'AddressGroup') await this.reconcileGroup(name);
      else await this.reconcileService(name);
    } catch (err) {
      this.o.metrics.errors.inc({ component: 'controller' });
      throw err;
    }
  }

  /** Counts the VM in its department's and services' aggregates; re-queues those whose counts changed. */
  private count(name: string, contribution: Contribution | undefined): void {
    const changed = this.aggregates.set(name, contribution);
    this.uncounted.delete(name);
    for (const d of changed.departments) this.queue.addAfter(`DepartmentPolicy/${d}`, this.o.coalesceMs);
    for (const svc of changed.services) this.queue.addAfter(`ServicePolicy/${svc}`, this.o.coalesceMs);
  }

  private async reconcileVm(name: string): Promise<void> {
    const raw = this.informers.VMFilter.get(name);
    if (!raw || raw.metadata?.deletionTimestamp) this.count(name, undefined);
    if (!raw) return;
    const finalizers = raw.metadata?.finalizers;
    if (raw.metadata?.deletionTimestamp) {
      await this.finishDeletion(raw);
      return;
    }
    const parsed = parseObject('VMFilter', raw);
    const compiled = parsed.ok ? this.index.vm(parsed.value) : undefined;
    // A VM counts in its department and in every service it effectively uses or provides.
    this.count(
      name,
      parsed.ok && compiled
        ? {
            department: parsed.value.spec.department,
            services: compiled.ok ? compiled.effectiveServices.filter((s) => s.use || s.provide).map((s) => s.name) : [],
            state: vmState(compiled, parsed.value).state,
          }
        : undefined,
    );
    if (await addFinalizer(this.o.clients.custom, 'VMFilter', name, finalizers, FINALIZER)) return; // the update event brings us back
    const now = new Date();
    const current = (raw as VMFilter).status as Record<string, unknown> | undefined;
    if (!parsed.ok || !compiled) {
      const [field, message] = parsed.ok ? ['', ''] : [parsed.field, parsed.message];
      const status = invalidSpecStatus('VMFilter', raw.metadata?.generation, (raw as VMFilter).status?.conditions, field, message, now);
      await this.status.write('VMFilter', name, raw.metadata?.uid, status, { status: current, owned: CONTROLLER_OWNED.VMFilter });
      return;
    }
    const vm = parsed.value;
    const before = findCondition(vm.status?.conditions, CONDITION.ready);
    const status = vmControllerStatus(vm, compiled, now);
    const wrote = await this.status.write('VMFilter', name, vm.metadata.uid, status, { status: current, owned: CONTROLLER_OWNED.VMFilter });
    if (wrote) {
      const ready = (status.conditions as { type: string; status: string; reason: string; message: string }[]).find((c) => c.type === CONDITION.ready)!;
      const underWay: string[] = [REASON.applied, REASON.pending, REASON.applying, REASON.realizing];
      const warn = !compiled.ok || !underWay.includes(ready.reason);
      // A new VMFilter's first "Pending" says nothing `kubectl get` does not: 10,000 of them were a
      // third of the controller's requests in a rollout.
      const changed = before ? before.status !== ready.status || before.reason !== ready.reason : warn;
      if (changed) {
        const target = { kind: 'VMFilter', name, ...(vm.metadata.uid ? { uid: vm.metadata.uid } : {}) };
        void this.events.emit(target, warn ? 'Warning' : 'Normal', ready.reason, ready.message);
      }
    }
  }

  /** Aggregates wait until every VMFilter of the cache is counted (see `uncounted`); true when they must wait. */
  private aggregatesIncomplete(key: string): boolean {
    if (this.uncounted.size === 0) return false;
    this.queue.addAfter(key, this.o.coalesceMs);
    return true;
  }

  /** The agent that applied the filter reports `Applied=False/Removed` once it has detached and undefined it. */
  private async finishDeletion(raw: KubernetesObject): Promise<void> {
    const name = raw.metadata!.name!;
    const status = (raw as VMFilter).status;
    const applied = findCondition(status?.conditions, CONDITION.applied);
    const neverApplied = !status?.nodeName;
    if (neverApplied || applied?.reason === REASON.removed) {
      if (await removeFinalizer(this.o.clients.custom, 'VMFilter', name, raw.metadata?.finalizers, FINALIZER)) {
        this.log.info({ vmfilter: name, neverApplied }, 'finalizer removed');
      }
    }
  }

  private async reconcileDepartment(name: string): Promise<void> {
    const raw = this.informers.DepartmentPolicy.get(name);
    if (!raw) return;
    const parsed = parseObject('DepartmentPolicy', raw);
    const now = new Date();
    if (!parsed.ok) {
      await this.status.write('DepartmentPolicy', name, raw.metadata?.uid, invalidSpecStatus('DepartmentPolicy', raw.metadata?.generation, (raw as DepartmentPolicy).status?.conditions, parsed.field, parsed.message, now));
      return;
    }
    if (this.aggregatesIncomplete(`DepartmentPolicy/${name}`)) return;
    const dept = parsed.value;
    const result = this.index.department(name)!;
    const status = departmentControllerStatus(dept, result, this.aggregates.department(name), now);
    await this.status.write('DepartmentPolicy', name, dept.metadata.uid, status, { status: (raw as { status?: Record<string, unknown> }).status, owned: CONTROLLER_OWNED.DepartmentPolicy });
  }

  private async reconcileService(name: string): Promise<void> {
    const raw = this.informers.ServicePolicy.get(name);
    if (!raw) return;
    const parsed = parseObject('ServicePolicy', raw);
    const now = new Date();
    if (!parsed.ok) {
      await this.status.write('ServicePolicy', name, raw.metadata?.uid, invalidSpecStatus('ServicePolicy', raw.metadata?.generation, (raw as ServicePolicy).status?.conditions, parsed.field, parsed.message, now));
      return;
    }
    if (this.aggregatesIncomplete(`ServicePolicy/${name}`)) return;
    const svc = parsed.value;
    const status = serviceControllerStatus(svc, this.aggregates.service(name), now);
    await this.status.write('ServicePolicy', name, svc.metadata.uid, status, { status: (raw as { status?: Record<string, unknown> }).status, owned: CONTROLLER_OWNED.ServicePolicy });
  }

  /**
   * One AddressGroup name: create the peer group a rule needs, restore or delete a managed one, and
   * resolve the status of any that exists.
   */
  private async reconcileGroup(name: string): Promise<void> {
    // Never fail open while starting: before every cache synced, an empty (or partial) VMFilter cache
    // would resolve each peer group to no members and the references would say no rule uses a group,
    // so peer groups would be emptied or deleted, and every agent would drop those VMs' addresses
    // from its kernel sets (a VM's filter would no longer accept, or drop, what its rules say). The
    // queue starts only in run(), after the sync; this keeps it so for any other caller.
    if (!this.synced) {
      this.queue.addAfter(groupKey(name), this.o.coalesceMs);
      return;
    }
    const raw = this.informers.AddressGroup.get(name);
    const action = peerGroupAction(raw, this.references.peerSelector(name));
    if (action.do === 'nothing') return;
    if (action.do === 'create') {
      // Resolved at once rather than on the add event, so that agents see an empty peer group for as
      // short a time as possible.
      const created = await this.peerGroups.create(name, action.selector);
      // Not created: one exists that the cache has not seen yet; its add event brings the name back.
      if (created) await this.writeGroupStatus(created);
      return;
    }
    if (action.do === 'repair' || action.do === 'delete') {
      const done = action.do === 'repair' ? await this.peerGroups.repair(raw!, action.selector) : await this.peerGroups.delete(raw!);
      // Lost to a newer version than the cache's: decided again on what the cache has by then. (The
      // newer version may be only a status write of ours, whose event re-queues nothing.) Done: the
      // update or delete event brings the name back.
      if (!done) this.queue.addAfter(groupKey(name), this.o.coalesceMs);
    } else {
      if (action.clash && !this.clashes.has(name)) {
        this.clashes.add(name);
        this.log.warn({ addressGroup: name }, 'an AddressGroup not made by the controller holds the name of a rule\'s peer selector and selects something else; rules use its members');
      }
      await this.writeGroupStatus(raw!);
    }
  }

  private async writeGroupStatus(raw: KubernetesObject): Promise<void> {
    const name = raw.metadata!.name!;
    const parsed = parseObject('AddressGroup', raw);
    const current = (raw as { status?: Record<string, unknown> }).status;
    const now = new Date();
    if (!parsed.ok) {
      const status = invalidGroupStatus(raw.metadata?.generation, current, parsed.field, parsed.message, now);
      await this.status.write('AddressGroup', name, raw.metadata?.uid, status, { status: current, owned: CONTROLLER_OWNED.AddressGroup });
      return;
    }
    const group = parsed.value;
    const status = addressGroupControllerStatus(group, group.spec.peers ? this.typed('VMFilter') : [], now);
    const wrote = await this.status.write('AddressGroup', name, group.metadata.uid, status, { status: current, owned: CONTROLLER_OWNED.AddressGroup });
    if (group.spec.peers) {
      this.log.debug({ addressGroup: name, peerCount: status.peerCount, addresses: (status.peerAddresses as string[]).length, wrote }, 'peer group resolved');
    }
  }
}
