import { describe, expect, it } from 'vitest';
import { API_VERSION, AddressGroup } from '../../../src/api/index.js';
import {
  compilePolicy,
  groupEntry,
  labelsMatch,
  peerGroupName,
  resolvePeers,
  setEntries,
  setSize,
  type AddressSet,
  type NwRule,
} from '../../../src/policy/index.js';
import { department, service, vm } from '../../helpers/builders.js';

const group = (name: string, spec: Record<string, unknown>, extra: { generation?: number; status?: Record<string, unknown> } = {}) =>
  AddressGroup.parse({
    apiVersion: API_VERSION,
    kind: 'AddressGroup',
    metadata: { name, ...(extra.generation !== undefined ? { generation: extra.generation } : {}) },
    spec,
    ...(extra.status ? { status: extra.status } : {}),
  });

describe('address groups and peers', () => {
  it('a peer selector names the same group whatever the order of its labels and values', () => {
    const a = peerGroupName({ vmSelector: { matchLabels: { a: '1', b: '2' }, matchExpressions: [{ key: 'k', operator: 'In', values: ['y', 'x'] }] } });
    const b = peerGroupName({ vmSelector: { matchLabels: { b: '2', a: '1' }, matchExpressions: [{ key: 'k', operator: 'In', values: ['x', 'y'] }] } });
    expect(a).toBe(b);
    expect(a).toMatch(/^peers-[0-9a-f]{16}$/);
    expect(peerGroupName({ department: 'eng' })).not.toBe(peerGroupName({ department: 'ops' }));
  });

  it('label selectors follow metav1.LabelSelector', () => {
    const sel = { matchLabels: { role: 'web' }, matchExpressions: [{ key: 'tier', operator: 'NotIn' as const, values: ['dev'] }, { key: 'x', operator: 'DoesNotExist' as const }] };
    expect(labelsMatch(sel, { role: 'web' })).toBe(true);
    expect(labelsMatch(sel, { role: 'web', tier: 'prod' })).toBe(true);
    expect(labelsMatch(sel, { role: 'web', tier: 'dev' })).toBe(false);
    expect(labelsMatch(sel, { role: 'web', x: '' })).toBe(false);
    expect(labelsMatch(sel, { role: 'db' })).toBe(false);
    expect(labelsMatch({ matchExpressions: [{ key: 'a', operator: 'In', values: ['1'] }] }, {})).toBe(false);
    expect(labelsMatch({}, undefined)).toBe(true);
  });

  it('peers resolve to the addresses of the selected VMs, both families, deleted VMs left out', () => {
    const vms = [
      vm('a', { department: 'eng', parameters: { ip: ['10.0.0.1'], ipv6: ['fd00::1'] } }),
      vm('b', { department: 'eng', parameters: { ip: ['10.0.0.2', '10.0.0.1'] } }),
      vm('c', { department: 'ops', parameters: { ip: ['10.0.0.3'] } }),
      { ...vm('d', { department: 'eng', parameters: { ip: ['10.0.0.4'] } }), metadata: { name: 'd', deletionTimestamp: '2026-01-01T00:00:00Z' } },
    ];
    expect(resolvePeers({ department: 'eng' }, vms)).toEqual({ addresses: ['10.0.0.1', '10.0.0.2', 'fd00::1'], vms: 2 });
  });

  it('a group with peers counts only once the controller resolved its current generation', () => {
    const peers = { peers: { department: 'eng' } };
    expect(groupEntry(group('g', peers, { generation: 2 })).resolved).toBe(false);
    expect(groupEntry(group('g', peers, { generation: 2, status: { observedGeneration: 1, peerAddresses: ['10.0.0.9'] } })).resolved).toBe(false);
    const done = groupEntry(group('g', { ...peers, addresses: ['10.1.0.0/16'] }, { generation: 2, status: { observedGeneration: 2, peerAddresses: ['10.0.0.9'] } }));
    expect(done.resolved).toBe(true);
    expect(done.members).toEqual([{ address: '10.1.0.0', prefix: 16 }, { address: '10.0.0.9', prefix: 32 }]);
    // Without spec.peers, status.peerAddresses is not the group's.
    expect(groupEntry(group('h', { addresses: ['FD00:0::1'] }, { status: { peerAddresses: ['10.0.0.9'] } }))).toEqual({ name: 'h', members: [{ address: 'fd00::1', prefix: 128 }], resolved: true });
  });

  it('set entries: /0 as its two halves (hash:net refuses /0), ports and ICMP as ipset writes them; sizes count each port', () => {
    const set = (s: Partial<AddressSet>): AddressSet => ({ name: 'n', family: 4, type: 'hash:net', group: 'g', members: [], ...s });
    expect(setEntries(set({ members: [{ address: '0.0.0.0', prefix: 0 }] }))).toEqual(['0.0.0.0/1', '128.0.0.0/1']);
    const ported = set({ type: 'hash:net,port', members: [{ address: '10.0.0.0', prefix: 8 }], ports: [{ protocol: 'tcp', start: 22, end: 22 }, { protocol: 'udp', start: 1000, end: 1009 }] });
    expect(setEntries(ported)).toEqual(['10.0.0.0/8,tcp:22', '10.0.0.0/8,udp:1000-1009']);
    expect(setSize(ported)).toBe(11);
    expect(setEntries(set({ family: 6, type: 'hash:net,port', members: [{ address: 'fd00::', prefix: 64 }], ports: [{ protocol: 'icmpv6', type: 128, code: 0 }] }))).toEqual(['fd00::/64,icmpv6:128/0']);
  });
});

