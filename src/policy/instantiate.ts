import type { Cidr, NwFilter, NwRule, SetPort } from './model.js';

/**
 * libvirt's instantiation of a filter tree into iptables / ip6tables rules, as a model.
 *
 * libvirt (src/nwfilter/nwfilter_ebiptables_driver.c, iptablesCreateRuleInstance and
 * iptablesCreateRuleInstanceStateCtrl) turns every rule of the flattened tree into up to three
 * iptables rules per interface, in three chains:
 *   FI-<port>  packets from the VM that the bridge forwards        (accept target RETURN)
 *   FO-<port>  packets to the VM that the bridge forwards          (accept target ACCEPT)
 *   HI-<port>  packets from the VM to the host itself (INPUT)      (accept target RETURN)
 * For each of them it decides whether the rule appears at all, whether source and destination
 * (addresses and ports) are swapped, which conntrack states it matches and in which conntrack
 * direction. This module reproduces exactly those decisions for the attributes we emit, so that
 * `explain` can evaluate what the kernel evaluates; test/integration/libvirt/instantiation.test.ts
 * compares it with the chains a real libvirtd installs, and the packet suite with real packets.
 */

export type Chain = 'FI' | 'FO' | 'HI';
export type Family = 4 | 6;
export type Target = 'ACCEPT' | 'RETURN' | 'DROP' | 'REJECT';
export type InstanceProtocol = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6' | 'all';
export type CtState = 'NEW' | 'ESTABLISHED' | 'RELATED' | 'INVALID' | 'UNTRACKED';
export type CtDir = 'ORIGINAL' | 'REPLY';

export interface PortRange {
  start: number;
  end: number;
}

export interface RuleInstance {
  family: Family;
  chain: Chain;
  protocol: InstanceProtocol;
  source?: Cidr;
  destination?: Cidr;
  sport?: PortRange;
  dport?: PortRange;
  icmpType?: number;
  icmpCode?: number;
  /**
   * `-m set --match-set <name> <dir>`: libvirt swaps the flag in the swapped copy, as it swaps
   * addresses (printDataTypeDirection in nwfilter_ebiptables_driver.c).
   */
  set?: { name: string; dir: string; ports?: SetPort[] };
  /** conntrack states matched (`-m conntrack --ctstate`), none when absent. */
  ctstate?: CtState[];
  /** conntrack direction matched (`--ctdir`), none when absent. */
  ctdir?: CtDir;
  target: Target;
  /** True for libvirt's copy with source and destination exchanged (the reply side of the rule). */
  swapped: boolean;
  /** The filter rule this instance comes from, and where it lives. */
  rule: NwRule;
  filter: string;
}

/** A rule of the flattened tree with the filter it came from. */
export interface LocatedRule {
  rule: NwRule;
  filter: string;
  order: number;
}

/**
 * libvirt's view of a filter tree: the rules of the root and of every filter reached through
 * <filterref> in one list sorted by priority (depth-first order breaks ties; the compiler gives
 * rules of different actions different priorities, so a tie never decides). A filter referenced
 * twice is instantiated once. Filters not in `filters` (libvirt's own) are listed as unevaluated.
 */
export function flatten(root: string, filters: ReadonlyMap<string, NwFilter>): { rules: LocatedRule[]; unevaluated: string[] } {
  const rules: LocatedRule[] = [];
  const unevaluated: string[] = [];
  const seen = new Set<string>();
  const walk = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    const filter = filters.get(name);
    if (!filter) {
      unevaluated.push(name);
      return;
    }
    for (const rule of filter.rules) rules.push({ rule, filter: name, order: rules.length });
    for (const ref of filter.refs) walk(ref);
  };
  walk(root);
  rules.sort((a, b) => a.rule.priority - b.rule.priority || a.order - b.order);
  return { rules, unevaluated };
}

export function familyOf(rule: NwRule): Family {
  return rule.protocol === 'icmpv6' || rule.protocol.endsWith('-ipv6') ? 6 : 4;
}

/** `tcp-ipv6` is `-p tcp` in ip6tables, `all-ipv6` is `-p all`. */
function instanceProtocol(rule: NwRule): InstanceProtocol {
  return rule.protocol.endsWith('-ipv6') ? (rule.protocol.slice(0, -'-ipv6'.length) as InstanceProtocol) : (rule.protocol as InstanceProtocol);
}

