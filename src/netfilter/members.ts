/**
 * Members of kernel IP sets in one canonical spelling, so that what we want and what `ipset save`
 * prints compare exactly as strings.
 *
 * Strict on purpose: ipset itself reads `010.0.0.1` as 8.0.0.1 (inet_aton's octal, measured; libvirt
 * does the same) and resolves anything that is not an address through DNS, so nothing that is not a
 * plain address may ever reach it. Both sides of a comparison go through the same parser, so the
 * canonical text only has to be canonical for this module (IPv6 as RFC 5952 without the dotted
 * IPv4 tail that glibc's inet_ntop prints for ::ffff:a.b.c.d).
 */

import { InvalidMemberError } from './errors.js';

export type SetFamily = 4 | 6;

/** `hash:net`: networks. `hash:net,port`: network plus protocol and port (one rule can then carry both). */
export type SetType = 'hash:net' | 'hash:net,port';

export const SET_TYPES: readonly SetType[] = ['hash:net', 'hash:net,port'];

/** Protocols hash:net,port stores with a port. */
const PORT_PROTOCOLS = new Set(['tcp', 'udp', 'sctp', 'udplite']);


const DECIMAL = /^(?:0|[1-9][0-9]*)$/;

function parseIpv4(text: string): number[] | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const bytes = parts.map((p) => (DECIMAL.test(p) && p.length <= 3 ? Number(p) : NaN));
  return bytes.every((b) => b >= 0 && b <= 255) ? bytes : undefined;
}

