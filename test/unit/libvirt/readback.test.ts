// filterDifferences: what the client checks after a define without VALIDATE (libvirt < 7.7). The
// libvirt side of each pair is real libvirt 9.0.0 output (fixtures/README.md).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { filterDifferences, normalizeValue } from '../../../src/libvirt/readback.js';

const fixture = (name: string): string => readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8');
const pair = (name: string) => ({ sent: fixture(`${name}.sent.xml`), kept: fixture(`${name}.libvirt-9.0.0.xml`) });

describe('filterDifferences on real libvirt output', () => {
  it("finds nothing when libvirt only re-serialized (our rendered filters, libvirt's rewrites of numbers, masks, addresses, lists, booleans)", () => {
    for (const name of ['vm-eng-web-01', 'dept-engineering', 'equivalent']) {
      const { sent, kept } = pair(name);
      expect(kept, name).not.toBe(sent);
      expect(filterDifferences(sent, kept), name).toEqual([]);
    }
  });

  it('names what libvirt dropped: attributes, protocol elements, a changed priority, an unknown element', () => {
    const { sent, kept } = pair('dropped');
    // kept as equivalent: statematch='0', srcipmask='255.255.255.0', protocolid='0x0800' (ipv4), the
    // upper-case MAC and IPv6 address, state='new,established', the filterref with its parameter
    expect(filterDifferences(sent, kept)).toEqual([
      "rule 1 <tcp>: attribute bogus='1' was dropped",
      "rule 2: priority='0x10' became priority='500'",
      'rule 2: protocol element <bogus> was dropped',
      'rule 6: protocol element <tcp> was dropped',
    ]);
    const bad = pair('vm-bad');
    expect(filterDifferences(bad.sent, bad.kept)).toEqual([
      'element <rulle> was dropped',
      "rule 2 <icmpv6>: attribute statematch='false' was dropped",
      'rule 6: protocol element <udp> was dropped',
      "rule 7 <tcp>: attribute dstportstrat='80' was dropped",
      "rule 8: priority='5000' became priority='500'",
    ]);
  });
});

describe('filterDifferences on constructed documents', () => {
  const doc = (body: string, attrs = "name='f' chain='root'") => `<filter ${attrs}>${body}</filter>`;
  const rule = (inner: string, attrs = "action='accept' direction='in' priority='10'") => `<rule ${attrs}>${inner}</rule>`;

  it('counts rules and filter references, compares parameters in order', () => {
    expect(filterDifferences(doc(rule('<all/>') + rule('<tcp/>')), doc(rule('<all/>')))).toEqual(['2 rules sent, 1 kept']);
    expect(filterDifferences(doc("<filterref filter='a'/><filterref filter='b'/>"), doc("<filterref filter='a'/>"))).toEqual(['2 filter references sent, 1 kept']);
    expect(filterDifferences(doc("<filterref filter='a'><parameter name='IP' value='1.2.3.4'/></filterref>"), doc("<filterref filter='a'/>"))).toEqual([
      'filterref 1 (a): parameters IP=1.2.3.4 became (none)',
    ]);
    expect(filterDifferences(doc("<filterref filter='a'/>"), doc("<filterref filter='b'/>"))).toEqual(["filterref 1 (a): filter='a' became filter='b'"]);
  });

  it('compares action, direction and priority of each rule in order, and the protocol element', () => {
    expect(filterDifferences(doc(rule('<all/>')), doc(rule('<all/>', "action='drop' direction='in' priority='10'")))).toEqual(["rule 1: action='accept' became action='drop'"]);
    expect(filterDifferences(doc(rule('<all/>')), doc(rule('<all/>', "action='accept' direction='out' priority='10'")))).toEqual([
      "rule 1: direction='in' became direction='out'",
    ]);
    expect(filterDifferences(doc(rule('<tcp/>')), doc(rule('<udp/>')))).toEqual([
      'rule 1: protocol element <tcp> was dropped',
      'rule 1: libvirt has a protocol element <udp> that was not sent',
    ]);
    expect(filterDifferences(doc(rule("<tcp dstportstart='22'/>")), doc(rule("<tcp dstportstart='23'/>")))).toEqual([
      "rule 1 <tcp>: dstportstart='22' became dstportstart='23'",
    ]);
  });

  it("treats libvirt's defaults as kept: priority 500, statematch true, match yes, the root chain's priority 0", () => {
    expect(filterDifferences(doc(rule('<all/>', "action='accept' direction='in'")), doc(rule('<all/>', "action='accept' direction='in' priority='500'")))).toEqual([]);
    expect(filterDifferences(doc(rule('<all/>', "action='accept' direction='in' statematch='1'")), doc(rule('<all/>', "action='accept' direction='in'")))).toEqual([]);
    expect(filterDifferences(doc(rule("<tcp match='yes'/>")), doc(rule('<tcp/>')))).toEqual([]);
    expect(filterDifferences(doc('', "name='f' chain='root' priority='0'"), doc(''))).toEqual([]);
    // but statematch='false' lost is a difference (conntrack would match again)
    expect(filterDifferences(doc(rule('<all/>', "action='accept' direction='in' statematch='false'")), doc(rule('<all/>', "action='accept' direction='in'")))).toEqual([
      "rule 1: attribute statematch='false' was dropped (libvirt's default statematch='true' applies)",
    ]);
    // and an attribute libvirt added (a rule's priority, the UUID) is not
    const withDefaults = `<filter name='f' chain='root'><uuid>x</uuid>${rule('<all/>', "action='accept' direction='in' priority='500'")}</filter>`;
    expect(filterDifferences(doc(rule('<all/>', "action='accept' direction='in'")), withDefaults)).toEqual([]);
  });

  it('refuses a document that is no filter', () => {
    expect(() => filterDifferences('<network/>', doc(''))).toThrow(/not an nwfilter document/);
  });
});

describe('normalizeValue (how libvirt re-spells a value)', () => {
  it.each([
    ['priority', '0x10', '16'],
    ['dstportstart', '0x35', '53'],
    ['srcipmask', '255.255.255.0', '24'],
    ['srcipmask', '24', '24'],
    ['srcipmask', 'ffff:ffff:ffff:ffff::', '64'],
    ['srcipaddr', 'FE80::1', 'fe80:0000:0000:0000:0000:0000:0000:0001'],
    ['srcipaddr', 'fe80:0:0:0:0:0:0:1', 'fe80:0000:0000:0000:0000:0000:0000:0001'],
    ['srcmacaddr', '52:54:00:AB:CD:EF', '52:54:00:ab:cd:ef'],
    ['state', 'established,NEW', 'ESTABLISHED,NEW'],
    ['flags', 'SYN,ACK/syn', 'ACK,SYN/SYN'],
    ['statematch', '0', 'false'],
    ['statematch', 'FALSE', 'false'],
    ['statematch', '1', 'true'],
    ['match', 'no', 'no'],
    ['protocolid', 'ipv4', '2048'],
    ['protocolid', '0x0800', '2048'],
    ['srcipaddr', '$IP', '$IP'],
    ['comment', ' spaced ', 'spaced'],
  ])('%s=%s -> %s', (key, value, normal) => {
    expect(normalizeValue(key, value)).toBe(normal);
  });
});
