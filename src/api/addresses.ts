import { z } from 'zod';
import { withCel } from './cel.js';

/**
 * IP addresses and CIDRs of both families, as patterns that the API server (OpenAPI `pattern`, Go's
 * RE2) and zod (JavaScript) read the same way. CEL's IP library (`isCIDR()`) would be shorter but
 * needs Kubernetes 1.31 for CRD validation; a pattern works on every supported API server.
 */
const IPV4_OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4_CORE = `${IPV4_OCTET}(\\.${IPV4_OCTET}){3}`;
const H = '[0-9a-fA-F]{1,4}';
/** Every textual form of RFC 4291 section 2.2 (no zone index), embedded IPv4 included. */
const IPV6_CORE =
  '(' +
  [
    `(${H}:){7}${H}`,
    `(${H}:){1,7}:`,
    `(${H}:){1,6}:${H}`,
    `(${H}:){1,5}(:${H}){1,2}`,
    `(${H}:){1,4}(:${H}){1,3}`,
    `(${H}:){1,3}(:${H}){1,4}`,
    `(${H}:){1,2}(:${H}){1,5}`,
    `${H}:(:${H}){1,6}`,
    `:((:${H}){1,7}|:)`,
    `(${H}:){6}${IPV4_CORE}`,
    `(${H}:){1,5}:${IPV4_CORE}`,
    `::(${H}:){0,5}${IPV4_CORE}`,
  ].join('|') +
  ')';

export const IPV4_PATTERN = `^${IPV4_CORE}$`;
export const IPV4_CIDR_PATTERN = `^${IPV4_CORE}(/(3[0-2]|[12]?[0-9]))?$`;
export const IPV6_PATTERN = `^${IPV6_CORE}$`;
export const IPV6_CIDR_PATTERN = `^${IPV6_CORE}(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?$`;
/** Either family; the address decides which prefix lengths are valid. */
export const IP_CIDR_PATTERN = `^((${IPV4_CORE}(/(3[0-2]|[12]?[0-9]))?)|(${IPV6_CORE}(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?))$`;

export const Ipv4Address = z.string().max(15).regex(new RegExp(IPV4_PATTERN), 'must be an IPv4 address');
export const Ipv6Address = z.string().max(45).regex(new RegExp(IPV6_PATTERN), 'must be an IPv6 address such as fd00::10');
/** IPv4 address with an optional prefix length; a bare address means /32. */
export const Ipv4Cidr = z
  .string()
  .max(18)
  .regex(new RegExp(IPV4_CIDR_PATTERN), 'must be an IPv4 address or CIDR such as 10.0.0.0/8');
/** An IPv4 or IPv6 address or CIDR; a bare address means /32 or /128. */
export const IpCidr = z
  .string()
  .max(49)
  .regex(new RegExp(IP_CIDR_PATTERN), 'must be an IPv4 or IPv6 address or CIDR such as 10.0.0.0/8 or fd00::/64');

export const isIpv6Text = (text: string): boolean => text.includes(':');

/** The IP families a rule or a service port applies to; absent means both. */
export const IpFamily = z.enum(['ipv4', 'ipv6']);
export type IpFamily = z.infer<typeof IpFamily>;

/**
 * ICMP message types by name, with their numbers in ICMP (IPv4) and ICMPv6. A name lets one rule
 * or service port cover both families; a type that exists in one family only applies to that one.
 */
export const ICMP_TYPES = {
  'echo-request': { v4: 8, v6: 128 },
  'echo-reply': { v4: 0, v6: 129 },
  'destination-unreachable': { v4: 3, v6: 1 },
  'packet-too-big': { v6: 2 },
  'time-exceeded': { v4: 11, v6: 3 },
  'parameter-problem': { v4: 12, v6: 4 },
  redirect: { v4: 5, v6: 137 },
  'router-solicitation': { v4: 10, v6: 133 },
  'router-advertisement': { v4: 9, v6: 134 },
  'neighbor-solicitation': { v6: 135 },
  'neighbor-advertisement': { v6: 136 },
  'timestamp-request': { v4: 13 },
  'timestamp-reply': { v4: 14 },
} as const satisfies Record<string, { v4?: number; v6?: number }>;
export type IcmpTypeName = keyof typeof ICMP_TYPES;
export const ICMP_TYPE_NAMES = Object.keys(ICMP_TYPES) as [IcmpTypeName, ...IcmpTypeName[]];
export const IPV6_ONLY_ICMP = ICMP_TYPE_NAMES.filter((n) => !('v4' in ICMP_TYPES[n]));
export const IPV4_ONLY_ICMP = ICMP_TYPE_NAMES.filter((n) => !('v6' in ICMP_TYPES[n]));

const celList = (names: readonly string[]): string => `[${names.map((n) => `'${n}'`).join(', ')}]`;

/** One ICMP message type (by name, or by number for one family) and optionally its code. */
export const IcmpMatch = withCel(
  z
    .object({
      name: z.enum(ICMP_TYPE_NAMES).optional().describe('Message type by name, for both families: echo-request, destination-unreachable, ...'),
      type: z.number().int().min(0).max(255).optional().describe('Message type by number; needs a single family (`family`).'),
      code: z.number().int().min(0).max(255).optional().describe('Message code (e.g. 4 = fragmentation needed of destination-unreachable).'),
    })
    .strict(),
  [
    {
      rule: 'has(self.name) != has(self.type)',
      message: 'exactly one of name or type must be set',
      holds: (v) => (v.name === undefined) !== (v.type === undefined),
    },
  ],
);
export type IcmpMatch = z.infer<typeof IcmpMatch>;

interface FamilyAndIcmp {
  family?: IpFamily | undefined;
  icmp?: IcmpMatch | undefined;
}

/** Rules shared by custom rules and service ports about ICMP and the family. */
export const icmpFamilyRules = [
  {
    rule: '!has(self.icmp) || !has(self.icmp.type) || has(self.family)',
    message: 'an ICMP type given by number needs a family (ipv4 or ipv6): the numbers differ between ICMP and ICMPv6; or use icmp.name',
    path: ['icmp'],
    holds: (v: FamilyAndIcmp) => v.icmp?.type === undefined || v.family !== undefined,
  },
  {
    rule: `!has(self.icmp) || !has(self.icmp.name) || !has(self.family) || self.family != 'ipv4' || !(self.icmp.name in ${celList(IPV6_ONLY_ICMP)})`,
    message: 'this ICMP type exists only in ICMPv6 (family ipv6)',
    path: ['icmp'],
    holds: (v: FamilyAndIcmp) => !(v.icmp?.name && v.family === 'ipv4' && IPV6_ONLY_ICMP.includes(v.icmp.name)),
  },
  {
    rule: `!has(self.icmp) || !has(self.icmp.name) || !has(self.family) || self.family != 'ipv6' || !(self.icmp.name in ${celList(IPV4_ONLY_ICMP)})`,
    message: 'this ICMP type exists only in ICMP for IPv4 (family ipv4)',
    path: ['icmp'],
    holds: (v: FamilyAndIcmp) => !(v.icmp?.name && v.family === 'ipv6' && IPV4_ONLY_ICMP.includes(v.icmp.name)),
  },
];

/** The ICMP type number of a match in one family, or undefined when the type does not exist there. */
export function icmpTypeNumber(match: IcmpMatch, family: 4 | 6): number | undefined {
  if (match.type !== undefined) return match.type;
  const entry: { v4?: number; v6?: number } = ICMP_TYPES[match.name!];
  return family === 4 ? entry.v4 : entry.v6;
}
