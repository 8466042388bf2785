import type { ConnState, RuleAction, RuleDirection } from '../api/index.js';

export type Level = 'global' | 'department' | 'vm';
export type ServiceDirection = 'use' | 'provide';

/**
 * IPv4 protocols libvirt instantiates in iptables; `all` matches every one of them. `all-ipv6`
 * (ip6tables) is used only by the fail-closed defaults, so that IPv6 is closed as well.
 */
export type NwProtocol = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'all' | 'all-ipv6';

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
  | { kind: 'default'; level: Level; owner: string };

export interface NwRule {
  action: RuleAction;
  direction: RuleDirection;
  priority: number;
  protocol: NwProtocol;
  dstPortStart?: number;
  dstPortEnd?: number;
  src?: Cidr;
  dst?: Cidr;
  state?: ConnState[];
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
