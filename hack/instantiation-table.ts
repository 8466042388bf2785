// Prints docs/priorities.md's table of how libvirt instantiates each kind of rule we emit, from the
// model in src/policy/instantiate.ts (which test/integration/libvirt/instantiation.test.ts checks
// against a real libvirtd). test/unit/policy/instantiation-doc.test.ts keeps the doc in sync.
import { instantiate, iptablesText, type NwRule } from '../src/policy/index.js';

const origin = { kind: 'default', level: 'vm', owner: 'x' } as const;
const base = { priority: 0, comment: '', origin };

export const SAMPLE_RULES: { kind: string; rule: NwRule }[] = [
  { kind: 'allow, VM as client (`use`, `out` accept), tcp 443', rule: { ...base, action: 'accept', direction: 'out', protocol: 'tcp', dstPortStart: 443, dstPortEnd: 443 } },
  { kind: 'allow, VM as server (`provide`, `in` accept), tcp 22', rule: { ...base, action: 'accept', direction: 'in', protocol: 'tcp', dstPortStart: 22, dstPortEnd: 22 } },
  { kind: 'deny, VM as client (`use`, `out` drop), tcp 1024-65535', rule: { ...base, action: 'drop', direction: 'out', protocol: 'tcp', dstPortStart: 1024, dstPortEnd: 65535, state: ['NEW'] } },
  { kind: 'deny, VM as server (`provide`, `in` drop), tcp 25', rule: { ...base, action: 'drop', direction: 'in', protocol: 'tcp', dstPortStart: 25, dstPortEnd: 25, state: ['NEW'] } },
  { kind: 'custom accept `in` icmp from 10.0.0.0/8', rule: { ...base, action: 'accept', direction: 'in', protocol: 'icmp', src: { address: '10.0.0.0', prefix: 8 } } },
  { kind: 'ping provided (`in` accept, icmp echo-request by name)', rule: { ...base, action: 'accept', direction: 'in', protocol: 'icmp', icmpType: 8 } },
  { kind: '... and its reply (`out` accept of echo-reply, `state=ESTABLISHED`)', rule: { ...base, action: 'accept', direction: 'out', protocol: 'icmp', icmpType: 0, state: ['ESTABLISHED'] } },
  { kind: 'router advertisements in (`ipv6-autoconf` used: icmpv6 type 134, untracked)', rule: { ...base, action: 'accept', direction: 'in', protocol: 'icmpv6', icmpType: 134, noStateMatch: true } },
  {
    kind: 'accept `in` tcp 22 from an AddressGroup (an `all` rule over a `hash:net,port` set)',
    rule: { ...base, action: 'accept', direction: 'in', protocol: 'all', set: { name: 'nwf:4-office-networks-1a2b3c', flags: 'src,dst', group: 'office-networks', ports: [{ protocol: 'tcp', start: 22, end: 22 }] } },
  },
  {
    kind: 'drop `in` all from an AddressGroup (a `hash:net` set)',
    rule: { ...base, action: 'drop', direction: 'in', protocol: 'all', state: ['NEW'], set: { name: 'nwf:4-blocked', flags: 'src', group: 'blocked' } },
  },
  { kind: 'base: related ICMP errors (both families)', rule: { ...base, action: 'accept', direction: 'inout', protocol: 'all', state: ['RELATED'] } },
  { kind: 'base: IPv6 neighbour solicitation, `in`', rule: { ...base, action: 'accept', direction: 'in', protocol: 'icmpv6', icmpType: 135, noStateMatch: true } },
  { kind: 'base: IPv6 neighbour solicitation, `out`', rule: { ...base, action: 'accept', direction: 'out', protocol: 'icmpv6', icmpType: 135, noStateMatch: true } },
  { kind: 'default drop (and a department\'s reject), IPv4', rule: { ...base, action: 'drop', direction: 'inout', protocol: 'all' } },
  { kind: 'default drop, IPv6', rule: { ...base, action: 'drop', direction: 'inout', protocol: 'all-ipv6' } },
];

/** libvirt rule forms the compiler never emits, with what libvirt would make of them. */
export const AVOIDED_RULES: { kind: string; rule: NwRule }[] = [
  { kind: 'drop `in` tcp 1024-65535 without `state`', rule: { ...base, action: 'drop', direction: 'in', protocol: 'tcp', dstPortStart: 1024, dstPortEnd: 65535 } },
  { kind: 'drop `inout` tcp 22', rule: { ...base, action: 'drop', direction: 'inout', protocol: 'tcp', dstPortStart: 22, dstPortEnd: 22 } },
  { kind: 'accept `out` tcp 443 with `state=NEW`', rule: { ...base, action: 'accept', direction: 'out', protocol: 'tcp', dstPortStart: 443, dstPortEnd: 443, state: ['NEW'] } },
  { kind: 'accept `inout` icmpv6 type 135 (a type and `inout`)', rule: { ...base, action: 'accept', direction: 'inout', protocol: 'icmpv6', icmpType: 135, noStateMatch: true } },
  { kind: 'accept `in` icmp echo-request alone (no reply rule)', rule: { ...base, action: 'accept', direction: 'in', protocol: 'icmp', icmpType: 8 } },
];

export function instantiationTable(rules = SAMPLE_RULES): string {
  const lines = ['| rule | FI (from the VM, forwarded) | FO (to the VM) | HI (from the VM to the host) |', '|---|---|---|---|'];
  for (const { kind, rule } of rules) {
    const inst = instantiate([{ rule, filter: 'f', order: 0 }]);
    const cell = (chain: 'FI' | 'FO' | 'HI'): string => {
      const i = inst.find((x) => x.chain === chain);
      return i ? '`' + iptablesText(i, 'P').replace(/^-A \w+-P /, '') + '`' : '—';
    };
    lines.push(`| ${kind} | ${cell('FI')} | ${cell('FO')} | ${cell('HI')} |`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(instantiationTable() + '\n\n' + instantiationTable(AVOIDED_RULES) + '\n');
}