describe('compiling group rules', () => {
  const rule = { action: 'accept' as const, direction: 'in' as const, protocol: 'tcp' as const, ports: [{ port: 22 }], sourceGroup: 'office' };

  it('a group rule is an all rule over a hash:net,port set per family, in the VM tree sets with the members', () => {
    const c = compilePolicy({ addressGroups: [group('office', { addresses: ['10.20.0.0/16', 'fd00:20::/48'] })], services: [], departments: [], vms: [vm('v', { rules: [rule] })] });
    const v = c.vms.get('v')!;
    if (!v.ok) throw new Error(JSON.stringify(v.diagnostics));
    const custom = v.filter.filter.rules.filter((r) => r.origin.kind === 'custom');
    expect(custom.map((r) => [r.protocol, r.set?.flags, r.set?.ports, r.dstPortStart])).toEqual([
      ['all', 'src,dst', [{ protocol: 'tcp', start: 22, end: 22 }], undefined],
      ['all-ipv6', 'src,dst', [{ protocol: 'tcp', start: 22, end: 22 }], undefined],
    ]);
    expect(v.sets.map((s) => [s.family, s.type, s.members.map((m) => `${m.address}/${m.prefix}`)])).toEqual([
      [4, 'hash:net,port', ['10.20.0.0/16']],
      [6, 'hash:net,port', ['fd00:20::/48']],
    ]);
  });

  it('a missing group, an unresolved peer group and an oversized set fail the compile (the last filter stays)', () => {
    const reason = (input: Parameters<typeof compilePolicy>[0]) => {
      const v = compilePolicy(input).vms.get('v')!;
      return v.ok ? 'ok' : v.diagnostics.find((d) => d.severity === 'error')!.reason;
    };
    expect(reason({ services: [], departments: [], vms: [vm('v', { rules: [rule] })] })).toBe('AddressGroupNotFound');
    const unresolved = group('office', { peers: { department: 'eng' } }, { generation: 1 });
    expect(reason({ addressGroups: [unresolved], services: [], departments: [], vms: [vm('v', { rules: [rule] })] })).toBe('PeersNotResolved');
    const big = group('office', { addresses: Array.from({ length: 3 }, (_, i) => `10.${i}.0.0/16`) });
    const wide = { ...rule, ports: [{ port: 1, endPort: 30000 }] };
    expect(reason({ addressGroups: [big], services: [], departments: [], vms: [vm('v', { rules: [wide] })] })).toBe('AddressSetTooLarge');
    // Inline peers resolve from the input's own VMs (render and explain have no controller).
    const peers = { ...rule, sourceGroup: undefined, sourcePeers: { department: 'eng' } };
    const input = { services: [], departments: [department('eng')], vms: [vm('v', { rules: [peers] }), vm('w', { department: 'eng', parameters: { ip: ['10.9.9.9'] } })] };
    const v = compilePolicy(input).vms.get('v')!;
    if (!v.ok) throw new Error(JSON.stringify(v.diagnostics));
    expect(v.sets.find((s) => s.family === 4)!.members).toEqual([{ address: '10.9.9.9', prefix: 32 }]);
  });
});

describe('ICMP types and families in compiled rules', () => {
  const rulesOf = (spec: Parameters<typeof service>[1]): NwRule[] => compilePolicy({ services: [service('s', spec)], departments: [], vms: [] }).global.filter.rules;

  it('an echo request accept gets its reply, ESTABLISHED only, in the other direction; both families by name', () => {
    const r = rulesOf({ ports: [{ protocol: 'icmp', icmp: { name: 'echo-request' } }], provide: true });
    expect(r.map((x) => [x.direction, x.protocol, x.icmpType, x.state ?? null, x.noStateMatch ?? false])).toEqual([
      ['in', 'icmp', 8, null, false],
      ['out', 'icmp', 0, ['ESTABLISHED'], false],
      ['in', 'icmpv6', 128, null, false],
      ['out', 'icmpv6', 129, ['ESTABLISHED'], false],
    ]);
  });

  it('types conntrack does not track match with no state, in their own direction; a one-family type stays in its family', () => {
    const r = rulesOf({ ports: [{ protocol: 'icmp', icmp: { name: 'router-advertisement' }, side: 'client' }], use: true });
    expect(r.map((x) => [x.direction, x.protocol, x.icmpType, x.noStateMatch ?? false])).toEqual([
      ['in', 'icmp', 9, true],
      ['in', 'icmpv6', 134, true],
    ]);
    const ns = rulesOf({ ports: [{ protocol: 'icmp', icmp: { name: 'neighbor-solicitation' } }], provide: true });
    expect(ns.map((x) => x.protocol)).toEqual(['icmpv6']);
  });

  it('a port entry of one family gives that family only; IPv6 addresses are written as libvirt keeps them', () => {
    expect(rulesOf({ ports: [{ protocol: 'udp', port: 67, family: 'ipv4' }], use: true }).map((x) => x.protocol)).toEqual(['udp']);
    const c = compilePolicy({ services: [], departments: [], vms: [vm('v', { rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 22 }], source: 'FD00:0:0::1/64' }] })] });
    const v = c.vms.get('v')!;
    if (!v.ok) throw new Error('did not compile');
    expect(v.filter.xml).toContain('<tcp-ipv6 srcipaddr="fd00::1" srcipmask="64"');
  });
});
