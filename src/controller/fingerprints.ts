import type { KubernetesObject } from '@kubernetes/client-node';
import { canonicalJson, parseObject } from '../kube/index.js';
import { groupEntry } from '../policy/index.js';

/**
 * Remembers one fingerprint per name and says whether an event changed it, so that an informer
 * event re-queues work only when something the work reads changed (the controller's own status
 * writes come back as updates of every object it writes).
 */
export class Fingerprints {
  private readonly prints = new Map<string, string>();

  /** True when `print` (undefined: the object is gone) differs from the last one seen under `name`. */
  changed(name: string, print: string | undefined): boolean {
    if (print === undefined) return this.prints.delete(name);
    if (this.prints.get(name) === print) return false;
    this.prints.set(name, print);
    return true;
  }

  get size(): number {
    return this.prints.size;
  }
}

/**
 * What peer resolution reads of a VMFilter: whether it parses, is being deleted, its labels, its
 * department and its addresses. Labels do not bump metadata.generation, so the VMFilter change
 * filter (which the VM's own reconcile needs) does not see them: this print does.
 */
export function peerInputsPrint(raw: KubernetesObject | undefined): string | undefined {
  if (!raw) return undefined;
  const parsed = parseObject('VMFilter', raw);
  if (!parsed.ok) return 'invalid';
  const { metadata, spec } = parsed.value;
  return canonicalJson([metadata.uid, metadata.deletionTimestamp !== undefined, metadata.labels ?? {}, spec.department ?? null, spec.parameters?.ip ?? [], spec.parameters?.ipv6 ?? []]);
}

/**
 * What decides an AddressGroup's reconcile (create, repair, delete, status): the object itself, its
 * spec and its labels; not its status, which is the controller's own output (a resync puts right
 * what someone else changed there).
 */
export function groupObjectPrint(raw: KubernetesObject | undefined): string | undefined {
  if (!raw) return undefined;
  const m = raw.metadata ?? {};
  return canonicalJson([m.uid, m.generation, m.labels ?? {}, m.deletionTimestamp ?? null]);
}

/**
 * What the compiler reads of an AddressGroup: whether it exists and parses (a missing or invalid
 * group fails the rules naming it), and its members (a set over the size limit fails too).
 */
export function groupMembersPrint(raw: KubernetesObject | undefined): string | undefined {
  if (!raw) return undefined;
  const parsed = parseObject('AddressGroup', raw);
  if (!parsed.ok) return 'invalid';
  // Whether it is resolved counts too: a group with peers is usable only once its generation is resolved.
  const entry = groupEntry(parsed.value);
  return canonicalJson({ resolved: entry.resolved, members: entry.members.map((c) => `${c.address}/${c.prefix}`).sort() });
}
