import { PRIORITY_MAX, PRIORITY_MIN } from './bands.js';
import type { NwFilter, NwRule } from './model.js';
import { isXmlText } from '../api/common.js';
import { isIpv6 } from './ip.js';
import { MAX_LIBVIRT_COMMENT } from './rules.js';

export const RULE_WARNING_THRESHOLD = 50;
export const DEPTH_WARNING_THRESHOLD = 3;

const ACTIONS = new Set(['accept', 'drop', 'reject']);
const DIRECTIONS = new Set(['in', 'out', 'inout']);
const PROTOCOLS = new Set(['tcp', 'udp', 'sctp', 'icmp', 'all', 'tcp-ipv6', 'udp-ipv6', 'sctp-ipv6', 'icmpv6', 'all-ipv6']);
const ICMP_PROTOCOLS = new Set(['icmp', 'icmpv6']);
const PORT_PROTOCOLS = new Set(['tcp', 'udp', 'sctp', 'tcp-ipv6', 'udp-ipv6', 'sctp-ipv6']);
const IPV6_PROTOCOLS = new Set(['tcp-ipv6', 'udp-ipv6', 'sctp-ipv6', 'icmpv6', 'all-ipv6']);
/** libvirt's ipset-name-type (nwfilter.rng). */
const SET_NAME = /^[a-zA-Z0-9_.:\-+ ]{1,31}$/;
const STATES = new Set(['NEW', 'ESTABLISHED', 'RELATED', 'INVALID']);

export interface FilterIssue {
  severity: 'error' | 'warning';
  filter: string;
  reason: string;
  message: string;
}

const isPort = (n: number | undefined): boolean => n !== undefined && Number.isInteger(n) && n >= 1 && n <= 65535;

/**
 * What libvirt would silently change or accept when it should not: priority 5000 becomes 500,
 * dstportend < dstportstart passes even with validation, an unknown protocol element vanishes and
 * leaves a match-everything rule. We refuse all of these before libvirt sees them.
 */
export function ruleProblems(rule: NwRule): string[] {
  const out: string[] = [];
  if (!ACTIONS.has(rule.action)) out.push(`unknown action "${rule.action}"`);
  if (!DIRECTIONS.has(rule.direction)) out.push(`unknown direction "${rule.direction}"`);
  if (!PROTOCOLS.has(rule.protocol)) out.push(`unknown protocol "${rule.protocol}"`);
  if (!Number.isInteger(rule.priority) || rule.priority < PRIORITY_MIN || rule.priority > PRIORITY_MAX) {
    out.push(`priority ${rule.priority} outside ${PRIORITY_MIN}..${PRIORITY_MAX}`);
  }
  if (rule.dstPortStart !== undefined || rule.dstPortEnd !== undefined) {
    if (!PORT_PROTOCOLS.has(rule.protocol)) out.push(`ports are not allowed with protocol ${rule.protocol}`);
    if (!isPort(rule.dstPortStart) || !isPort(rule.dstPortEnd ?? rule.dstPortStart)) out.push('port outside 1..65535');
    else if ((rule.dstPortEnd ?? rule.dstPortStart!) < rule.dstPortStart!) {
      out.push(`port range ${rule.dstPortStart}-${rule.dstPortEnd} is inverted`);
    }
  }
  const v6 = IPV6_PROTOCOLS.has(rule.protocol);
  const maxPrefix = v6 ? 128 : 32;
  for (const cidr of [rule.src, rule.dst]) {
    if (!cidr) continue;
    if (isIpv6(cidr.address) !== v6) out.push(`address ${cidr.address} is not of the family of protocol ${rule.protocol}`);
    if (!Number.isInteger(cidr.prefix) || cidr.prefix < 0 || cidr.prefix > maxPrefix) out.push(`prefix length ${cidr.prefix} outside 0..${maxPrefix}`);
  }
  if (rule.set) {
    if (!SET_NAME.test(rule.set.name)) out.push(`IP set name "${rule.set.name}" is not one libvirt accepts (1-31 of [a-zA-Z0-9_.:-+ ])`);
    if (!['src', 'dst', 'src,dst', 'dst,dst'].includes(rule.set.flags)) out.push(`IP set flags "${String(rule.set.flags)}" are not ours`);
    if (rule.protocol !== 'all' && rule.protocol !== 'all-ipv6') out.push(`an IP set match on protocol ${rule.protocol}: libvirt keeps it only on all and all-ipv6`);
  }
  if (rule.icmpCode !== undefined && (rule.icmpType === undefined || !Number.isInteger(rule.icmpCode) || rule.icmpCode < 0 || rule.icmpCode > 255)) {
    out.push('an ICMP code needs an ICMP type and must be in 0..255');
  }
  for (const s of rule.state ?? []) if (!STATES.has(s)) out.push(`unknown conntrack state "${s}"`);
  if (rule.icmpType !== undefined) {
    if (!ICMP_PROTOCOLS.has(rule.protocol)) out.push(`an ICMP type is not allowed with protocol ${rule.protocol}`);
    if (!Number.isInteger(rule.icmpType) || rule.icmpType < 0 || rule.icmpType > 255) out.push(`ICMP type ${rule.icmpType} outside 0..255`);
  }
  if (Buffer.byteLength(rule.comment, 'utf8') > MAX_LIBVIRT_COMMENT) out.push(`comment longer than ${MAX_LIBVIRT_COMMENT} bytes (UTF-8)`);
  // The schema refuses these; a looser CRD or a hand-made object must still never reach libvirt.
  if (!isXmlText(rule.comment)) out.push('comment contains characters XML 1.0 forbids (such as U+FFFE, U+FFFF or a control character)');
  return out;
}

