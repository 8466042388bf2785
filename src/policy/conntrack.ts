import type { CtState, Family } from './instantiate.js';

/**
 * What connection tracking makes of the packets our rules match, as the kernel's
 * nf_conntrack_proto_icmp.c and nf_conntrack_proto_icmpv6.c decide it; the packet suite holds the
 * rules built on these facts against real packets.
 */

/** ICMP requests conntrack starts a connection with (`valid_new`), and the type of their reply. */
export const ICMP_REQUESTS: Record<Family, ReadonlyMap<number, number>> = {
  4: new Map([[8, 0], [13, 14], [15, 16], [17, 18]]),
  6: new Map([[128, 129], [139, 140]]),
};

/** ICMPv6 types conntrack leaves untracked (`noct_valid_new`): MLD, router and neighbour discovery, redirect. */
export const ICMPV6_UNTRACKED: ReadonlySet<number> = new Set([130, 131, 132, 133, 134, 135, 136, 137, 143]);

/**
 * The conntrack state the kernel gives the first packet of this kind when nothing came before it:
 * TCP/UDP/SCTP and ICMP requests are NEW; ICMPv6 discovery and MLD messages are UNTRACKED; every
 * other ICMP message (an error that belongs to no connection, a reply nobody asked for, a router
 * advertisement over IPv4) has no connection to join and is INVALID.
 */
export function firstPacketState(family: Family, protocol: string, icmpType?: number): CtState {
  if (protocol !== 'icmp' && protocol !== 'icmpv6') return 'NEW';
  if (icmpType === undefined) return 'NEW';
  if (ICMP_REQUESTS[family].has(icmpType)) return 'NEW';
  if (family === 6 && ICMPV6_UNTRACKED.has(icmpType)) return 'UNTRACKED';
  return 'INVALID';
}
