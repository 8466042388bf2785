import type { Cidr } from './model.js';

/**
 * IPv4 and IPv6 addresses as numbers and as text. libvirt stores an IPv6 address in its own
 * spelling (lowercase, RFC 5952 compression: `FD00:0:0::1` reads back as `fd00::1`, measured on
 * 9.0), so the compiler writes every address in that spelling: the filter libvirt keeps is then
 * the one we sent, byte for byte, and drift detection compares like with like.
 */

export function ipv4ToInt(address: string): number {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${address}`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** An IPv6 address as a 128-bit integer (`::` and embedded IPv4 supported). */
export function ipv6ToBigInt(address: string): bigint {
  let text = address.toLowerCase();
  const v4 = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const n = ipv4ToInt(v4[1]!);
    text = text.slice(0, -v4[1]!.length) + `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) throw new Error(`not an IPv6 address: ${address}`);
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 1 && missing !== 0) || missing < 0 || (halves.length === 2 && missing === 0)) {
    throw new Error(`not an IPv6 address: ${address}`);
  }
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  let value = 0n;
  for (const g of groups) {
    if (!/^[0-9a-f]{1,4}$/.test(g)) throw new Error(`not an IPv6 address: ${address}`);
    value = (value << 16n) | BigInt(parseInt(g, 16));
  }
  return value;
}

/** RFC 5952 text of a 128-bit value: lowercase, no leading zeros, the longest run (2+) of zero groups as `::`. */
export function formatIpv6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { start: -1, length: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.length < 2) return hex.join(':');
  return `${hex.slice(0, best.start).join(':')}::${hex.slice(best.start + best.length).join(':')}`;
}

export const isIpv6 = (address: string): boolean => address.includes(':');

/** The address in the spelling libvirt keeps (IPv6 canonical; IPv4 as given, which the schema keeps canonical). */
export function canonicalAddress(address: string): string {
  return isIpv6(address) ? formatIpv6(ipv6ToBigInt(address)) : address;
}

/** `a.b.c.d[/p]` or `v6[/p]`; a bare address is a host route (/32, /128). */
export function parseCidr(text: string): Cidr {
  const [address, prefix] = text.split('/');
  const v6 = isIpv6(address!);
  return { address: canonicalAddress(address!), prefix: prefix === undefined ? (v6 ? 128 : 32) : Number(prefix) };
}

export const familyOfAddress = (address: string): 4 | 6 => (isIpv6(address) ? 6 : 4);

export function cidrContains(cidr: Cidr, address: string): boolean {
  if (isIpv6(cidr.address) !== isIpv6(address)) return false;
  if (isIpv6(address)) {
    const prefix = BigInt(cidr.prefix ?? 128);
    if (prefix === 0n) return true;
    const shift = 128n - prefix;
    return ipv6ToBigInt(cidr.address) >> shift === ipv6ToBigInt(address) >> shift;
  }
  if (cidr.prefix === 0) return true;
  const mask = (0xffffffff << (32 - cidr.prefix)) >>> 0;
  return ((ipv4ToInt(cidr.address) & mask) >>> 0) === ((ipv4ToInt(address) & mask) >>> 0);
}

/** `address/prefix` text of a CIDR, the network address as given (ipset and iptables mask it themselves). */
export const cidrText = (c: Cidr): string => `${c.address}/${c.prefix}`;