export function validateFilter(filter: NwFilter): FilterIssue[] {
  const issues: FilterIssue[] = [];
  filter.rules.forEach((rule, i) => {
    for (const p of ruleProblems(rule)) {
      issues.push({ severity: 'error', filter: filter.name, reason: 'InvalidRule', message: `rule ${i}: ${p}` });
    }
  });
  if (filter.rules.length > RULE_WARNING_THRESHOLD) {
    issues.push({
      severity: 'warning',
      filter: filter.name,
      reason: 'ManyRules',
      message: `${filter.rules.length} rules (more than ${RULE_WARNING_THRESHOLD}): every change rebuilds a longer firewall`,
    });
  }
  return issues;
}

/**
 * Walks the references from `root`. Filters not in `filters` are libvirt's own (they must be in
 * `external`), otherwise the reference is missing: libvirt would accept it at define time and fail
 * only when attaching. Cycles are reported here rather than by libvirt's "would introduce a loop".
 */
export function validateTree(
  root: string,
  filters: ReadonlyMap<string, NwFilter>,
  external: ReadonlySet<string>,
): FilterIssue[] {
  const issues: FilterIssue[] = [];
  const onPath: string[] = [];
  const walk = (name: string, depth: number): void => {
    if (onPath.includes(name)) {
      issues.push({ severity: 'error', filter: root, reason: 'ReferenceCycle', message: `cycle: ${[...onPath, name].join(' -> ')}` });
      return;
    }
    const filter = filters.get(name);
    if (!filter) {
      if (!external.has(name)) {
        issues.push({ severity: 'error', filter: onPath.at(-1) ?? root, reason: 'MissingFilter', message: `references unknown filter "${name}"` });
      }
      return;
    }
    if (depth > DEPTH_WARNING_THRESHOLD) {
      issues.push({
        severity: 'warning',
        filter: root,
        reason: 'DeepReferences',
        message: `reference depth ${depth} exceeds ${DEPTH_WARNING_THRESHOLD} at ${name}`,
      });
    }
    onPath.push(name);
    for (const ref of filter.refs) walk(ref, depth + 1);
    onPath.pop();
  };
  walk(root, 1);
  return issues;
}
