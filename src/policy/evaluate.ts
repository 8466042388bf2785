import { ICMP_TYPE_NAMES, type IcmpTypeName } from '../api/index.js';
import { firstPacketState } from './conntrack.js';
import { cidrContains, ipv4ToInt, ipv6ToBigInt, isIpv6 } from './ip.js';
import type { NwFilter, NwRule, SetMembers } from './model.js';
import {
  chainOf,
  instantiateTree,
  type Chain,
  type CtDir,
  type CtState,
  type Family,
  type RuleInstance,
} from './instantiate.js';

/**
 * What the kernel does with packets, evaluated on the model of libvirt's rule instances
 * (instantiate.ts): one packet through one chain, and a whole connection (first packet, replies,
 * the packets after the handshake, the answer of a closed port) through the chains it crosses.
 * libvirt's own filters referenced by ours (clean-traffic: ebtables MAC/IP/ARP anti-spoofing) are
 * not modelled; results name them as unevaluated.
 */

export type L4 = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6';

/** One packet as netfilter sees it in one of libvirt's chains. */
export interface KernelPacket {
  family: Family;
  chain: Chain;
  protocol: L4;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  ctstate: CtState;
  ctdir: CtDir;
}

export type ChainVerdict = 'accept' | 'drop' | 'reject';

export interface ChainDecision {
  verdict: ChainVerdict;
  /** The deciding instance; undefined when the packet ran off the end of the chain. */
  instance?: RuleInstance;
  /** Instances looked at, in order. */
  considered: number;
}

// ---------------------------------------------------------------------------------------------
// Addresses

export { cidrContains, ipv4ToInt, ipv6ToBigInt, isIpv6 } from './ip.js';

// ---------------------------------------------------------------------------------------------
// One packet, one chain

const inRange = (value: number | undefined, range: { start: number; end: number } | undefined): boolean =>
  range === undefined || (value !== undefined && value >= range.start && value <= range.end);

const NO_SETS: SetMembers = new Map();

/**
 * `-m set --match-set <name> <flags>`: the packet's source or destination address is in the set
 * (a missing set is empty) and, for a `hash:net,port` set, its port on the side of the second flag
 * (of the entry's protocol) or its ICMP type and code is one of the set's.
 */
function inSet(set: NonNullable<RuleInstance['set']>, p: KernelPacket, sets: SetMembers): boolean {
  const [addressSide, portSide] = set.dir.split(',');
  const address = addressSide === 'src' ? p.src : p.dst;
  if (!(sets.get(set.name) ?? []).some((c) => cidrContains(c, address))) return false;
  if (!set.ports) return true;
  const port = portSide === 'src' ? p.sport : p.dport;
  return set.ports.some((sp) => {
    if (p.protocol !== sp.protocol) return false;
    if ('type' in sp) return p.icmpType === sp.type && (p.icmpCode ?? 0) === sp.code;
    return port !== undefined && port >= sp.start && port <= sp.end;
  });
}

/** netfilter's match of one instance: every condition the instance has must hold. */
export function instanceMatches(inst: RuleInstance, p: KernelPacket, sets: SetMembers = NO_SETS): boolean {
  if (inst.family !== p.family || inst.chain !== p.chain) return false;
  if (inst.protocol !== 'all' && inst.protocol !== p.protocol) return false;
  if (inst.source && !cidrContains(inst.source, p.src)) return false;
  if (inst.destination && !cidrContains(inst.destination, p.dst)) return false;
  // --sport / --dport come with -p tcp|udp|sctp, so a packet without ports never matches them.
  if (!inRange(p.sport, inst.sport) || !inRange(p.dport, inst.dport)) return false;
  if (inst.icmpType !== undefined && inst.icmpType !== p.icmpType) return false;
  if (inst.icmpCode !== undefined && inst.icmpCode !== (p.icmpCode ?? 0)) return false;
  if (inst.ctstate && !inst.ctstate.includes(p.ctstate)) return false;
  // conntrack's --ctdir matches tracked packets only: an untracked or invalid packet has no direction.
  if (inst.ctdir && (inst.ctdir !== p.ctdir || p.ctstate === 'UNTRACKED' || p.ctstate === 'INVALID')) return false;
  if (inst.set && !inSet(inst.set, p, sets)) return false;
  return true;
}

