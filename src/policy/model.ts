import type { ConnState, RuleAction, RuleDirection } from '../api/index.js';

export type Level = 'global' | 'department' | 'vm';
export type ServiceDirection = 'use' | 'provide';

/**
 * Protocol elements of libvirt's nwfilter XML that we emit. `tcp`, `udp`, `sctp`, `icmp` and `all`
 * are IPv4 (iptables); `tcp-ipv6`, `udp-ipv6`, `sctp-ipv6`, `icmpv6` and `all-ipv6` are IPv6
 * (ip6tables).
 */
export type Ipv4Protocol = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'all';
export type Ipv6Protocol = 'tcp-ipv6' | 'udp-ipv6' | 'sctp-ipv6' | 'icmpv6' | 'all-ipv6';
export type NwProtocol = Ipv4Protocol | Ipv6Protocol;

export interface Cidr {
  address: string;
  prefix: number;
}

/** What a `hash:net,port` set's second dimension holds: a protocol's port range, or an ICMP type and code. */
export type SetPort =
  | { protocol: 'tcp' | 'udp' | 'sctp'; start: number; end: number }
  | { protocol: 'icmp' | 'icmpv6'; type: number; code: number };

/**
 * A rule's match on a kernel IP set (libvirt's `ipset` and `ipsetflags` attributes: `-m set
 * --match-set <name> <flags>`). libvirt 9.0 keeps these attributes only on `all` and `all-ipv6`
 * (on tcp, udp, icmp, ... a define silently drops them: measured), so a rule that matches a group
 * is an `all` rule whose set carries the rest of the match: a `hash:net` set of the group's
 * addresses, or a `hash:net,port` set of address x (protocol, port) pairs, ICMP types included.
 * The agent keeps the members, so a membership change touches no libvirt filter
 * (docs/address-groups.md).
 */
export interface SetMatch {
  /** Kernel set name (at most 31 characters). */
  name: string;
  /**
   * ipset's direction flags, per dimension, in the rule's own direction: the address (src or dst)
   * and, for a port set, where the port is (the connection's destination port: dst).
   */
  flags: 'src' | 'dst' | 'src,dst' | 'dst,dst';
  /** The AddressGroup the set mirrors. */
  group: string;
  /** The set's second dimension, when it has one (a `hash:net,port` set). */
  ports?: SetPort[];
}

/**
 * Why a rule exists, as structured data. Rules are identified by this, never by comment text
 * (the reference system deleted SMTPS together with SMTP by matching comments).
 */
export type RuleOrigin =
  | {
      kind: 'service';
      level: Level;
      owner: string;
      service: string;
      direction: ServiceDirection;
      decision: 'allow' | 'deny';
      enforced: boolean;
    }
  | { kind: 'custom'; level: Level; owner: string; index: number; enforced: boolean }
  | { kind: 'default'; level: Level; owner: string }
  /** Rules every VM chain starts with: related ICMP errors, IPv6 neighbour discovery. */
  | { kind: 'base'; level: Level; owner: string; what: 'related' | 'neighbor-discovery' };

/** The members of the kernel IP sets rules refer to, by set name: what `explain` needs to evaluate them. */
export type SetMembers = ReadonlyMap<string, readonly Cidr[]>;

/**
 * One rule of a libvirt filter, in libvirt's terms (attribute names follow the XML). How libvirt
 * turns it into iptables rules is modelled in instantiate.ts and documented in docs/priorities.md.
 */
export interface NwRule {
  action: RuleAction;
  direction: RuleDirection;
  priority: number;
  protocol: NwProtocol;
  dstPortStart?: number;
  dstPortEnd?: number;
  src?: Cidr;
  dst?: Cidr;
  /** libvirt's `state` attribute: with it, libvirt instantiates the rule in its own direction only. */
  state?: ConnState[];
  /** libvirt's `statematch='false'`: no conntrack match at all (for untracked packets such as ND). */
  noStateMatch?: true;
  /** ICMP / ICMPv6 type. */
  icmpType?: number;
  /** ICMP / ICMPv6 code (only with a type). */
  icmpCode?: number;
  /** Source or destination address in a kernel IP set. */
  set?: SetMatch;
  comment: string;
  origin: RuleOrigin;
}

/** A libvirt nwfilter as we generate it: always chain 'root', references first, then rules. */
export interface NwFilter {
  name: string;
  uuid: string;
  level: Level;
  /** Names of referenced filters, ours or libvirt's own (e.g. clean-traffic). */
  refs: string[];
  rules: NwRule[];
}

export type Severity = 'error' | 'warning';

export interface ResourceRef {
  kind: 'ServicePolicy' | 'DepartmentPolicy' | 'VMFilter' | 'AddressGroup';
  name: string;
}

/** A finding about one resource; `reason` is the CamelCase word that status conditions carry. */
export interface Diagnostic {
  severity: Severity;
  resource: ResourceRef;
  field?: string;
  reason: string;
  message: string;
}
