import type { KubernetesObject } from '@kubernetes/client-node';

/** What of an object a process reads; everything else changing is no reason to reconcile it. */
export interface Relevance {
  /** Status fields (and condition types) the process does not read, e.g. the controller's own. */
  ignoreStatus: readonly string[];
  ignoreConditions: readonly string[];
  /** Whether metadata.finalizers matter (the controller manages one; the agent never reads them). */
  finalizers: boolean;
}

type WithStatus = KubernetesObject & { status?: Record<string, unknown> };

/** The parts of an object `relevance` says a process reads, as one string to compare. */
export function relevantFingerprint(obj: KubernetesObject, relevance: Relevance): string {
  const m = obj.metadata ?? {};
  const status = (obj as WithStatus).status ?? {};
  const kept: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(status)) {
    if (relevance.ignoreStatus.includes(k) && k !== 'conditions') continue;
    if (k !== 'conditions' || !Array.isArray(v)) {
      kept[k] = v;
      continue;
    }
    const read = v.filter((c: { type?: string }) => !relevance.ignoreConditions.includes(c.type ?? ''));
    if (read.length > 0) kept[k] = read;
  }
  return JSON.stringify([
    m.uid,
    m.generation,
    m.deletionTimestamp,
    m.annotations,
    relevance.finalizers ? m.finalizers : null,
    Object.keys(kept)
      .sort()
      .map((k) => [k, kept[k]]),
  ]);
}

/**
 * Remembers, per object name, the fingerprint of what a process reads, and says whether an event
 * changed it. The controller's status writes arrive at every agent (and at the controller) as
 * updates; reconciling 10,000 VMs for each of them was most of the work of a rollout.
 */
export class ChangeFilter {
  private readonly prints = new Map<string, string>();

  constructor(private readonly relevance: Relevance) {}

  /** True when `obj` (undefined: gone) differs from what was last seen under `name`. */
  changed(name: string, obj: KubernetesObject | undefined): boolean {
    if (!obj) {
      this.prints.delete(name);
      return true;
    }
    const print = relevantFingerprint(obj, this.relevance);
    if (this.prints.get(name) === print) return false;
    this.prints.set(name, print);
    return true;
  }

  forget(name: string): void {
    this.prints.delete(name);
  }

  get size(): number {
    return this.prints.size;
  }
}
