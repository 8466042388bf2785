import { icmpTypeNumber, type CustomRule, type IcmpMatch, type IpFamily, type RuleAction, type ServicePolicySpec } from '../api/index.js';
import { ICMP_REQUESTS } from './conntrack.js';
import type { Family } from './instantiate.js';
import { familyOfAddress, parseCidr } from './ip.js';
import type { Cidr, Level, NwProtocol, NwRule, RuleOrigin, ServiceDirection, SetPort } from './model.js';
import { addressSetName, portSetName } from './names.js';
import { peerGroupName } from './peers.js';

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

const ELEMENTS: Record<'tcp' | 'udp' | 'sctp' | 'icmp' | 'all', Record<Family, NwProtocol>> = {
  tcp: { 4: 'tcp', 6: 'tcp-ipv6' },
  udp: { 4: 'udp', 6: 'udp-ipv6' },
  sctp: { 4: 'sctp', 6: 'sctp-ipv6' },
  icmp: { 4: 'icmp', 6: 'icmpv6' },
  all: { 4: 'all', 6: 'all-ipv6' },
};

const FAMILY_NUMBER: Record<IpFamily, Family> = { ipv4: 4, ipv6: 6 };

/** A rule of ours before it becomes libvirt rules: one direction, one port range, any families. */
interface RuleShape {
  action: RuleAction;
  direction: 'in' | 'out';
  protocol: 'tcp' | 'udp' | 'sctp' | 'icmp' | 'all';
  families: readonly Family[];
  range?: { dstPortStart: number; dstPortEnd: number } | undefined;
  icmp?: IcmpMatch | undefined;
  src?: Cidr | undefined;
  dst?: Cidr | undefined;
  /** An AddressGroup matched through its kernel set, by the packet's source or destination. */
  group?: { name: string; flags: 'src' | 'dst' } | undefined;
  priority: number;
  comment: string;
  origin: RuleOrigin;
}

const opposite = (d: 'in' | 'out'): 'in' | 'out' => (d === 'in' ? 'out' : 'in');

/**
 * The libvirt rules of one shape, per family:
 * - without an ICMP type, as connectionMatch says;
 * - an ICMP request type (echo, timestamp: conntrack starts a connection with it) like a connection;
 *   but libvirt instantiates a rule with an ICMP type in its own direction only, with no rule for
 *   the replies, so an accept gets a companion: the reply type in the other direction, ESTABLISHED
 *   only (replies to requests that were let through, nothing else);
 * - any other ICMP type (errors, router and neighbour discovery) is no connection: conntrack calls
 *   it UNTRACKED or INVALID, which `--ctstate NEW,ESTABLISHED` never matches, so the rule matches
 *   it with no state at all (statematch='false'), in its own direction.
 * A type that does not exist in a family (neighbour solicitation in IPv4) gives no rule there.
 */
function shapeRules(shape: RuleShape): NwRule[] {
  const out: NwRule[] = [];
  for (const family of shape.families) {
    const icmpType = shape.icmp ? icmpTypeNumber(shape.icmp, family) : undefined;
    if (shape.icmp && icmpType === undefined) continue;
    const rule: NwRule = {
      action: shape.action,
      direction: shape.direction,
      priority: shape.priority,
      protocol: ELEMENTS[shape.protocol][family],
      ...(shape.range ?? {}),
      ...(shape.src ? { src: shape.src } : {}),
      ...(shape.dst ? { dst: shape.dst } : {}),
      ...(icmpType !== undefined ? { icmpType } : {}),
      ...(icmpType !== undefined && shape.icmp?.code !== undefined ? { icmpCode: shape.icmp.code } : {}),
      comment: shape.comment,
      origin: shape.origin,
    };
    const reply = icmpType !== undefined ? ICMP_REQUESTS[family].get(icmpType) : undefined;
    const match = shape.group ? groupMatch(rule, shape.group, family) : rule;
    if (icmpType === undefined || reply !== undefined) {
      out.push({ ...match, ...connectionMatch(shape.action) });
      if (reply !== undefined && shape.action === 'accept') {
        // ESTABLISHED only lets replies to requests that passed: the request's addresses (or set) need not be repeated.
        const { icmpCode: _code, src: _src, dst: _dst, ...request } = rule;
        out.push({ ...request, direction: opposite(shape.direction), icmpType: reply, state: ['ESTABLISHED'] });
      }
    } else {
      out.push({ ...match, noStateMatch: true });
    }
  }
  return out;
}

/**
 * A rule that matches a group, as libvirt can express it: an `all` rule whose kernel set carries
 * the rest (the model's SetMatch). Protocol all needs the addresses only (`hash:net`); ports or an
 * ICMP request type become the set's second dimension (`hash:net,port`, the port on the
 * connection's destination side). The schema allows nothing else with a group (api/common.ts).
 */