/**
 * The first matching instance decides. ACCEPT (FO) and RETURN (FI, HI: libvirt's chains are
 * entered with -g, and libvirt-in-post accepts what FI returned) both let the packet through;
 * a packet that runs off the end returns to the host's own chains, which we count as accepted.
 */
export function evaluateChain(instances: readonly RuleInstance[], p: KernelPacket, sets: SetMembers = NO_SETS): ChainDecision {
  const chain = chainOf(instances, p.family, p.chain);
  for (let i = 0; i < chain.length; i++) {
    const inst = chain[i]!;
    if (!instanceMatches(inst, p, sets)) continue;
    const verdict: ChainVerdict = inst.target === 'DROP' ? 'drop' : inst.target === 'REJECT' ? 'reject' : 'accept';
    return { verdict, instance: inst, considered: i + 1 };
  }
  return { verdict: 'accept', considered: chain.length };
}

// ---------------------------------------------------------------------------------------------
// A connection

export type Outcome = 'open' | 'refused' | 'dropped';

export interface ConnectionQuery {
  /** in: the remote side connects to the VM; out: the VM connects to the remote side. */
  direction: 'in' | 'out';
  protocol: 'tcp' | 'udp' | 'sctp' | 'icmp';
  family: Family;
  /** Destination port: the VM's for `in`, the remote one for `out` (tcp, udp, sctp). */
  port?: number;
  /** The initiator's source port; an ephemeral one when not given. */
  sourcePort?: number;
  vmAddress: string;
  remoteAddress: string;
  /** The remote side is the host itself (its packets to the VM are not filtered by libvirt). */
  remoteIsHost?: boolean;
  /** Whether something listens on the destination port (default true); ICMP echo always answers. */
  listening?: boolean;
}

export interface Step {
  /** What the packet is, e.g. "first packet (NEW) VM -> remote". */
  what: string;
  /** undefined when libvirt's chains do not see the packet (the host's own packets). */
  packet?: KernelPacket;
  decision?: ChainDecision;
}

export interface ConnectionResult {
  outcome: Outcome;
  steps: Step[];
  /** Referenced filters the model does not know (libvirt's own, e.g. clean-traffic). */
  unevaluated: string[];
}

export const EPHEMERAL_PORT = 40000;

function echoTypes(family: Family): { request: number; reply: number; unreachable: number } {
  return family === 4 ? { request: 8, reply: 0, unreachable: 3 } : { request: 128, reply: 129, unreachable: 1 };
}

/** A packet the connection's initiator sends (original direction), without chain and family. */
function initiatorPacket(q: ConnectionQuery, ctstate: CtState): Omit<KernelPacket, 'chain' | 'family'> {
  const vmStarts = q.direction === 'out';
  const icmp = q.protocol === 'icmp';
  return {
    protocol: icmp && q.family === 6 ? 'icmpv6' : q.protocol,
    src: vmStarts ? q.vmAddress : q.remoteAddress,
    dst: vmStarts ? q.remoteAddress : q.vmAddress,
    ...(icmp
      ? { icmpType: echoTypes(q.family).request }
      : { sport: q.sourcePort ?? EPHEMERAL_PORT, ...(q.port !== undefined ? { dport: q.port } : {}) }),
    ctstate,
    ctdir: 'ORIGINAL',
  };
}

/**
 * The packets of one connection attempt and what libvirt's chains do with each, in order:
 * the first packet (NEW, original direction); if nothing listens, the RST (TCP) or the ICMP port
 * unreachable (UDP, conntrack RELATED) coming back; else the reply (ESTABLISHED, reply direction)
 * and, for TCP, the initiator's next packet (ESTABLISHED, original) and the echoed data.
 * Outcome as a client sees it: open, refused (RST / ICMP error / REJECT) or dropped (silence).
 */
