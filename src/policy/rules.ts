import type { CustomRule, ServicePolicySpec } from '../api/index.js';
import type { Cidr, Level, NwRule, RuleOrigin, ServiceDirection } from './model.js';

/** libvirt rejects longer comments. */
export const MAX_LIBVIRT_COMMENT = 256;

export function clampComment(text: string): string {
  return text.length <= MAX_LIBVIRT_COMMENT ? text : text.slice(0, MAX_LIBVIRT_COMMENT - 1) + '…';
}

export function parseCidr(text: string): Cidr {
  const [address, prefix] = text.split('/');
  return { address: address!, prefix: prefix === undefined ? 32 : Number(prefix) };
}

const DIRECTION_OF: Record<ServiceDirection, 'in' | 'out'> = { use: 'out', provide: 'in' };

/**
 * The rules that allow or deny one direction of one service: one rule per port entry, ranges kept
 * whole (the reference system dropped entries that had no single port, such as FTP passive).
 * `use` is the VM as client (outbound to the service port), `provide` the VM as server (inbound).
 */
export function serviceRules(
  service: { name: string; spec: ServicePolicySpec },
  direction: ServiceDirection,
  decision: 'allow' | 'deny',
  at: { level: Level; owner: string; priority: number; enforced: boolean },
): NwRule[] {
  const origin: RuleOrigin = {
    kind: 'service',
    level: at.level,
    owner: at.owner,
    service: service.name,
    direction,
    decision,
    enforced: at.enforced,
  };
  const who = at.level === 'global' ? 'global' : `${at.level} ${at.owner}${at.enforced ? ' (enforced)' : ''}`;
  return service.spec.ports.map((p) => ({
    action: decision === 'allow' ? 'accept' : 'drop',
    direction: DIRECTION_OF[direction],
    priority: at.priority,
    protocol: p.protocol,
    ...(p.port !== undefined ? { dstPortStart: p.port, dstPortEnd: p.endPort ?? p.port } : {}),
    comment: clampComment(`${service.name} ${direction} ${decision} by ${who}`),
    origin,
  }));
}

/** One rule per port range of a custom rule (or one rule when it has no ports). */
export function customRules(
  rule: CustomRule,
  at: { level: Level; owner: string; base: number; index: number; enforced: boolean },
): NwRule[] {
  const origin: RuleOrigin = { kind: 'custom', level: at.level, owner: at.owner, index: at.index, enforced: at.enforced };
  const comment = clampComment(rule.comment ?? `${at.level} ${at.owner} rule ${at.index}${at.enforced ? ' (enforced)' : ''}`);
  const base: NwRule = {
    action: rule.action,
    direction: rule.direction,
    priority: at.base + rule.priority,
    protocol: rule.protocol,
    ...(rule.source !== undefined ? { src: parseCidr(rule.source) } : {}),
    ...(rule.destination !== undefined ? { dst: parseCidr(rule.destination) } : {}),
    ...(rule.state !== undefined ? { state: [...rule.state] } : {}),
    comment,
    origin,
  };
  if (!rule.ports || rule.ports.length === 0) return [base];
  return rule.ports.map((p) => ({ ...base, dstPortStart: p.port, dstPortEnd: p.endPort ?? p.port }));
}

/** The catch-all rules that make a chain fail closed: all IPv4 and all IPv6 traffic. */
export function defaultRules(action: 'drop' | 'reject', at: { level: Level; owner: string; priority: number }): NwRule[] {
  return (['all', 'all-ipv6'] as const).map((protocol) => ({
    action,
    direction: 'inout',
    priority: at.priority,
    protocol,
    comment: clampComment(`default ${action} (${at.level} ${at.owner}): nothing above allowed it`),
    origin: { kind: 'default', level: at.level, owner: at.owner },
  }));
}

/** Stable sort by priority: libvirt's order, and equal priorities keep generation order. */
export function byPriority(rules: NwRule[]): NwRule[] {
  return rules
    .map((r, i) => ({ r, i }))
    .sort((a, b) => a.r.priority - b.r.priority || a.i - b.i)
    .map(({ r }) => r);
}
