import type { AddressGroup, VMFilter } from '../api/index.js';
import type { Family } from './instantiate.js';
import { cidrText, familyOfAddress, isIpv6, parseCidr } from './ip.js';
import type { Cidr, NwFilter, SetMembers, SetPort } from './model.js';
import { peerSelectorsOf, resolvePeers } from './peers.js';
import { setPortText } from './rules.js';

/** An AddressGroup as the compiler needs it: its name and every address it holds, both families. */
export interface GroupEntry {
  name: string;
  members: Cidr[];
  /**
   * False for a group with spec.peers that the controller has not resolved for its current
   * generation yet: its members would be a guess (none at all right after the controller made it),
   * and a `drop` from its peers would match nothing. Rules naming it do not compile meanwhile.
   */
  resolved: boolean;
}

/**
 * One kernel IP set a VM's filter tree matches: an AddressGroup's addresses of one family
 * (`hash:net`), or those addresses paired with a rule's ports (`hash:net,port`).
 */
export interface AddressSet {
  name: string;
  family: Family;
  type: 'hash:net' | 'hash:net,port';
  group: string;
  members: Cidr[];
  ports?: SetPort[];
}

/** The kernel's default maxelem; a set that would need more entries is refused at compile time. */
export const MAX_SET_ENTRIES = 65536;

/** spec.addresses, and the peers the controller resolved for spec.peers (status.peerAddresses). */
export function groupEntry(group: Pick<AddressGroup, 'metadata' | 'spec' | 'status'>): GroupEntry {
  const texts = [...group.spec.addresses, ...(group.spec.peers ? (group.status?.peerAddresses ?? []) : [])];
  const seen = new Map<string, Cidr>();
  for (const text of texts) {
    try {
      const c = parseCidr(text);
      seen.set(`${c.address}/${c.prefix}`, c);
    } catch {
      // status.peerAddresses is written by the controller from validated VMFilters; anything else is skipped.
    }
  }
  const resolved = !group.spec.peers || (group.status?.observedGeneration !== undefined && group.status.observedGeneration === group.metadata.generation);
  return { name: group.metadata.name, members: [...seen.values()], resolved };
}

/**
 * The groups of a whole input: its AddressGroups, and one group per peer selector that the input's
 * rules use, resolved from the input's VMFilters (what the controller does in a cluster; the CLI and
 * tests see every VM, so they resolve the same way here).
 */
export function groupsOfInput(input: {
  addressGroups?: readonly AddressGroup[] | undefined;
  departments: readonly { spec: { rules: readonly object[] } }[];
  vms: readonly VMFilter[];
}): Map<string, GroupEntry> {
  const groups = new Map<string, GroupEntry>((input.addressGroups ?? []).map((g) => [g.metadata.name, groupEntry(g)]));
  const selectors = peerSelectorsOf([...input.departments.map((d) => d.spec.rules), ...input.vms.map((v) => v.spec.rules)]);
  for (const [name, selector] of selectors) {
    const { addresses } = resolvePeers(selector, input.vms);
    groups.set(name, { name, members: addresses.map(parseCidr), resolved: true });
  }
  return groups;
}

/** The sets the rules of these filters match, with their members from `groups` (a missing group is empty). */
export function setsOfFilters(filters: readonly NwFilter[], groups: ReadonlyMap<string, GroupEntry>): AddressSet[] {
  const out = new Map<string, AddressSet>();
  for (const f of filters) {
    for (const r of f.rules) {
      if (!r.set || out.has(r.set.name)) continue;
      const family: Family = r.protocol === 'icmpv6' || r.protocol.endsWith('-ipv6') ? 6 : 4;
      const members = (groups.get(r.set.group)?.members ?? []).filter((c) => familyOfAddress(c.address) === family);
      out.set(r.set.name, {
        name: r.set.name,
        family,
        type: r.set.ports ? 'hash:net,port' : 'hash:net',
        group: r.set.group,
        members,
        ...(r.set.ports ? { ports: r.set.ports } : {}),
      });
    }
  }
  return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

/**
 * The `hash:net` types take no prefix length 0 ("/0 is not supported"): the whole family is its
 * two halves.
 */
function netsOf(c: Cidr): string[] {
  if (c.prefix > 0) return [cidrText(c)];
  return isIpv6(c.address) ? ['::/1', '8000::/1'] : ['0.0.0.0/1', '128.0.0.0/1'];
}

/** The set's entries as `ipset add` takes them: `10.0.0.0/8`, or `10.0.0.0/8,tcp:22` for a port set. */
export function setEntries(set: AddressSet): string[] {
  const nets = set.members.flatMap(netsOf);
  if (!set.ports) return nets;
  return nets.flatMap((n) => set.ports!.map((p) => `${n},${setPortText(p)}`));
}

/** Entries the kernel holds for the set: ipset expands a port range into one entry per port. */
export function setSize(set: AddressSet): number {
  const nets = set.members.flatMap(netsOf).length;
  if (!set.ports) return nets;
  return nets * set.ports.reduce((n, p) => n + ('type' in p ? 1 : p.end - p.start + 1), 0);
}

export function setMembersOf(sets: readonly AddressSet[]): SetMembers {
  return new Map(sets.map((s) => [s.name, s.members]));
}
