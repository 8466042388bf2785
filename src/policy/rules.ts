import type { CustomRule, RuleAction, ServicePolicySpec } from '../api/index.js';
import type { Cidr, Level, NwRule, RuleOrigin, ServiceDirection } from './model.js';

/**
 * libvirt keeps at most 256 bytes of a comment: measured on libvirt 9.0, a longer comment is cut at
 * byte 256 (not refused), in the middle of a multi-byte character if one straddles the limit.
 */
export const MAX_LIBVIRT_COMMENT = 256;

/**
 * libvirt reads an attribute value that starts with `$` as a variable reference, comments included:
 * `$%` is refused at define time ("comment has illegal value") and `$NAME` would need a filter
 * parameter NAME when the filter is bound. A leading space keeps the text and makes it plain text.
 */
function commentText(text: string): string {
  return text.startsWith('$') ? ` ${text}` : text;
}

const utf8Length = (text: string): number => Buffer.byteLength(text, 'utf8');
const ELLIPSIS = '…';

/**
 * The comment as libvirt will store it: at most MAX_LIBVIRT_COMMENT bytes of UTF-8, cut on a
 * character (code point) boundary and marked with an ellipsis. Clamping by UTF-16 units instead
 * left multi-byte comments longer than libvirt keeps, so the stored filter never equalled the
 * desired one and was redefined at every resync.
 */
export function clampComment(text: string): string {
  const safe = commentText(text);
  if (utf8Length(safe) <= MAX_LIBVIRT_COMMENT) return safe;
  const budget = MAX_LIBVIRT_COMMENT - utf8Length(ELLIPSIS);
  let out = '';
  let bytes = 0;
  for (const ch of safe) {
    const n = utf8Length(ch);
    if (bytes + n > budget) break;
    out += ch;
    bytes += n;
  }
  return out + ELLIPSIS;
}

export function parseCidr(text: string): Cidr {
  const [address, prefix] = text.split('/');
  return { address: address!, prefix: prefix === undefined ? 32 : Number(prefix) };
}

/**
 * The direction of the connection a service port opens. A server-side port is connected to by
 * clients: using the service opens it outbound, providing it inbound. A client-side port (DHCP's 68)
 * is where the server sends to, so the directions swap.
 */
function connectionDirection(direction: ServiceDirection, side: 'server' | 'client'): 'in' | 'out' {
  const asClient = direction === 'use';
  return (side === 'server') === asClient ? 'out' : 'in';
}

/**
 * How an allow or a deny becomes libvirt rules, so that the kernel does what the policy says:
 * - an accept carries no `state`: libvirt then matches NEW and ESTABLISHED packets of connections
 *   started in the rule's direction and adds the swapped rule for their replies (ESTABLISHED,
 *   reply direction) in the opposite chain;
 * - a drop or reject carries `state='NEW'`: libvirt then instantiates it in its own direction only
 *   and it stops new connections. Without it libvirt adds a swapped, stateless copy to the opposite
 *   chain, which would drop the replies of unrelated allowed connections (a deny of ports
 *   1024-65535 inbound would kill every outbound connection from an ephemeral port).
 */
function connectionMatch(action: RuleAction): Pick<NwRule, 'state'> {
  return action === 'accept' ? {} : { state: ['NEW'] };
}

/**
 * The rules that allow or deny one direction of one service: one rule per port entry, ranges kept
 * whole (the reference system dropped entries that had no single port, such as FTP passive).
 * `use` is the VM as client, `provide` the VM as server; see connectionDirection for port sides.
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
  const action: RuleAction = decision === 'allow' ? 'accept' : 'drop';
  return service.spec.ports.map((p) => ({
    action,
    direction: connectionDirection(direction, p.side ?? 'server'),
    priority: at.priority,
    protocol: p.protocol,
    ...(p.port !== undefined ? { dstPortStart: p.port, dstPortEnd: p.endPort ?? p.port } : {}),
    ...connectionMatch(action),
    comment: clampComment(`${service.name} ${direction} ${decision} by ${who}`),
    origin,
  }));
}

/**
 * The libvirt rules of one custom rule: one per port range, and `inout` as one `in` and one `out`
 * rule. libvirt itself reads `inout` with ports as the VM's own port in both chains, with no
 * connection tracking; our documented meaning is "connections in either direction".
 * `priority` is the rule's libvirt priority, unique per custom rule (compile.ts ranks them).
 */