export function evaluateConnection(
  instances: readonly RuleInstance[],
  q: ConnectionQuery,
  unevaluated: string[] = [],
  sets: SetMembers = NO_SETS,
): ConnectionResult {
  const icmp = echoTypes(q.family);
  const vmStarts = q.direction === 'out';
  const initiator = vmStarts ? q.vmAddress : q.remoteAddress;
  const responder = vmStarts ? q.remoteAddress : q.vmAddress;
  // Chains: packets from the VM go through FI (forwarded) or HI (to the host); packets to the VM
  // through FO, except the host's own, which leave through OUTPUT and meet no libvirt chain.
  const fromVm: Chain = q.remoteIsHost ? 'HI' : 'FI';
  const toVm: Chain | undefined = q.remoteIsHost ? undefined : 'FO';
  const forwardChain = vmStarts ? fromVm : toVm;
  const replyChain = vmStarts ? toVm : fromVm;
  const steps: Step[] = [];

  const pass = (what: string, chain: Chain | undefined, packet: Omit<KernelPacket, 'chain' | 'family'>): ChainDecision | undefined => {
    if (!chain) {
      steps.push({ what });
      return undefined;
    }
    const full: KernelPacket = { ...packet, chain, family: q.family };
    const decision = evaluateChain(instances, full, sets);
    steps.push({ what, packet: full, decision });
    return decision;
  };
  const done = (outcome: Outcome): ConnectionResult => ({ outcome, steps, unevaluated });
  const original = (ctstate: CtState): Omit<KernelPacket, 'chain' | 'family'> => initiatorPacket(q, ctstate);
  // The responder's answer: the initiator's packet mirrored.
  const reply = (): Omit<KernelPacket, 'chain' | 'family'> => {
    const sent = original('ESTABLISHED');
    return {
      protocol: sent.protocol,
      src: sent.dst,
      dst: sent.src,
      ...(sent.dport !== undefined ? { sport: sent.dport } : {}),
      ...(sent.sport !== undefined ? { dport: sent.sport } : {}),
      ...(sent.icmpType !== undefined ? { icmpType: icmp.reply } : {}),
      ctstate: 'ESTABLISHED',
      ctdir: 'REPLY',
    };
  };

  const first = pass('first packet (NEW)', forwardChain, original('NEW'));
  if (first?.verdict === 'drop') return done('dropped');
  // REJECT answers with an ICMP error (TCP too) sent by the host, which no libvirt chain filters.
  if (first?.verdict === 'reject') return done('refused');

  const listening = q.protocol === 'icmp' || q.listening !== false;
  if (!listening) {
    if (q.protocol === 'tcp') {
      const rst = pass('RST from the closed port (ESTABLISHED, reply)', replyChain, reply());
      return done(rst === undefined || rst.verdict === 'accept' ? 'refused' : 'dropped');
    }
    const error = pass('ICMP port unreachable from the closed port (RELATED)', replyChain, {
      protocol: q.family === 4 ? 'icmp' : 'icmpv6',
      src: responder,
      dst: initiator,
      icmpType: icmp.unreachable,
      ctstate: 'RELATED',
      ctdir: 'REPLY',
    });
    return done(error === undefined || error.verdict === 'accept' ? 'refused' : 'dropped');
  }

  const answer = pass('reply (ESTABLISHED, reply direction)', replyChain, reply());
  if (answer && answer.verdict !== 'accept') return done('dropped');
  if (q.protocol === 'tcp') {
    const next = pass('next packet of the initiator (ESTABLISHED, original direction)', forwardChain, original('ESTABLISHED'));
    if (next && next.verdict !== 'accept') return done('dropped');
  }
  return done('open');
}

/** Instances and connection evaluation for one VM's filter tree. */
export function explainConnection(root: string, filters: ReadonlyMap<string, NwFilter>, q: ConnectionQuery, sets: SetMembers = NO_SETS): ConnectionResult {
  const { instances, unevaluated } = instantiateTree(root, filters);
  return evaluateConnection(instances, q, unevaluated, sets);
}

