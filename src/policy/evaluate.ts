import type { ConnState } from '../api/index.js';
import type { Cidr, NwFilter, NwRule } from './model.js';

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
  state?: ConnState;
}

export type Verdict = 'accept' | 'drop' | 'reject' | 'return';

export interface Decision {
  verdict: Verdict;
  /** The deciding rule, or undefined when no rule matched (libvirt then lets the packet pass). */
  rule?: NwRule;
  /** Filter the deciding rule lives in. */
  filter?: string;
  /** Rules considered, in libvirt's flattened order. */
  considered: number;
  /** Referenced filters the evaluator does not know (libvirt's own, e.g. clean-traffic). */
  unevaluated: string[];
}

interface Located {
  rule: NwRule;
  filter: string;
  order: number;
}

/**
 * libvirt's view of a filter tree: the rules of the root and of every filter reached through
 * <filterref> in one list sorted by priority (depth-first order breaks ties). A filter referenced
 * twice is instantiated once.
 */
export function flatten(root: string, filters: ReadonlyMap<string, NwFilter>): { rules: Located[]; unevaluated: string[] } {
  const rules: Located[] = [];
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

export function ipv4ToInt(address: string): number {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${address}`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function cidrContains(cidr: Cidr, address: string): boolean {
  if (cidr.prefix === 0) return true;
  const mask = (0xffffffff << (32 - cidr.prefix)) >>> 0;
  return ((ipv4ToInt(cidr.address) & mask) >>> 0) === ((ipv4ToInt(address) & mask) >>> 0);
}

/** A CIDR condition matches only a known address inside it: an unknown address never matches. */
function addressMatches(cidr: Cidr | undefined, address: string | undefined): boolean {
  if (!cidr) return true;
  return address !== undefined && cidrContains(cidr, address);
}

export function ruleMatches(rule: NwRule, packet: Packet): boolean {
  if (rule.direction !== 'inout' && rule.direction !== packet.direction) return false;
  // Packets here are IPv4: `all-ipv6` never matches them.
  if (rule.protocol !== 'all' && rule.protocol !== packet.protocol) return false;
  if (rule.dstPortStart !== undefined) {
    if (packet.port === undefined) return false;
    if (packet.port < rule.dstPortStart || packet.port > (rule.dstPortEnd ?? rule.dstPortStart)) return false;
  }
  const [source, destination] = packet.direction === 'in' ? [packet.remote, packet.local] : [packet.local, packet.remote];
  if (!addressMatches(rule.src, source) || !addressMatches(rule.dst, destination)) return false;
  if (rule.state && !rule.state.includes(packet.state ?? 'NEW')) return false;
  return true;
}

/** What libvirt does with the first packet of a connection (state NEW unless given). */
export function evaluate(root: string, filters: ReadonlyMap<string, NwFilter>, packet: Packet): Decision {
  const { rules, unevaluated } = flatten(root, filters);
  for (let i = 0; i < rules.length; i++) {
    const { rule, filter } = rules[i]!;
    if (ruleMatches(rule, packet)) return { verdict: rule.action, rule, filter, considered: i + 1, unevaluated };
  }
  return { verdict: 'accept', considered: rules.length, unevaluated };
}

/** Parses "<in|out> <proto> [port] [from|to <ip>] [state]" as the CLI's --packet takes it. */
export function parsePacket(text: string): Packet {
  const words = text.trim().split(/\s+/);
  const [direction, protocol, ...rest] = words;
  if (direction !== 'in' && direction !== 'out') throw new Error(`packet: direction must be "in" or "out", got "${direction ?? ''}"`);
  if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp' && protocol !== 'icmp') {
    throw new Error(`packet: protocol must be tcp, udp, sctp or icmp, got "${protocol ?? ''}"`);
  }
  const packet: Packet = { direction, protocol };
  for (let i = 0; i < rest.length; i++) {
    const w = rest[i]!;
    if (/^\d+$/.test(w)) {
      const port = Number(w);
      if (port < 1 || port > 65535) throw new Error(`packet: port ${port} outside 1..65535`);
      packet.port = port;
    } else if (w === 'from' || w === 'to') {
      const ip = rest[++i];
      if (ip === undefined) throw new Error(`packet: "${w}" needs an address`);
      ipv4ToInt(ip);
      if ((w === 'from') !== (direction === 'in')) throw new Error(`packet: an "${direction}" packet's remote address is given with "${direction === 'in' ? 'from' : 'to'}"`);
      packet.remote = ip;
    } else if (['NEW', 'ESTABLISHED', 'RELATED', 'INVALID'].includes(w.toUpperCase())) {
      packet.state = w.toUpperCase() as ConnState;
    } else {
      throw new Error(`packet: unexpected "${w}"`);
    }
  }
  if (packet.protocol !== 'icmp' && packet.port === undefined) throw new Error('packet: tcp, udp and sctp need a port');
  return packet;
}
