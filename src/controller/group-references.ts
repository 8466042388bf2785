import type { CustomRule, PeerSelector } from '../api/index.js';
import { peerSelectorsOf, ruleGroup } from '../policy/index.js';

/** What one object's rules reference: every AddressGroup by name, and the peer selectors by their group's name. */
interface OwnerRefs {
  groups: ReadonlySet<string>;
  peers: ReadonlyMap<string, PeerSelector>;
}

const NONE: OwnerRefs = { groups: new Set(), peers: new Map() };

function refsOf(rules: readonly CustomRule[]): OwnerRefs {
  const groups = new Set<string>();
  for (const r of rules) {
    const g = ruleGroup(r);
    if (g) groups.add(g.name);
  }
  return { groups, peers: peerSelectorsOf([rules]) };
}

function addTo<V>(map: Map<string, Map<string, V>>, group: string, owner: string, value: V): void {
  let m = map.get(group);
  if (!m) map.set(group, (m = new Map()));
  m.set(owner, value);
}

function removeFrom(map: Map<string, Map<string, unknown>>, group: string, owner: string): void {
  const m = map.get(group);
  if (!m) return;
  m.delete(owner);
  if (m.size === 0) map.delete(group);
}

/**
 * Which DepartmentPolicies and VMFilters reference which AddressGroups, kept one object at a time
 * like the aggregates: a VMFilter change costs O(its rules), and the questions the controller asks
 * on every AddressGroup event (which peer groups must exist, whose compile a group changes) are
 * lookups instead of walks over 10,000 VMFilters. Owners are work-queue keys (`VMFilter/<name>`).
 */
export class GroupReferences {
  private readonly byOwner = new Map<string, OwnerRefs>();
  /** group -> owners that name it, by name or through a peer selector. */
  private readonly owners = new Map<string, Map<string, true>>();
  /** group -> owners whose peer selector it is -> that selector. */
  private readonly peerOwners = new Map<string, Map<string, PeerSelector>>();

  /**
   * Records the rules of a valid object (undefined: gone or invalid, it references nothing).
   * Returns the peer groups that became used or unused by it (no other rule uses them): the ones
   * that may have to be created or deleted.
   */
  set(owner: string, rules: readonly CustomRule[] | undefined): string[] {
    const prev = this.byOwner.get(owner) ?? NONE;
    const next = rules && rules.length > 0 ? refsOf(rules) : NONE;
    for (const g of prev.groups) if (!next.groups.has(g)) removeFrom(this.owners, g, owner);
    for (const g of next.groups) addTo(this.owners, g, owner, true);
    const changed: string[] = [];
    for (const g of prev.peers.keys()) {
      if (next.peers.has(g)) continue;
      removeFrom(this.peerOwners, g, owner);
      if (!this.peerOwners.has(g)) changed.push(g);
    }
    for (const [g, selector] of next.peers) {
      if (!this.peerOwners.has(g)) changed.push(g);
      addTo(this.peerOwners, g, owner, selector);
    }
    if (next === NONE) this.byOwner.delete(owner);
    else this.byOwner.set(owner, next);
    return changed;
  }

  /** The selector whose group this is, while some rule uses it (equal selectors share one name). */
  peerSelector(group: string): PeerSelector | undefined {
    return this.peerOwners.get(group)?.values().next().value;
  }

  /** Every peer group some rule uses. */
  peerGroups(): string[] {
    return [...this.peerOwners.keys()];
  }

  /** The owners whose rules name the group (directly; a department's members are the caller's to find). */
  ownersOf(group: string): string[] {
    return [...(this.owners.get(group)?.keys() ?? [])];
  }
}