// ---------------------------------------------------------------------------------------------
// One packet on its own: ICMP messages that are not echo, router advertisements, DHCPv6

export interface DeliveryQuery {
  /** in: to the VM; out: from the VM. */
  direction: 'in' | 'out';
  family: Family;
  protocol: 'tcp' | 'udp' | 'sctp' | 'icmp';
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  /** The other side is the host (an `out` packet then goes through HI instead of FI). */
  remoteIsHost?: boolean;
}

/** What libvirt's chains do with one packet sent on its own (a probe that only checks arrival). */
export function evaluateDelivery(instances: readonly RuleInstance[], q: DeliveryQuery, sets: SetMembers = NO_SETS): ChainDecision {
  const protocol: L4 = q.protocol === 'icmp' && q.family === 6 ? 'icmpv6' : q.protocol;
  const packet: KernelPacket = {
    family: q.family,
    chain: q.direction === 'in' ? 'FO' : q.remoteIsHost ? 'HI' : 'FI',
    protocol,
    src: q.src,
    dst: q.dst,
    ...(q.sport !== undefined ? { sport: q.sport } : {}),
    ...(q.dport !== undefined ? { dport: q.dport } : {}),
    ...(q.icmpType !== undefined ? { icmpType: q.icmpType } : {}),
    ...(q.icmpCode !== undefined ? { icmpCode: q.icmpCode } : {}),
    ctstate: firstPacketState(q.family, protocol, q.icmpType),
    ctdir: 'ORIGINAL',
  };
  return evaluateChain(instances, packet, sets);
}

// ---------------------------------------------------------------------------------------------
// The first packet of a connection: what decides between policy levels

export interface Packet {
  /** in: to the VM; out: from the VM. */
  direction: 'in' | 'out';
  protocol: 'tcp' | 'udp' | 'sctp' | 'icmp';
  /** Destination port: the VM's for `in`, the remote one for `out`. */
  port?: number;
  /** The remote address: the source of an `in` packet, the destination of an `out` packet. */
  remote?: string;
  /** The VM's own address, when known (the IP filter parameter). */
  local?: string;
  /** IPv4 unless 6. */
  family?: Family;
  /** The remote side is the host (an `out` packet then goes through HI instead of FI). */
  remoteIsHost?: boolean;
}

export type Verdict = 'accept' | 'drop' | 'reject';

export interface Decision {
  verdict: Verdict;
  /** The deciding rule, or undefined when no rule matched (the packet then leaves libvirt's chains). */
  rule?: NwRule;
  instance?: RuleInstance;
  /** Filter the deciding rule lives in. */
  filter?: string;
  /** Instances considered in the chain, in order. */
  considered: number;
  /** Referenced filters the evaluator does not know (libvirt's own, e.g. clean-traffic). */
  unevaluated: string[];
}

/** Documentation addresses stand in for unknown ones: they fall in no CIDR a test or user writes. */
export const UNKNOWN_ADDRESS: Record<Family, string> = { 4: '192.0.2.254', 6: '2001:db8::fe' };

/**
 * What libvirt's chains do with the first packet (conntrack NEW, original direction) of a
 * connection: the decision between policy levels. A rule with an address matches only when the
 * address is given and inside it.
 */
export function evaluate(root: string, filters: ReadonlyMap<string, NwFilter>, packet: Packet, sets: SetMembers = NO_SETS): Decision {
  const { instances, unevaluated } = instantiateTree(root, filters);
  const family = packet.family ?? 4;
  const chain: Chain = packet.direction === 'in' ? 'FO' : packet.remoteIsHost ? 'HI' : 'FI';
  const query: ConnectionQuery = {
    direction: packet.direction,
    protocol: packet.protocol,
    family,
    ...(packet.port !== undefined ? { port: packet.port } : {}),
    vmAddress: packet.local ?? UNKNOWN_ADDRESS[family],
    remoteAddress: packet.remote ?? UNKNOWN_ADDRESS[family],
  };
  const kp: KernelPacket = { ...initiatorPacket(query, 'NEW'), chain, family };
  const d = evaluateChain(instances, kp, sets);
  return {
    verdict: d.verdict,
    ...(d.instance ? { rule: d.instance.rule, instance: d.instance, filter: d.instance.filter } : {}),
    considered: d.considered,
    unevaluated,
  };
}

