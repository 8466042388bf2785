import type { AddressGroup, Condition, DepartmentPolicy, Realization, ServicePolicy, VMFilter } from '../api/index.js';
import { findCondition, setCondition } from '../kube/conditions.js';
import { familyOfAddress, groupEntry, resolvePeers, type DepartmentResult, type Diagnostic, type VmResult } from '../policy/index.js';

/** Condition types and reasons: docs/status.md documents each of them. */
export const CONDITION = { accepted: 'Accepted', ready: 'Ready', applied: 'Applied' } as const;

export const REASON = {
  valid: 'Valid',
  invalidSpec: 'InvalidSpec',
  pending: 'Pending',
  applying: 'Applying',
  applied: 'Applied',
  allApplied: 'AllApplied',
  someFailed: 'SomeFailed',
  noVMs: 'NoVMs',
  removed: 'Removed',
  realizing: 'Realizing',
  resolved: 'Resolved',
} as const;

function firstError(diagnostics: readonly Diagnostic[]): Diagnostic | undefined {
  return diagnostics.find((d) => d.severity === 'error');
}

function warningsText(diagnostics: readonly Diagnostic[]): string {
  const w = diagnostics.filter((d) => d.severity === 'warning');
  return w.length ? ` Warnings: ${w.map((d) => `${d.field ? d.field + ': ' : ''}${d.message}`).join('; ')}` : '';
}

/** What the VM's agent reported, as the controller reads it from the object. */
export function agentOutcome(vm: Pick<VMFilter, 'status'>): { applied?: Condition; appliedHash?: string } {
  const status = vm.status;
  return {
    ...(findCondition(status?.conditions, CONDITION.applied) ? { applied: findCondition(status?.conditions, CONDITION.applied)! } : {}),
    ...(status?.appliedHash ? { appliedHash: status.appliedHash } : {}),
  };
}

export type VmState = 'ready' | 'pending' | 'failed' | 'invalid';

/** Ready=True only when the agent applied exactly what the controller compiled for this generation. */
export function vmState(compiled: VmResult, vm: Pick<VMFilter, 'status'>): { state: VmState; reason: string; message: string } {
  if (!compiled.ok) {
    const e = firstError(compiled.diagnostics)!;
    return { state: 'invalid', reason: e.reason, message: `${e.message}. The last applied filter stays in place.` };
  }
  const { applied, appliedHash } = agentOutcome(vm);
  if (!applied) return { state: 'pending', reason: REASON.pending, message: 'Waiting for a node agent to apply the filter.' };
  // libvirt is rebuilding running interfaces for this VM's tree: under way, not failed.
  if (applied.reason === REASON.realizing) return { state: 'pending', reason: applied.reason, message: applied.message };
  if (applied.status === 'False') return { state: 'failed', reason: applied.reason, message: applied.message };
  if (appliedHash !== compiled.hash) return { state: 'pending', reason: REASON.applying, message: 'The node agent is applying the current filter.' };
  return { state: 'ready', reason: REASON.applied, message: `Applied on ${vm.status?.nodeName ?? 'its node'}.` };
}

/** Every status field the controller writes, per kind (the agent owns the rest of a VMFilter's status). */
export const CONTROLLER_OWNED = {
  VMFilter: ['observedGeneration', 'conditions', 'filterName', 'ruleCount', 'desiredHash', 'effectiveServices'],
  DepartmentPolicy: ['observedGeneration', 'conditions', 'vms', 'filterName', 'ruleCount'],
  ServicePolicy: ['observedGeneration', 'conditions', 'vms'],
  AddressGroup: ['observedGeneration', 'conditions', 'peerAddresses', 'peerCount', 'ipv4', 'ipv6'],
} as const;

/**
 * What of a VMFilter the controller's and the agents' reconciles read: everything but the
 * controller's own status (its writes re-queue nothing; a resync puts right what someone else
 * changed there).
 */
