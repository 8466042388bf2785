/**
 * Where libvirt's RNG schema (nwfilter.rng) is narrower than its parser and driver: the IPv6
 * protocol elements (tcp-ipv6, udp-ipv6, sctp-ipv6, icmpv6, all-ipv6) take no `state`, `ipset`,
 * `ipsetflags` or `connlimit-above` in the schema (common-ipv6-attributes-p1/p2 lack them), while
 * the parser reads them with the same code as for IPv4 and the driver instantiates them in
 * ip6tables (measured on libvirt 9.0: a VALIDATE define is refused with "Element rule has extra
 * content: tcp-ipv6"; without VALIDATE the attribute is kept and the ip6tables rule carries it).
 * A filter that needs them is defined without VALIDATE and checked by reading it back, as on a
 * libvirt older than 7.7 (client.ts, readback.ts).
 */
const IPV6_ELEMENT_BEYOND_SCHEMA = /<(?:tcp-ipv6|udp-ipv6|sctp-ipv6|icmpv6|all-ipv6)\b[^>]*\s(?:state|ipset|ipsetflags|connlimit-above)\s*=/;

export function beyondSchema(xml: string): boolean {
  return IPV6_ELEMENT_BEYOND_SCHEMA.test(xml);
}
