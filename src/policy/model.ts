import type { ConnState, RuleAction, RuleDirection } from '../api/index.js';

export type Level = 'global' | 'department' | 'vm';
export type ServiceDirection = 'use' | 'provide';

/**
 * Protocol elements of libvirt's nwfilter XML that we emit. `tcp`, `udp`, `sctp`, `icmp` and `all`
 * are IPv4 (iptables); `all-ipv6` and `icmpv6` are IPv6 (ip6tables), used by the base rules and the
 * fail-closed defaults only.
 */
export type NwProtocol = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'all' | 'all-ipv6' | 'icmpv6';

export interface Cidr {
  address: string;
  prefix: number;
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
  kind: 'ServicePolicy' | 'DepartmentPolicy' | 'VMFilter';
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
