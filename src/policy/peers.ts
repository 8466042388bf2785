import type { LabelSelector, PeerSelector, VMFilter } from '../api/index.js';
import { sha256Hex } from './names.js';

/**
 * Peer selectors name VMs instead of addresses. Each distinct selector is one AddressGroup whose
 * members the controller keeps up to date (controller/peer-groups.ts); rules match it through the
 * group's kernel sets like any AddressGroup. The group's name is derived from the selector alone,
 * so every process (controller, agents, the CLI) finds the same group for the same selector.
 */

/** The selector with keys and lists in one order: equal selectors give equal text. */
export function canonicalSelector(selector: PeerSelector): string {
  if (selector.department !== undefined) return JSON.stringify({ department: selector.department });
  const s = selector.vmSelector!;
  const labels = Object.entries(s.matchLabels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const expressions = (s.matchExpressions ?? [])
    .map((e) => ({ key: e.key, operator: e.operator, values: [...(e.values ?? [])].sort() }))
    .sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
  return JSON.stringify({ vmSelector: { matchLabels: Object.fromEntries(labels), matchExpressions: expressions } });
}

/** `peers-<64 bits of SHA-256>`: an AddressGroup name, and short enough for its kernel set names. */
export function peerGroupName(selector: PeerSelector): string {
  return `peers-${sha256Hex(canonicalSelector(selector)).slice(0, 16)}`;
}

/** A human-readable form for descriptions and status. */
export function describeSelector(selector: PeerSelector): string {
  if (selector.department !== undefined) return `the VMs of department ${selector.department}`;
  const s = selector.vmSelector!;
  const parts = [
    ...Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`),
    ...(s.matchExpressions ?? []).map((e) => `${e.key} ${e.operator}${e.values?.length ? ` (${e.values.join(', ')})` : ''}`),
  ];
  return `the VMFilters with ${parts.length ? parts.join(', ') : 'any labels'}`;
}

/** metav1.LabelSelector semantics; an empty selector selects everything, as in Kubernetes. */
export function labelsMatch(selector: LabelSelector, labels: Readonly<Record<string, string>> | undefined): boolean {
  const l = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(l, e.key);
    const values = e.values ?? [];
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
    if (e.operator === 'In' && !(has && values.includes(l[e.key]!))) return false;
    if (e.operator === 'NotIn' && has && values.includes(l[e.key]!)) return false;
  }
  return true;
}

export function selects(selector: PeerSelector, vm: Pick<VMFilter, 'metadata' | 'spec'>): boolean {
  if (vm.metadata.deletionTimestamp) return false;
  if (selector.department !== undefined) return vm.spec.department === selector.department;
  return labelsMatch(selector.vmSelector!, vm.metadata.labels);
}

/** The addresses of the selected VMs (parameters.ip and ipv6), sorted and without duplicates, and how many VMs matched. */
export function resolvePeers(selector: PeerSelector, vms: Iterable<Pick<VMFilter, 'metadata' | 'spec'>>): { addresses: string[]; vms: number } {
  const addresses = new Set<string>();
  let count = 0;
  for (const vm of vms) {
    if (!selects(selector, vm)) continue;
    count++;
    for (const ip of vm.spec.parameters?.ip ?? []) addresses.add(ip);
    for (const ip of vm.spec.parameters?.ipv6 ?? []) addresses.add(ip);
  }
  return { addresses: [...addresses].sort(), vms: count };
}

/** Every peer selector of a set of rules (departments' and VMs'), by group name. */
export function peerSelectorsOf(ruleLists: Iterable<readonly { sourcePeers?: PeerSelector | undefined; destinationPeers?: PeerSelector | undefined }[]>): Map<string, PeerSelector> {
  const out = new Map<string, PeerSelector>();
  for (const rules of ruleLists) {
    for (const r of rules) {
      for (const s of [r.sourcePeers, r.destinationPeers]) if (s) out.set(peerGroupName(s), s);
    }
  }
  return out;
}