interface Placement {
  chain: Chain;
  /** libvirt's `directionIn` argument: true swaps source and destination. */
  swapped: boolean;
  /** conntrack states to match, before libvirt's per-action adjustment. */
  match: CtState[] | undefined;
  /** libvirt's `defMatch`: the state match is the implicit one (dropped for drop/reject, adds --ctdir). */
  implicitMatch: boolean;
  acceptTarget: 'ACCEPT' | 'RETURN';
  /** libvirt's `maySkipICMP`: an ICMP rule with a type is left out of this chain. */
  maySkipIcmpType: boolean;
}

const NEW_ESTABLISHED: CtState[] = ['NEW', 'ESTABLISHED'];
const ESTABLISHED: CtState[] = ['ESTABLISHED'];

/** Where and how libvirt places one rule: iptablesCreateRuleInstance / ...StateCtrl. */
function placements(rule: NwRule): Placement[] {
  const inout = rule.direction === 'inout';
  const directionIn = rule.direction === 'in' || inout;
  const explicitState = rule.state !== undefined && rule.state.length > 0 && !rule.noStateMatch;
  if (explicitState) {
    // A rule with `state` is instantiated in its own direction only (for inout: everywhere), with
    // exactly those states and no --ctdir, whatever its action.
    const state = rule.state as CtState[];
    const out: Placement[] = [];
    if (!(directionIn && !inout)) {
      out.push({ chain: 'FI', swapped: directionIn, match: state, implicitMatch: false, acceptTarget: 'RETURN', maySkipIcmpType: directionIn || inout });
    }
    if (directionIn) {
      out.push({ chain: 'FO', swapped: !directionIn, match: state, implicitMatch: false, acceptTarget: 'ACCEPT', maySkipIcmpType: !directionIn || inout });
    }
    if (!(directionIn && !inout)) {
      out.push({ chain: 'HI', swapped: directionIn, match: state, implicitMatch: false, acceptTarget: 'RETURN', maySkipIcmpType: directionIn });
    }
    return out;
  }
  // Without `state`: all three chains, the opposite one with swapped fields. An accept matches
  // NEW,ESTABLISHED in its own direction and ESTABLISHED replies in the other; inout and
  // statematch='false' rules match no state at all.
  const needState = !inout && !rule.noStateMatch;
  return [
    { chain: 'FI', swapped: directionIn, match: needState ? (directionIn ? ESTABLISHED : NEW_ESTABLISHED) : undefined, implicitMatch: true, acceptTarget: 'RETURN', maySkipIcmpType: directionIn || inout },
    { chain: 'FO', swapped: !directionIn, match: needState ? (directionIn ? NEW_ESTABLISHED : ESTABLISHED) : undefined, implicitMatch: true, acceptTarget: 'ACCEPT', maySkipIcmpType: !directionIn || inout },
    { chain: 'HI', swapped: directionIn, match: needState ? (directionIn ? ESTABLISHED : NEW_ESTABLISHED) : undefined, implicitMatch: true, acceptTarget: 'RETURN', maySkipIcmpType: directionIn },
  ];
}

