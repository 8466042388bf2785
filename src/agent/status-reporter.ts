import type { Condition, VMFilter } from '../api/index.js';
import { CONDITION, REASON } from '../controller/status.js';
import { canonicalJson, findCondition, setCondition } from '../kube/index.js';
import { KubernetesError } from './errors.js';

/** Agent-owned reasons of the Applied condition; docs/status.md documents each one. */
export const AGENT_REASON = {
  applied: 'Applied',
  domainNotFound: 'DomainNotFound',
  noInterfaces: 'NoInterfaces',
  foreignFilter: 'ForeignFilter',
  nodeMismatch: 'NodeMismatch',
  conflict: 'Conflict',
  quarantined: 'Quarantined',
  compileFailed: 'CompileFailed',
  invalidFilter: 'InvalidFilter',
  realizing: REASON.realizing,
  libvirtError: 'LibvirtError',
  addressSetError: 'AddressSetError',
  removed: REASON.removed,
  invalidSpec: REASON.invalidSpec,
} as const;

export interface AppliedReport {
  status: 'True' | 'False';
  reason: string;
  message: string;
  /** What is in libvirt now: set when this report describes a realized tree; otherwise the previous values stay. */
  realized?: { hash: string; generation: number | undefined };
}

/** Writes the agent's status fields of a VMFilter (server-side apply under the node's field manager). */
export type StatusSink = (name: string, uid: string | undefined, fields: Record<string, unknown>) => Promise<unknown>;

/** The parts of a VMFilter (raw or parsed) the reporter reads. */
export interface StatusTarget {
  metadata?: { name?: string; uid?: string; generation?: number };
  status?: unknown;
}

type WithStatus = { metadata?: StatusTarget['metadata']; status?: VMFilter['status'] };

/**
 * Describes the agent's outcome on the VMFilter's status. It compares with the status the object
 * carries now (not with what this process wrote last), so an unchanged outcome is never written
 * again (not even after a restart), and a status another writer overwrote is put right.
 */
export class StatusReporter {
  constructor(
    private readonly nodeName: string,
    private readonly sink: StatusSink,
  ) {}

  private fields(obj: WithStatus, report: AppliedReport, now: Date): Record<string, unknown> {
    const prev = findCondition(obj.status?.conditions, CONDITION.applied);
    const conditions: Condition[] = setCondition(prev ? [prev] : [], { type: CONDITION.applied, status: report.status, reason: report.reason, message: report.message }, obj.metadata?.generation, now);
    const fields: Record<string, unknown> = { nodeName: this.nodeName, conditions };
    const hash = report.realized?.hash ?? obj.status?.appliedHash;
    const generation = report.realized ? report.realized.generation : obj.status?.appliedGeneration;
    if (hash) fields.appliedHash = hash;
    if (generation !== undefined) fields.appliedGeneration = generation;
    return fields;
  }

  private current(obj: WithStatus): Record<string, unknown> {
    const s = obj.status;
    const applied = findCondition(s?.conditions, CONDITION.applied);
    return {
      nodeName: s?.nodeName,
      conditions: applied ? [applied] : [],
      ...(s?.appliedHash ? { appliedHash: s.appliedHash } : {}),
      ...(s?.appliedGeneration !== undefined ? { appliedGeneration: s.appliedGeneration } : {}),
    };
  }

  /** Returns true when a write was sent. */
  async report(obj: StatusTarget, report: AppliedReport, now = new Date()): Promise<boolean> {
    const o = obj as WithStatus;
    const next = this.fields(o, report, now);
    if (canonicalJson(next) === canonicalJson(this.current(o))) return false;
    try {
      await this.sink(o.metadata!.name!, o.metadata?.uid, next);
    } catch (err) {
      throw new KubernetesError(`write status of VMFilter ${o.metadata?.name}`, err);
    }
    return true;
  }
}