export function customRules(
  rule: CustomRule,
  at: { level: Level; owner: string; priority: number; index: number; enforced: boolean },
): NwRule[] {
  const origin: RuleOrigin = { kind: 'custom', level: at.level, owner: at.owner, index: at.index, enforced: at.enforced };
  const comment = clampComment(rule.comment ?? `${at.level} ${at.owner} rule ${at.index}${at.enforced ? ' (enforced)' : ''}`);
  const directions: ('in' | 'out')[] = rule.direction === 'inout' ? ['in', 'out'] : [rule.direction];
  const ranges: ({ dstPortStart: number; dstPortEnd: number } | undefined)[] =
    rule.ports && rule.ports.length > 0 ? rule.ports.map((p) => ({ dstPortStart: p.port, dstPortEnd: p.endPort ?? p.port })) : [undefined];
  return directions.flatMap((direction) =>
    ranges.map((range) => ({
      action: rule.action,
      direction,
      priority: at.priority,
      protocol: rule.protocol,
      ...(range ?? {}),
      ...(rule.source !== undefined ? { src: parseCidr(rule.source) } : {}),
      ...(rule.destination !== undefined ? { dst: parseCidr(rule.destination) } : {}),
      ...connectionMatch(rule.action),
      comment,
      origin,
    })),
  );
}

/**
 * The catch-all rules that make a chain fail closed: all IPv4 and all IPv6 traffic, both directions,
 * with no state match, so that libvirt puts them in every chain of the interface.
 */
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

/** ICMPv6 neighbour solicitation and advertisement: IPv6's ARP. */
export const ND_TYPES = [135, 136] as const;

/**
 * What every VM chain starts with:
 * - conntrack RELATED packets (IPv4): ICMP errors that belong to an allowed connection
 *   (port unreachable makes a refused connection fail fast, fragmentation-needed / packet-too-big
 *   makes path-MTU discovery work). RELATED needs an existing, allowed connection.
 * - IPv6 neighbour discovery (solicitations and advertisements), both directions: IPv6's ARP, which
 *   passes for IPv4 anyway because our filters are IP-only. Without it the neighbours of a VM cannot
 *   resolve it, and an IPv6 reject never reaches anyone. conntrack does not track ND, so these rules
 *   carry no state match; libvirt instantiates an ICMP rule with a type in its own direction only.
 */
export function baseRules(at: { level: Level; owner: string; priority: number }): NwRule[] {
  // IPv4 only: libvirt's RNG schema has no `state` on IPv6 protocol elements (its parser and
  // driver accept one: measured), so a validated define refuses it. No IPv6 connection can be
  // allowed yet, so no IPv6 packet can be RELATED to an allowed one.
  const related: NwRule[] = [
    {
      action: 'accept',
      direction: 'inout',
      priority: at.priority,
      protocol: 'all',
      state: ['RELATED'],
      comment: clampComment(`ICMP errors of allowed connections (${at.level} ${at.owner})`),
      origin: { kind: 'base', level: at.level, owner: at.owner, what: 'related' },
    },
  ];
  const nd: NwRule[] = ND_TYPES.flatMap((icmpType) =>
    (['in', 'out'] as const).map((direction) => ({
      action: 'accept' as const,
      direction,
      priority: at.priority,
      protocol: 'icmpv6' as const,
      icmpType,
      noStateMatch: true as const,
      comment: clampComment(`IPv6 neighbour ${icmpType === 135 ? 'solicitation' : 'advertisement'} (${at.level} ${at.owner})`),
      origin: { kind: 'base' as const, level: at.level, owner: at.owner, what: 'neighbor-discovery' as const },
    })),
  );
  return [...related, ...nd];
}

/** Stable sort by priority: libvirt's order, and equal priorities keep generation order. */
export function byPriority(rules: NwRule[]): NwRule[] {
  return rules
    .map((r, i) => ({ r, i }))
    .sort((a, b) => a.r.priority - b.r.priority || a.i - b.i)
    .map(({ r }) => r);
}