function instanceOf(rule: NwRule, filter: string, p: Placement): RuleInstance | undefined {
  const hasIcmpType = rule.icmpType !== undefined && (rule.protocol === 'icmp' || rule.protocol === 'icmpv6');
  if (hasIcmpType && p.maySkipIcmpType) return undefined;
  const accept = rule.action === 'accept';
  const target: Target = accept ? p.acceptTarget : rule.action === 'reject' ? 'REJECT' : 'DROP';
  // libvirt drops the implicit state match of drop and reject rules (not an explicit one).
  const match = accept || !p.implicitMatch ? p.match : undefined;
  const ports = rule.dstPortStart !== undefined ? { start: rule.dstPortStart, end: rule.dstPortEnd ?? rule.dstPortStart } : undefined;
  const inst: RuleInstance = {
    family: familyOf(rule),
    chain: p.chain,
    protocol: instanceProtocol(rule),
    target,
    swapped: p.swapped,
    rule,
    filter,
  };
  const src = p.swapped ? rule.dst : rule.src;
  const dst = p.swapped ? rule.src : rule.dst;
  if (src) inst.source = src;
  if (dst) inst.destination = dst;
  if (ports) {
    if (p.swapped) inst.sport = ports;
    else inst.dport = ports;
  }
  if (hasIcmpType) inst.icmpType = rule.icmpType!;
  if (hasIcmpType && rule.icmpCode !== undefined) inst.icmpCode = rule.icmpCode;
  if (rule.set) {
    const dir = p.swapped ? rule.set.flags.split(',').map((f) => (f === 'src' ? 'dst' : 'src')).join(',') : rule.set.flags;
    inst.set = { name: rule.set.name, dir, ...(rule.set.ports ? { ports: rule.set.ports } : {}) };
  }
  if (match) inst.ctstate = [...match];
  // --ctdir comes with the implicit match of a directional rule, never with ICMP types.
  // (libvirt probes the netfilter "corrected" --ctdir meaning; every kernel since 2.6.39 has it.)
  if (p.implicitMatch && match && !hasIcmpType && rule.direction !== 'inout') inst.ctdir = p.swapped ? 'REPLY' : 'ORIGINAL';
  return inst;
}

/** Every instance of the flattened rules, in chain order (libvirt appends them in priority order). */
export function instantiate(rules: readonly LocatedRule[]): RuleInstance[] {
  const out: RuleInstance[] = [];
  for (const { rule, filter } of rules) {
    for (const p of placements(rule)) {
      const inst = instanceOf(rule, filter, p);
      if (inst) out.push(inst);
    }
  }
  return out;
}

/** The instances of one chain of one family, in order. */
export function chainOf(instances: readonly RuleInstance[], family: Family, chain: Chain): RuleInstance[] {
  return instances.filter((i) => i.family === family && i.chain === chain);
}

/** Instances of a VM's whole tree, starting at its root filter. */
export function instantiateTree(root: string, filters: ReadonlyMap<string, NwFilter>): { instances: RuleInstance[]; unevaluated: string[] } {
  const { rules, unevaluated } = flatten(root, filters);
  return { instances: instantiate(rules), unevaluated };
}

const cidrText = (c: Cidr, family: Family): string => `${c.address}/${c.prefix ?? (family === 4 ? 32 : 128)}`;
const rangeText = (r: PortRange): string => (r.start === r.end ? String(r.start) : `${r.start}:${r.end}`);

/**
 * An instance as `iptables -S` prints it (without the comment), for docs, `explain` and the test
 * that compares the model with a real libvirtd's chains. `port` is the interface name.
 */
export function iptablesText(inst: RuleInstance, port = '<port>'): string {
  const parts = [`-A ${inst.chain}-${port}`];
  if (inst.source) parts.push(`-s ${cidrText(inst.source, inst.family)}`);
  if (inst.destination) parts.push(`-d ${cidrText(inst.destination, inst.family)}`);
  parts.push(`-p ${inst.protocol}`);
  if (inst.protocol === 'tcp' || inst.protocol === 'udp' || inst.protocol === 'sctp') {
    if (inst.sport || inst.dport) parts.push(`-m ${inst.protocol}`);
    if (inst.sport) parts.push(`--sport ${rangeText(inst.sport)}`);
    if (inst.dport) parts.push(`--dport ${rangeText(inst.dport)}`);
  }
  if (inst.icmpType !== undefined) {
    const type = inst.icmpCode !== undefined ? `${inst.icmpType}/${inst.icmpCode}` : String(inst.icmpType);
    parts.push(inst.protocol === 'icmpv6' ? `-m icmp6 --icmpv6-type ${type}` : `-m icmp --icmp-type ${type}`);
  }
  if (inst.ctstate) parts.push(`-m conntrack --ctstate ${inst.ctstate.join(',')}`);
  if (inst.ctdir) parts.push(`${inst.ctstate ? '' : '-m conntrack '}--ctdir ${inst.ctdir}`);
  // libvirt puts the set match after the state match (iptablesHandleIPHdrAfterStateMatch).
  if (inst.set) parts.push(`-m set --match-set ${inst.set.name} ${inst.set.dir}`);
  parts.push(`-j ${inst.target}`);
  return parts.join(' ');
}