function groupMatch(rule: NwRule, group: { name: string; flags: 'src' | 'dst' }, family: Family): NwRule {
  const { dstPortStart, dstPortEnd, icmpType, icmpCode, ...rest } = rule;
  const all = ELEMENTS.all[family];
  if (rule.protocol === all) return { ...rest, set: { name: addressSetName(group.name, family), flags: group.flags, group: group.name } };
  const ports: SetPort[] =
    icmpType !== undefined
      ? [{ protocol: family === 4 ? 'icmp' : 'icmpv6', type: icmpType, code: icmpCode ?? 0 }]
      : [{ protocol: basicProtocol(rule.protocol), start: dstPortStart!, end: dstPortEnd ?? dstPortStart! }];
  return {
    ...rest,
    protocol: all,
    set: { name: portSetName(group.name, family, setPortsText(ports)), flags: group.flags === 'src' ? 'src,dst' : 'dst,dst', group: group.name, ports },
  };
}

const basicProtocol = (p: NwProtocol): 'tcp' | 'udp' | 'sctp' => p.replace('-ipv6', '') as 'tcp' | 'udp' | 'sctp';

/** A set's ports as ipset writes the second dimension of an entry: `tcp:22`, `udp:1000-2000`, `icmp:8/0`. */
export function setPortText(p: SetPort): string {
  if ('type' in p) return `${p.protocol}:${p.type}/${p.code}`;
  return p.start === p.end ? `${p.protocol}:${p.start}` : `${p.protocol}:${p.start}-${p.end}`;
}
export const setPortsText = (ports: readonly SetPort[]): string => ports.map(setPortText).join(' ');

/**
 * The rules that allow or deny one direction of one service: one rule per port entry and family,
 * ranges kept whole (the reference system dropped entries that had no single port, such as FTP
 * passive). `use` is the VM as client, `provide` the VM as server; see connectionDirection for port
 * sides. A port entry applies to both IP families unless it names one.
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
  const comment = clampComment(`${service.name} ${direction} ${decision} by ${who}`);
  return service.spec.ports.flatMap((p) =>
    shapeRules({
      action,
      direction: connectionDirection(direction, p.side ?? 'server'),
      protocol: p.protocol,
      families: p.family ? [FAMILY_NUMBER[p.family]] : [4, 6],
      range: p.port !== undefined ? { dstPortStart: p.port, dstPortEnd: p.endPort ?? p.port } : undefined,
      icmp: p.icmp,
      priority: at.priority,
      comment,
      origin,
    }),
  );
}

/** The families a custom rule applies to: its own, else its address's, else both. */
function ruleFamilies(rule: CustomRule): Family[] {
  if (rule.family) return [FAMILY_NUMBER[rule.family]];
  const address = rule.source ?? rule.destination;
  if (address !== undefined) return [familyOfAddress(address)];
  return [4, 6];
}

/** The AddressGroup a rule matches through a kernel set: a named group, or the group of a peer selector. */
export function ruleGroup(rule: CustomRule): { name: string; flags: 'src' | 'dst' } | undefined {
  if (rule.sourceGroup) return { name: rule.sourceGroup, flags: 'src' };
  if (rule.destinationGroup) return { name: rule.destinationGroup, flags: 'dst' };
  if (rule.sourcePeers) return { name: peerGroupName(rule.sourcePeers), flags: 'src' };
  if (rule.destinationPeers) return { name: peerGroupName(rule.destinationPeers), flags: 'dst' };
  return undefined;
}

/**
 * The libvirt rules of one custom rule: one per port range and family, and `inout` as one `in` and
 * one `out` rule. libvirt itself reads `inout` with ports as the VM's own port in both chains, with
 * no connection tracking; our documented meaning is "connections in either direction".
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
  const families = ruleFamilies(rule);
  const src = rule.source !== undefined ? parseCidr(rule.source) : undefined;
  const dst = rule.destination !== undefined ? parseCidr(rule.destination) : undefined;
  const group = ruleGroup(rule);
  return directions.flatMap((direction) =>
    ranges.flatMap((range) =>
      shapeRules({ action: rule.action, direction, protocol: rule.protocol, families, range, icmp: rule.icmp, src, dst, group, priority: at.priority, comment, origin }),
    ),
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
  // Both families. libvirt's RNG schema has no `state` on IPv6 protocol elements, but its parser
  // and driver handle it (measured on 9.0): the libvirt client defines such filters without the
  // schema check and reads them back (docs/libvirt-client.md).
  const related: NwRule[] = (['all', 'all-ipv6'] as const).map((protocol) => ({
    action: 'accept',
    direction: 'inout',
    priority: at.priority,
    protocol,
    state: ['RELATED'],
    comment: clampComment(`ICMP errors of allowed connections (${at.level} ${at.owner})`),
    origin: { kind: 'base', level: at.level, owner: at.owner, what: 'related' },
  }));
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