/** 16 bytes, or undefined. Accepts `::` once, 1-4 hex digits per group and a dotted IPv4 tail; no zone. */
function parseIpv6(text: string): number[] | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  // A dotted IPv4 tail may only end the whole address.
  const groups = (s: string, last: boolean): number[] | undefined => {
    if (s === '') return [];
    const out: number[] = [];
    const items = s.split(':');
    for (const [i, item] of items.entries()) {
      if (last && i === items.length - 1 && item.includes('.')) {
        const v4 = parseIpv4(item);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(item)) {
        out.push(parseInt(item, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? groups(halves[1]!, true) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const words = [...head, ...Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  return words.flatMap((w) => [w >> 8, w & 255]);
}

function maskBytes(bytes: number[], prefix: number): number[] {
  return bytes.map((b, i) => {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    return b & ((0xff << (8 - bits)) & 0xff);
  });
}

/** RFC 5952: lowercase, no leading zeros, the longest run (>= 2) of zero groups as `::`, the first on a tie. */
function formatIpv6(bytes: number[]): string {
  const words = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  let best = { start: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > best.len) best = { start: i, len: j - i };
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (best.len < 2) return hex(words);
  return `${hex(words.slice(0, best.start))}::${hex(words.slice(best.start + best.len))}`;
}

/**
 * One network in canonical form: `a.b.c.d/p` or `x::y/p`, host bits cleared (the kernel clears them
 * too: `ipset add s 10.1.2.3/16` stores 10.1.0.0/16), a bare address as /32 or /128. hash:net cannot
 * hold a /0 ("The value of the CIDR parameter of the IP address is invalid"), so 0.0.0.0/0 and ::/0
 * become their two /1 halves, which match the same packets.
 */
export function normalizeNet(text: string, family: SetFamily): string[] {
  const t = text.trim();
  const slash = t.indexOf('/');
  const addr = slash < 0 ? t : t.slice(0, slash);
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = t.slice(slash + 1);
    if (!DECIMAL.test(p) || Number(p) > max) throw new InvalidMemberError(`"${text}": prefix length must be 0..${max}`);
    prefix = Number(p);
  }
  const bytes = family === 4 ? parseIpv4(addr) : parseIpv6(addr);
  if (!bytes) throw new InvalidMemberError(`"${text}" is not an IPv${family} address or network`);
  if (prefix === 0) return family === 4 ? ['0.0.0.0/1', '128.0.0.0/1'] : ['::/1', '8000::/1'];
  const masked = maskBytes(bytes, prefix);
  return [`${family === 4 ? masked.join('.') : formatIpv6(masked)}/${prefix}`];
}

/** Upper bound on the elements of one set after expansion: a port range times many networks adds up. */
export const MAX_ELEMENTS = 262_144;

/**
 * A member of a set of `type` in canonical form; one text can stand for several elements (a /0, a
 * port range, which ipset also stores port by port). hash:net,port members are `<net>,<proto>:<port>`
 * or `<net>,<proto>:<first>-<last>` with proto tcp, udp, sctp or udplite.
 */
export function normalizeMember(text: string, family: SetFamily, type: SetType = 'hash:net'): string[] {
  if (type === 'hash:net') {
    if (text.includes(',')) throw new InvalidMemberError(`"${text}": a hash:net member is a network only`);
    return normalizeNet(text, family);
  }
  const icmp = /^([^,]+),(icmp|icmpv6|ipv6-icmp):(.+)$/.exec(text.trim());
  if (icmp) return icmpMember(text, icmp[1]!, icmp[2]!, icmp[3]!, family);
  const m = /^([^,]+),([a-z]+):([0-9]+)(?:-([0-9]+))?$/.exec(text.trim());
  if (!m) throw new InvalidMemberError(`"${text}": a hash:net,port member is <network>,<protocol>:<port>[-<port>]`);
  const [, net, proto, first, last] = m as unknown as [string, string, string, string, string | undefined];
  if (!PORT_PROTOCOLS.has(proto)) throw new InvalidMemberError(`"${text}": protocol must be one of ${[...PORT_PROTOCOLS].join(', ')}`);
  const lo = Number(first);
  const hi = last === undefined ? lo : Number(last);
  if (!DECIMAL.test(first) || (last !== undefined && !DECIMAL.test(last)) || lo > 65535 || hi > 65535 || hi < lo) {
    throw new InvalidMemberError(`"${text}": ports must be 0..65535, a range low-high`);
  }
  if (hi - lo + 1 > MAX_ELEMENTS) throw new InvalidMemberError(`"${text}": more than ${MAX_ELEMENTS} elements`);
  const nets = normalizeNet(net, family);
  const out: string[] = [];
  for (const n of nets) for (let p = lo; p <= hi; p++) out.push(`${n},${proto}:${p}`);
  return out;
}

/**
 * The names `ipset save` prints for ICMP type/code pairs it knows (ipset's lib/icmp.c, icmpv6.c);
 * anything else it prints as numbers. Members are compared as numbers, so a set read back equals
 * the one written.
 */
const ICMP_NAMES: Record<SetFamily, Record<string, string>> = {
  4: {
    'echo-reply': '0/0', 'network-unreachable': '3/0', 'host-unreachable': '3/1', 'protocol-unreachable': '3/2', 'port-unreachable': '3/3',
    'fragmentation-needed': '3/4', 'source-route-failed': '3/5', 'network-unknown': '3/6', 'host-unknown': '3/7', 'network-prohibited': '3/9',
    'host-prohibited': '3/10', 'TOS-network-unreachable': '3/11', 'TOS-host-unreachable': '3/12', 'communication-prohibited': '3/13',
    'host-precedence-violation': '3/14', 'precedence-cutoff': '3/15', 'source-quench': '4/0', 'network-redirect': '5/0', 'host-redirect': '5/1',
    'TOS-network-redirect': '5/2', 'TOS-host-redirect': '5/3', 'echo-request': '8/0', 'router-advertisement': '9/0', 'router-solicitation': '10/0',
    'ttl-zero-during-transit': '11/0', 'ttl-zero-during-reassembly': '11/1', 'ip-header-bad': '12/0', 'required-option-missing': '12/1',
    'timestamp-request': '13/0', 'timestamp-reply': '14/0', 'address-mask-request': '17/0', 'address-mask-reply': '18/0',
  },
  6: {
    'no-route': '1/0', 'communication-prohibited': '1/1', 'address-unreachable': '1/3', 'port-unreachable': '1/4', 'packet-too-big': '2/0',
    'ttl-zero-during-transit': '3/0', 'ttl-zero-during-reassembly': '3/1', 'bad-header': '4/0', 'unknown-header-type': '4/1', 'unknown-option': '4/2',
    'echo-request': '128/0', 'echo-reply': '129/0', 'router-solicitation': '133/0', 'router-advertisement': '134/0',
    'neighbour-solicitation': '135/0', 'neighbour-advertisement': '136/0', 'redirect': '137/0',
  },
};

/** `<net>,icmp:<type>/<code>` (IPv4) or `<net>,icmpv6:<type>/<code>` (IPv6), from numbers or ipset's names. */
function icmpMember(text: string, net: string, proto: string, what: string, family: SetFamily): string[] {
  if ((proto === 'icmp') !== (family === 4)) throw new InvalidMemberError(`"${text}": ${proto} in an IPv${family} set`);
  const numeric = ICMP_NAMES[family][what] ?? what;
  const m = /^([0-9]{1,3})\/([0-9]{1,3})$/.exec(numeric);
  if (!m || Number(m[1]) > 255 || Number(m[2]) > 255) throw new InvalidMemberError(`"${text}": an ICMP member is <protocol>:<type>/<code>`);
  const label = family === 4 ? 'icmp' : 'icmpv6';
  return normalizeNet(net, family).map((n) => `${n},${label}:${Number(m[1])}/${Number(m[2])}`);
}

/** The canonical, sorted, duplicate-free element list of a member list. */
export function normalizeMembers(members: readonly string[], family: SetFamily, type: SetType = 'hash:net'): string[] {
  const out = new Set<string>();
  for (const m of members) {
    for (const e of normalizeMember(m, family, type)) out.add(e);
    if (out.size > MAX_ELEMENTS) throw new InvalidMemberError(`more than ${MAX_ELEMENTS} elements`);
  }
  return [...out].sort();
}

/**
 * Names we create: the kernel's IPSET_MAXNAMELEN is 32 with the terminating NUL, and libvirt's
 * parser and schema allow 1-31 of [a-zA-Z0-9_.:-+ ] (measured: 32 characters are refused with
 * "ipset has illegal value"). We leave out the space as well, because a name is a word of the
 * `ipset restore` batch; '~' (not allowed by libvirt) marks our temporary sets.
 */
export const MAX_SET_NAME = 31;
const SET_NAME = /^[a-zA-Z0-9_.:+-]{1,31}$/;

export function checkSetName(name: string): void {
  if (!SET_NAME.test(name)) throw new InvalidMemberError(`IP set name "${name}": 1-${MAX_SET_NAME} of [a-zA-Z0-9_.:+-]`);
}
