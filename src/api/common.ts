import { z } from 'zod';
import { IcmpMatch, IpCidr, IpFamily, icmpFamilyRules, isIpv6Text } from './addresses.js';
import { withCel, type CelRule } from './cel.js';

export const GROUP = 'nwfilter.infinibay.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Name of another cluster-scoped object of ours (an RFC 1123 subdomain, as Kubernetes requires). */
export const ObjectName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a lowercase RFC 1123 name');

export const PortNumber = z.number().int().min(1).max(65535);

export const ServiceProtocol = z.enum(['tcp', 'udp', 'sctp', 'icmp']);
export type ServiceProtocol = z.infer<typeof ServiceProtocol>;

export const RuleProtocol = z.enum(['tcp', 'udp', 'sctp', 'icmp', 'all']);
export { IcmpMatch, IpFamily } from './addresses.js';
export type RuleProtocol = z.infer<typeof RuleProtocol>;

/**
 * What a rule does with a new connection. libvirt's `return` is not offered: in a VM's root chain it
 * leaves libvirt's chain and hands the packet to the host's own FORWARD rules, which is neither an
 * accept nor a drop of ours (docs/priorities.md).
 */
export const RuleAction = z.enum(['accept', 'drop', 'reject']);
export type RuleAction = z.infer<typeof RuleAction>;

export const RuleDirection = z.enum(['in', 'out', 'inout']);
export type RuleDirection = z.infer<typeof RuleDirection>;

export const ConnState = z.enum(['NEW', 'ESTABLISHED', 'RELATED', 'INVALID']);
export type ConnState = z.infer<typeof ConnState>;

/** What a level says about one direction of one service. `inherit` defers to the level below. */
export const Override = z.enum(['allow', 'deny', 'inherit']);
export type Override = z.infer<typeof Override>;

export { Ipv4Address, Ipv4Cidr, Ipv6Address, IpCidr, IPV4_CIDR_PATTERN, IPV4_PATTERN } from './addresses.js';

export const MacAddress = z
  .string()
  .regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, 'must be a MAC address such as 52:54:00:12:34:56');

/** A single port (`port`) or an inclusive range (`port`..`endPort`). */
export const PortRange = withCel(
  z
    .object({
      port: PortNumber.describe('First (or only) port.'),
      endPort: PortNumber.optional().describe('Last port of an inclusive range; omit for a single port.'),
    })
    .strict(),
  [
    {
      rule: '!has(self.endPort) || self.endPort >= self.port',
      message: 'endPort must be greater than or equal to port',
      path: ['endPort'],
      holds: (v) => v.endPort === undefined || v.endPort >= v.port,
    },
  ],
);
export type PortRange = z.infer<typeof PortRange>;

export const MAX_CUSTOM_RULES = 100;
export const MAX_COMMENT_LENGTH = 200;

// XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]. libxml2
// refuses a document with anything else, so one such character in a department rule would make
// every member's filter fail to define.
const XML_CHARS = /^[\u0009\u000A\u000D\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;
export const isXmlText = (text: string): boolean => XML_CHARS.test(text);

/**
 * The API server decodes JSON into valid UTF-8 (lone surrogates become U+FFFD), so of the
 * characters XML 1.0 forbids only the controls (refused by the pattern) and the noncharacters
 * U+FFFE and U+FFFF can reach it; CEL's '\uFFFE' escape names them.
 */
const xmlText: CelRule<string> = {
  rule: "!self.contains('\\uFFFE') && !self.contains('\\uFFFF')",
  message: 'must contain only characters XML 1.0 allows (no U+FFFE, U+FFFF or unpaired surrogates)',
  holds: isXmlText,
};


/** A Kubernetes label selector (metav1.LabelSelector) over VMFilters' labels. */
export const LabelSelector = z
  .object({
    matchLabels: z.record(z.string().max(317), z.string().max(63)).optional().meta({ maxProperties: 16 }).describe('Labels a VMFilter must have, all of them.'),
    matchExpressions: z
      .array(
        z
          .object({
            key: z.string().max(317),
            operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
            values: z.array(z.string().max(63)).max(32).optional(),
          })
          .strict(),
      )
      .max(16)
      .optional()
      .describe('Label requirements, all of which must hold (In, NotIn, Exists, DoesNotExist).'),
  })
  .strict();
export type LabelSelector = z.infer<typeof LabelSelector>;

/**
 * VMs named instead of addresses: the members of a department, or the VMFilters a label selector
 * picks. They resolve to the addresses in the VMs' `parameters` (ip and ipv6), and the controller
 * keeps the resolution up to date as VMs come and go (docs/address-groups.md).
 */
export const PeerSelector = withCel(
  z
    .object({
      department: ObjectName.optional().describe('The VMs of this DepartmentPolicy.'),
      vmSelector: LabelSelector.optional().describe('The VMFilters whose labels match (all of them, cluster-wide).'),
    })
    .strict(),
  [
    {
      rule: 'has(self.department) != has(self.vmSelector)',
      message: 'exactly one of department or vmSelector must be set',
      holds: (v) => (v.department === undefined) !== (v.vmSelector === undefined),
    },
  ],
);
export type PeerSelector = z.infer<typeof PeerSelector>;

const customRuleShape = {
  action: RuleAction.describe(
    'accept, drop or reject new connections that match. Replies and related ICMP errors of accepted connections always pass.',
  ),
  direction: RuleDirection.describe(
    'in: connections to the VM; out: connections from the VM; inout: both (the same as one in and one out rule).',
  ),
  protocol: RuleProtocol.describe('tcp, udp, sctp, icmp (ICMP for IPv4, ICMPv6 for IPv6), or all (every protocol).'),
  family: IpFamily.optional().describe(
    'ipv4 or ipv6 only. Default: both families, or the family of the rule\'s source/destination address.',
  ),
  icmp: IcmpMatch.optional().describe('Only this ICMP message type (and code); only with protocol icmp. Default: every ICMP type.'),
  ports: z
    .array(PortRange)
    .max(16)
    .optional()
    .describe(
      'Destination ports of the connection: the VM\'s port for "in", the remote port for "out". Only for tcp, udp, sctp.',
    ),
  source: IpCidr.optional().describe('Address or CIDR (IPv4 or IPv6) the connection comes from (the remote for "in", the VM for "out").'),
  destination: IpCidr.optional().describe('Address or CIDR (IPv4 or IPv6) the connection goes to (the VM for "in", the remote for "out").'),
  sourceGroup: ObjectName.optional().describe('An AddressGroup the connection comes from (instead of source).'),
  destinationGroup: ObjectName.optional().describe('An AddressGroup the connection goes to (instead of destination).'),
  sourcePeers: PeerSelector.optional().describe('VMs the connection comes from: a department\'s members or VMFilters by label.'),
  destinationPeers: PeerSelector.optional().describe('VMs the connection goes to: a department\'s members or VMFilters by label.'),
  state: z
    .array(ConnState)
    .min(1)
    .max(4)
    .optional()
    .describe(
      'Not supported (rejected): every rule matches new connections, and replies and related ICMP errors of accepted ' +
        'connections pass on their own. Kept so that old manifests get a clear error.',
    ),
  priority: z
    .number()
    .int()
    .min(0)
    .max(99)
    .default(50)
    .describe('Order within the level\'s priority band, 0 (first) to 99 (last). Default 50.'),
  comment: withCel(z.string().max(MAX_COMMENT_LENGTH).regex(/^[^\x00-\x1f\x7f]*$/, 'must not contain control characters'), [xmlText])
    .optional()
    .describe('Free text shown in the libvirt filter (no control characters; libvirt keeps 256 bytes of UTF-8, longer text is cut with an ellipsis).'),
};

interface RuleFields {
  protocol: string;
  family?: 'ipv4' | 'ipv6' | undefined;
  ports?: unknown;
  icmp?: unknown;
  state?: unknown;
  source?: string | undefined;
  destination?: string | undefined;
  sourceGroup?: string | undefined;
  destinationGroup?: string | undefined;
  sourcePeers?: unknown;
  destinationPeers?: unknown;
}

const portsOnlyWithPortProtocols: CelRule<RuleFields> = {
  rule: "!has(self.ports) || self.protocol in ['tcp', 'udp', 'sctp']",
  message: 'ports are only allowed with protocol tcp, udp or sctp',
  path: ['ports'],
  holds: (v) => v.ports === undefined || ['tcp', 'udp', 'sctp'].includes(v.protocol),
};

/**
 * libvirt instantiates a rule that carries a `state` only in its own direction, with no rule for the
 * replies: an accept with `state: [NEW]` can never complete a connection, and a drop of ESTABLISHED
 * would eat the replies of other, allowed connections. Our rules mean connections instead.
 */
const noConnState: CelRule<RuleFields> = {
  rule: '!has(self.state)',
  message:
    'state is not supported: a rule matches new connections, and replies and related ICMP errors of accepted connections pass on their own',
  path: ['state'],
  holds: (v) => v.state === undefined,
};

const icmpOnlyWithIcmp: CelRule<RuleFields> = {
  rule: "!has(self.icmp) || self.protocol == 'icmp'",
  message: 'icmp (type and code) is only allowed with protocol icmp',
  path: ['icmp'],
  holds: (v) => v.icmp === undefined || v.protocol === 'icmp',
};

/** An address of one family on a rule restricted to the other can match nothing: refused. */
const addressFamilyRules = (field: 'source' | 'destination'): CelRule<RuleFields>[] => [
  {
    rule: `!has(self.${field}) || !has(self.family) || self.${field}.contains(':') == (self.family == 'ipv6')`,
    message: `${field} is of the other IP family than the rule's family (an IPv6 CIDR on an IPv4-only rule, or the reverse)`,
    path: [field],
    holds: (v) => v[field] === undefined || v.family === undefined || isIpv6Text(v[field]!) === (v.family === 'ipv6'),
  },
];

const sameFamilyAddresses: CelRule<RuleFields> = {
  rule: "!has(self.source) || !has(self.destination) || self.source.contains(':') == self.destination.contains(':')",
  message: 'source and destination must be of the same IP family',
  path: ['destination'],
  holds: (v) => v.source === undefined || v.destination === undefined || isIpv6Text(v.source) === isIpv6Text(v.destination),
};

const count = (...fields: string[]): string => fields.map((f) => `(has(self.${f}) ? 1 : 0)`).join(' + ');
const present = (v: RuleFields, ...fields: (keyof RuleFields)[]): number => fields.filter((f) => v[f] !== undefined).length;

const oneSourceKind: CelRule<RuleFields> = {
  rule: `${count('source', 'sourceGroup', 'sourcePeers')} <= 1`,
  message: 'at most one of source, sourceGroup and sourcePeers',
  holds: (v) => present(v, 'source', 'sourceGroup', 'sourcePeers') <= 1,
};
const oneDestinationKind: CelRule<RuleFields> = {
  rule: `${count('destination', 'destinationGroup', 'destinationPeers')} <= 1`,
  message: 'at most one of destination, destinationGroup and destinationPeers',
  holds: (v) => present(v, 'destination', 'destinationGroup', 'destinationPeers') <= 1,
};
/** libvirt matches one kernel IP set per rule (its `ipset` attribute): a rule names one group or peer set. */
const oneAddressSet: CelRule<RuleFields> = {
  rule: `${count('sourceGroup', 'destinationGroup', 'sourcePeers', 'destinationPeers')} <= 1`,
  message: 'a rule can match one address group or peer selector (libvirt matches one IP set per rule): split it into two rules',
  holds: (v) => present(v, 'sourceGroup', 'destinationGroup', 'sourcePeers', 'destinationPeers') <= 1,
};

/** ICMP messages conntrack tracks as requests (the only ICMP a group rule can match: its set carries the type). */
const ICMP_REQUEST_NAMES = ['echo-request', 'timestamp-request'];
const ICMP_REQUEST_TYPES = [8, 13, 15, 17, 128, 139];

/**
 * libvirt (9.0) keeps a rule's kernel IP set only on protocol `all`, so a group rule is an `all`
 * rule whose set also carries the ports (or the ICMP type): it can say protocol all, or name ports,
 * or an ICMP request type; not "every port of tcp" (65,536 set entries per address).
 */
const groupRuleMatchable: CelRule<RuleFields> = {
  rule:
    `${count('sourceGroup', 'destinationGroup', 'sourcePeers', 'destinationPeers')} == 0 || self.protocol == 'all' || ` +
    "(self.protocol in ['tcp', 'udp', 'sctp'] && has(self.ports) && size(self.ports) > 0) || " +
    `(self.protocol == 'icmp' && has(self.icmp) && ((has(self.icmp.name) && self.icmp.name in ${JSON.stringify(ICMP_REQUEST_NAMES).replace(/"/g, "'")}) || ` +
    `(has(self.icmp.type) && self.icmp.type in ${JSON.stringify(ICMP_REQUEST_TYPES)})))`,
  message:
    'a rule with an address group or peer selector needs protocol all, ports (tcp, udp, sctp) or an ICMP request type (echo-request): ' +
    'libvirt matches an IP set only on protocol all, so the set carries the ports',
  path: ['protocol'],
  holds: (v) => {
    if (present(v, 'sourceGroup', 'destinationGroup', 'sourcePeers', 'destinationPeers') === 0 || v.protocol === 'all') return true;
    if (['tcp', 'udp', 'sctp'].includes(v.protocol)) return Array.isArray(v.ports) && v.ports.length > 0;
    const icmp = v.icmp as { name?: string; type?: number } | undefined;
    return v.protocol === 'icmp' && !!icmp && (ICMP_REQUEST_NAMES.includes(icmp.name ?? '') || ICMP_REQUEST_TYPES.includes(icmp.type ?? -1));
  },
};

const customRuleChecks: CelRule<RuleFields>[] = [
  portsOnlyWithPortProtocols,
  noConnState,
  icmpOnlyWithIcmp,
  ...(icmpFamilyRules as CelRule<RuleFields>[]),
  ...addressFamilyRules('source'),
  ...addressFamilyRules('destination'),
  sameFamilyAddresses,
  oneSourceKind,
  oneDestinationKind,
  oneAddressSet,
  groupRuleMatchable,
];

/** A hand-written rule. The compiler places it in its level's priority band (docs/priorities.md). */
export const CustomRule = withCel(z.object(customRuleShape).strict(), customRuleChecks);

/** A department's rule: `enforced` puts it above the VMs' own rules. */
export const DepartmentRule = withCel(
  z
    .object({
      ...customRuleShape,
      enforced: z.boolean().default(false).describe("When true, the rule wins over the VMs' own rules and overrides."),
    })
    .strict(),
  customRuleChecks,
);
export type DepartmentRule = z.infer<typeof DepartmentRule>;
export type CustomRule = z.infer<typeof CustomRule>;
export type CustomRuleInput = z.input<typeof CustomRule>;

export const CustomRules = z.array(CustomRule).max(MAX_CUSTOM_RULES);

/** metav1.Condition. */
export const Condition = z.object({
  type: z.string().max(316),
  status: z.enum(['True', 'False', 'Unknown']),
  observedGeneration: z.number().int().min(0).optional(),
  lastTransitionTime: z.string(),
  reason: z.string().max(1024),
  message: z.string().max(32768),
});
export type Condition = z.infer<typeof Condition>;

export const Conditions = z
  .array(Condition)
  .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
  .describe('Standard conditions; see docs/status.md for every type and reason.');

/** Antrea-style realization counts, aggregated from the per-node agents. */
export const Realization = z.object({
  desired: z.number().int().min(0).describe('VMs that should carry this policy.'),
  applied: z.number().int().min(0).describe('VMs whose node reports the current filter applied.'),
  failed: z.number().int().min(0).describe('VMs whose node reports an error.'),
});
export type Realization = z.infer<typeof Realization>;

/** The part of metadata we read. Everything else passes through untouched. */
export const ObjectMeta = z.looseObject({
  name: z.string(),
  generation: z.number().int().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  finalizers: z.array(z.string()).optional(),
  deletionTimestamp: z.string().optional(),
});
export type ObjectMeta = z.infer<typeof ObjectMeta>;