/** An ICMP message of a --packet: by name (both families) or by number, with an optional code. */
export interface PacketIcmp {
  name?: IcmpTypeName;
  type?: number;
  code?: number;
}

/**
 * Parses "<in|out> <proto> [port] [icmp-type-name | type N [code C]] [from|to <ip>] [sport N] [ipv6] [host]"
 * as the CLI's --packet takes it. `ipv6` picks the family when no address says it.
 */
export function parsePacket(text: string): Packet & { sourcePort?: number; icmp?: PacketIcmp } {
  const words = text.trim().split(/\s+/);
  const [direction, protocol, ...rest] = words;
  if (direction !== 'in' && direction !== 'out') throw new Error(`packet: direction must be "in" or "out", got "${direction ?? ''}"`);
  if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp' && protocol !== 'icmp') {
    throw new Error(`packet: protocol must be tcp, udp, sctp or icmp, got "${protocol ?? ''}"`);
  }
  const packet: Packet & { sourcePort?: number; icmp?: PacketIcmp } = { direction, protocol };
  const number = (word: string, max: number): number => {
    const w = rest.shift();
    if (w === undefined || !/^\d+$/.test(w) || Number(w) > max) throw new Error(`packet: "${word}" needs a number 0..${max}`);
    return Number(w);
  };
  while (rest.length > 0) {
    const w = rest.shift()!;
    if (/^\d+$/.test(w)) {
      packet.port = portNumber(w);
    } else if (w === 'sport') {
      const p = rest.shift();
      if (p === undefined || !/^\d+$/.test(p)) throw new Error('packet: "sport" needs a port number');
      packet.sourcePort = portNumber(p);
    } else if (w === 'host') {
      packet.remoteIsHost = true;
    } else if (w === 'ipv6') {
      packet.family = 6;
    } else if (w === 'type' || w === 'code') {
      if (protocol !== 'icmp') throw new Error(`packet: "${w}" is for icmp`);
      packet.icmp = { ...packet.icmp, [w]: number(w, 255) };
    } else if ((ICMP_TYPE_NAMES as readonly string[]).includes(w)) {
      if (protocol !== 'icmp') throw new Error(`packet: "${w}" is an ICMP type`);
      packet.icmp = { ...packet.icmp, name: w as IcmpTypeName };
    } else if (w === 'from' || w === 'to') {
      const ip = rest.shift();
      if (ip === undefined) throw new Error(`packet: "${w}" needs an address`);
      if (isIpv6(ip)) {
        ipv6ToBigInt(ip);
        packet.family = 6;
      } else {
        ipv4ToInt(ip);
      }
      if ((w === 'from') !== (direction === 'in')) throw new Error(`packet: an "${direction}" packet's remote address is given with "${direction === 'in' ? 'from' : 'to'}"`);
      packet.remote = ip;
    } else {
      throw new Error(`packet: unexpected "${w}"`);
    }
  }
  if (packet.protocol !== 'icmp' && packet.port === undefined) throw new Error('packet: tcp, udp and sctp need a port');
  if (packet.protocol === 'icmp' && packet.port !== undefined) throw new Error('packet: icmp takes no port');
  if (packet.icmp && packet.icmp.name === undefined && packet.icmp.type === undefined) throw new Error('packet: an ICMP code needs a type');
  return packet;
}

function portNumber(text: string): number {
  const port = Number(text);
  if (port < 1 || port > 65535) throw new Error(`packet: port ${port} outside 1..65535`);
  return port;
}