export const VMFILTER_INPUTS = { ignoreStatus: CONTROLLER_OWNED.VMFilter, ignoreConditions: [CONDITION.accepted, CONDITION.ready] } as const;

/** The status fields the controller owns on a VMFilter. */
export function vmControllerStatus(vm: VMFilter, compiled: VmResult, now: Date): Record<string, unknown> {
  const generation = vm.metadata.generation;
  const prev = vm.status?.conditions;
  let conditions: Condition[] = (prev ?? []).filter((c) => c.type === CONDITION.accepted || c.type === CONDITION.ready);
  const state = vmState(compiled, vm);
  if (compiled.ok) {
    conditions = setCondition(conditions, { type: CONDITION.accepted, status: 'True', reason: REASON.valid, message: `Compiled ${compiled.ruleCount} rules.${warningsText(compiled.diagnostics)}` }, generation, now);
  } else {
    const e = firstError(compiled.diagnostics)!;
    conditions = setCondition(conditions, { type: CONDITION.accepted, status: 'False', reason: e.reason, message: `${e.field ? e.field + ': ' : ''}${e.message}` }, generation, now);
  }
  conditions = setCondition(conditions, { type: CONDITION.ready, status: state.state === 'ready' ? 'True' : 'False', reason: state.reason, message: state.message }, generation, now);
  const status: Record<string, unknown> = { observedGeneration: generation ?? 0, conditions };
  if (compiled.ok) {
    status.filterName = compiled.filter.filter.name;
    status.ruleCount = compiled.ruleCount;
    status.desiredHash = compiled.hash;
    status.effectiveServices = compiled.effectiveServices;
  }
  return status;
}

export function realization(states: readonly VmState[]): Realization {
  return {
    desired: states.length,
    applied: states.filter((s) => s === 'ready').length,
    failed: states.filter((s) => s === 'failed' || s === 'invalid').length,
  };
}

function readyFromRealization(r: Realization): { status: 'True' | 'False'; reason: string; message: string } {
  if (r.desired === 0) return { status: 'True', reason: REASON.noVMs, message: 'No VM uses this policy.' };
  if (r.failed > 0) return { status: 'False', reason: REASON.someFailed, message: `${r.failed} of ${r.desired} VMs failed; see their Ready condition.` };
  if (r.applied < r.desired) return { status: 'False', reason: REASON.pending, message: `${r.applied} of ${r.desired} VMs applied.` };
  return { status: 'True', reason: REASON.allApplied, message: `Applied on all ${r.desired} VMs.` };
}

export function departmentControllerStatus(dept: DepartmentPolicy, result: DepartmentResult, vms: Realization, now: Date): Record<string, unknown> {
  const generation = dept.metadata.generation;
  let conditions = (dept.status?.conditions ?? []).filter((c) => c.type === CONDITION.accepted || c.type === CONDITION.ready);
  if (result.ok) {
    conditions = setCondition(conditions, { type: CONDITION.accepted, status: 'True', reason: REASON.valid, message: `Compiled ${result.filter.filter.rules.length} rules.${warningsText(result.diagnostics)}` }, generation, now);
    conditions = setCondition(conditions, { type: CONDITION.ready, ...readyFromRealization(vms) }, generation, now);
  } else {
    const e = firstError(result.diagnostics)!;
    const message = `${e.field ? e.field + ': ' : ''}${e.message}`;
    conditions = setCondition(conditions, { type: CONDITION.accepted, status: 'False', reason: e.reason, message }, generation, now);
    conditions = setCondition(conditions, { type: CONDITION.ready, status: 'False', reason: e.reason, message: `${message}. Member VMs keep their last applied filter.` }, generation, now);
  }
  return {
    observedGeneration: generation ?? 0,
    conditions,
    vms,
    ...(result.ok ? { filterName: result.filter.filter.name, ruleCount: result.filter.filter.rules.length } : {}),
  };
}

