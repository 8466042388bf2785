import type { KubernetesObject } from '@kubernetes/client-node';
import { API_VERSION, PEER_GROUP_LABEL, type PeerSelector } from '../api/index.js';
import { parseObject } from '../kube/index.js';
import { canonicalSelector, describeSelector } from '../policy/index.js';

/**
 * The AddressGroups the controller makes for rules' inline peer selectors (sourcePeers,
 * destinationPeers), as the endpoints controller makes Endpoints for a Service's selector: one per
 * distinct selector, named after it (policy/peers.ts), so every process finds the same group.
 */

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'nwfilter-operator';

/** The labels of a managed peer group; both must be there for the controller to change or delete a group. */
export const PEER_GROUP_LABELS: Readonly<Record<string, string>> = { [MANAGED_BY_LABEL]: MANAGED_BY, [PEER_GROUP_LABEL]: 'true' };

/** The object created for a selector (no addresses of its own: the members are in status.peerAddresses). */
export function peerGroupManifest(name: string, selector: PeerSelector): KubernetesObject & { spec: object } {
  return {
    apiVersion: API_VERSION,
    kind: 'AddressGroup',
    metadata: { name, labels: { ...PEER_GROUP_LABELS } },
    spec: { description: describeSelector(selector), peers: selector },
  };
}

/** Made by the controller (by its labels): a group without them is the user's and is never created over, changed or deleted. */
export function isManagedPeerGroup(raw: KubernetesObject): boolean {
  const labels = raw.metadata?.labels ?? {};
  return Object.entries(PEER_GROUP_LABELS).every(([k, v]) => labels[k] === v);
}

/** True when the group's spec selects `selector` and nothing else (descriptions compared too: they are ours). */
export function peerGroupSpecMatches(raw: KubernetesObject, selector: PeerSelector): boolean {
  const parsed = parseObject('AddressGroup', raw);
  if (!parsed.ok) return false;
  const spec = parsed.value.spec;
  return spec.addresses.length === 0 && spec.description === describeSelector(selector) && spec.peers !== undefined && canonicalSelector(spec.peers) === canonicalSelector(selector);
}

export type PeerGroupAction =
  /** Used by a rule and missing. */
  | { do: 'create'; selector: PeerSelector }
  /** Ours, used, but its spec was edited: put the selector back (its members are someone's rule). */
  | { do: 'repair'; selector: PeerSelector }
  /** Ours and no rule uses it any more. */
  | { do: 'delete' }
  /** Exists and stays: resolve its status. `clash`: a user's group holds the name of a rule's selector and selects something else. */
  | { do: 'status'; clash: boolean }
  | { do: 'nothing' };

/**
 * What to do about one AddressGroup name, given the cached object and the selector whose group it
 * is while some rule uses it. Pure; the controller calls it only once every cache has synced.
 */
export function peerGroupAction(raw: KubernetesObject | undefined, selector: PeerSelector | undefined): PeerGroupAction {
  if (!raw) return selector ? { do: 'create', selector } : { do: 'nothing' };
  // Going: once gone, its delete event brings the name back, and it is created again if still used.
  if (raw.metadata?.deletionTimestamp) return { do: 'nothing' };
  if (isManagedPeerGroup(raw)) {
    if (!selector) return { do: 'delete' };
    if (!peerGroupSpecMatches(raw, selector)) return { do: 'repair', selector };
    return { do: 'status', clash: false };
  }
  if (!selector) return { do: 'status', clash: false };
  const parsed = parseObject('AddressGroup', raw);
  const peers = parsed.ok ? parsed.value.spec.peers : undefined;
  return { do: 'status', clash: !peers || canonicalSelector(peers) !== canonicalSelector(selector) };
}