export function serviceControllerStatus(svc: ServicePolicy, vms: Realization, now: Date): Record<string, unknown> {
  const generation = svc.metadata.generation;
  let conditions = (svc.status?.conditions ?? []).filter((c) => c.type === CONDITION.accepted || c.type === CONDITION.ready);
  conditions = setCondition(conditions, { type: CONDITION.accepted, status: 'True', reason: REASON.valid, message: `${svc.spec.ports.length} port entries.` }, generation, now);
  conditions = setCondition(conditions, { type: CONDITION.ready, ...readyFromRealization(vms) }, generation, now);
  return { observedGeneration: generation ?? 0, conditions, vms };
}

export function invalidSpecStatus(kind: string, generation: number | undefined, prev: readonly Condition[] | undefined, field: string, message: string, now: Date): Record<string, unknown> {
  let conditions = (prev ?? []).filter((c) => c.type === CONDITION.accepted || c.type === CONDITION.ready);
  const text = `${field}: ${message}`;
  conditions = setCondition(conditions, { type: CONDITION.accepted, status: 'False', reason: REASON.invalidSpec, message: text }, generation, now);
  conditions = setCondition(conditions, { type: CONDITION.ready, status: 'False', reason: REASON.invalidSpec, message: `${kind} is invalid; the last applied filters stay in place.` }, generation, now);
  return { observedGeneration: generation ?? 0, conditions };
}

function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * An AddressGroup's status: for spec.peers, the addresses (parameters.ip and ipv6) of the VMs it
 * selects now, which the agents load into their kernel sets; for every group, its entries per family
 * (spec.addresses and peers, counted as the sets hold them: parsed, duplicates once).
 */
export function addressGroupControllerStatus(group: AddressGroup, vms: Iterable<Pick<VMFilter, 'metadata' | 'spec'>>, now: Date): Record<string, unknown> {
  const generation = group.metadata.generation;
  const resolved = group.spec.peers ? resolvePeers(group.spec.peers, vms) : undefined;
  const members = groupEntry({ metadata: group.metadata, spec: group.spec, status: { peerAddresses: resolved?.addresses ?? [] } }).members;
  const ipv4 = members.filter((c) => familyOfAddress(c.address) === 4).length;
  const ready = resolved
    ? { reason: REASON.resolved, message: `${count(resolved.vms, 'VM', 'VMs')}, ${count(resolved.addresses.length, 'address', 'addresses')}.` }
    : { reason: REASON.valid, message: `${count(members.length, 'address', 'addresses')}.` };
  const prev = (group.status?.conditions ?? []).filter((c) => c.type === CONDITION.ready);
  const conditions = setCondition(prev, { type: CONDITION.ready, status: 'True', ...ready }, generation, now);
  return {
    observedGeneration: generation ?? 0,
    conditions,
    ...(resolved ? { peerAddresses: resolved.addresses, peerCount: resolved.vms } : {}),
    ipv4,
    ipv6: members.length - ipv4,
  };
}

/**
 * An AddressGroup the schema refuses: every process ignores it (rules naming it do not compile), so
 * the resolution it carries is left as it is rather than recomputed from a spec nobody reads.
 */
export function invalidGroupStatus(generation: number | undefined, current: Record<string, unknown> | undefined, field: string, message: string, now: Date): Record<string, unknown> {
  const prev = ((current?.conditions ?? []) as Condition[]).filter((c) => c.type === CONDITION.ready);
  const text = `${field}: ${message}. Rules that name this group do not compile; their VMs keep their last applied filter.`;
  const conditions = setCondition(prev, { type: CONDITION.ready, status: 'False', reason: REASON.invalidSpec, message: text }, generation, now);
  const kept = Object.fromEntries(CONTROLLER_OWNED.AddressGroup.filter((k) => k !== 'observedGeneration' && k !== 'conditions' && current?.[k] !== undefined).map((k) => [k, current![k]]));
  return { ...kept, observedGeneration: generation ?? 0, conditions };
}
