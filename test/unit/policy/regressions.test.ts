// One test per bug of the reference system this project replaces (the team's list of lessons from
// that system's own bugs). Each would fail had we repeated the bug.
import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { compilePolicy, departmentFilterName, evaluate, vmFilterName, type NwRule } from '../../../src/policy/index.js';
import { department, service, vm } from '../../helpers/builders.js';
import { decide, filtersOf, okVm } from '../../helpers/decide.js';

const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' });
const asArray = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

const mail = [
  service('smtp', { ports: [{ protocol: 'tcp', port: 25 }, { protocol: 'tcp', port: 587 }], use: true, provide: true }),
  service('smtps', { ports: [{ protocol: 'tcp', port: 465 }], use: true, provide: true }),
  service('ftp', { ports: [{ protocol: 'tcp', port: 21 }, { protocol: 'tcp', port: 1024, endPort: 65535 }], use: true }),
  service('ftps', { ports: [{ protocol: 'tcp', port: 990 }, { protocol: 'tcp', port: 1024, endPort: 65535 }], use: true }),
];

describe('reference-system regressions', () => {
  it("turning off 'use' at VM level leaves 'provide' alone", () => {
    const compiled = compilePolicy({
      services: [service('ssh', { ports: [{ protocol: 'tcp', port: 22 }], use: true, provide: true })],
      departments: [],
      vms: [vm('v', { services: [{ name: 'ssh', use: 'deny' }] })],
    });
    const v = okVm(compiled, 'v');
    expect(v.effectiveServices).toEqual([{ name: 'ssh', use: false, useSource: 'vm', provide: true, provideSource: 'global' }]);
    const filters = filtersOf(compiled);
    expect(evaluate(v.filter.filter.name, filters, { direction: 'out', protocol: 'tcp', port: 22 }).verdict).toBe('drop');
    expect(evaluate(v.filter.filter.name, filters, { direction: 'in', protocol: 'tcp', port: 22 }).verdict).toBe('accept');
  });

  it('disabling SMTP does not touch SMTPS, nor FTP touch FTPS (rules keyed by structured identity)', () => {
    const compiled = compilePolicy({
      services: mail,
      departments: [],
      vms: [vm('v', { services: [{ name: 'smtp', use: 'deny' }, { name: 'ftp', use: 'deny' }] })],
    });
    const v = okVm(compiled, 'v');
    const filters = filtersOf(compiled);
    const out = (port: number) => evaluate(v.filter.filter.name, filters, { direction: 'out', protocol: 'tcp', port }).verdict;
    expect(out(25)).toBe('drop');
    expect(out(465)).toBe('accept');
    expect(out(21)).toBe('drop');
    expect(out(990)).toBe('accept');
    // The VM's own rules name exactly the services they are about.
    const vmServices = v.filter.filter.rules.flatMap((r) => (r.origin.kind === 'service' ? [r.origin.service] : []));
    expect(new Set(vmServices)).toEqual(new Set(['smtp', 'ftp']));
    // The global filter still carries every SMTPS and FTPS rule (one per port entry and family).
    const globalSmtps = compiled.global.filter.rules.filter((r) => r.origin.kind === 'service' && r.origin.service === 'smtps');
    expect(globalSmtps.map((r) => r.protocol)).toEqual(['tcp', 'tcp-ipv6', 'tcp', 'tcp-ipv6']);
  });

  it('a VM can block what its department allows (an explicit drop, not a missing accept)', () => {
    const compiled = compilePolicy({
      services: [service('rdp', { ports: [{ protocol: 'tcp', port: 3389 }] })],
      departments: [department('d', { services: [{ name: 'rdp', provide: 'allow' }] })],
      vms: [vm('v', { department: 'd', services: [{ name: 'rdp', provide: 'deny' }] })],
    });
    const v = okVm(compiled, 'v');
    const drop = v.filter.filter.rules.find((r) => r.origin.kind === 'service' && r.origin.service === 'rdp');
    expect(drop?.action).toBe('drop');
    const d = evaluate(v.filter.filter.name, filtersOf(compiled), { direction: 'in', protocol: 'tcp', port: 3389 });
    expect(d.verdict).toBe('drop');
    expect(d.rule).toBe(drop);
  });

  it('department changes reach the VMs: one department filter changes, VM filters stay, VM hashes change', () => {
    const services = [service('ssh', { ports: [{ protocol: 'tcp', port: 22 }] })];
    const vms = [vm('a', { department: 'd' }), vm('b', { department: 'd' })];
    const before = compilePolicy({ services, departments: [department('d')], vms });
    const after = compilePolicy({ services, departments: [department('d', { services: [{ name: 'ssh', provide: 'allow' }] })], vms });
    const changed = [...after.filters.keys()].filter((n) => before.filters.get(n)?.xml !== after.filters.get(n)?.xml);
    expect(changed).toEqual([departmentFilterName('d')]);
    for (const name of ['a', 'b']) {
      expect(okVm(after, name).hash).not.toBe(okVm(before, name).hash);
      expect(okVm(after, name).tree).toContain(departmentFilterName('d'));
      const d = evaluate(vmFilterName(name), filtersOf(after), { direction: 'in', protocol: 'tcp', port: 22 });
      expect(d.verdict).toBe('accept');
    }
  });

  it('port ranges without a single port (FTP passive 1024-65535) are kept', () => {
    const compiled = compilePolicy({ services: mail, departments: [], vms: [vm('v')] });
    const doc = xml.parse(compiled.global.xml);
    const tcp = asArray(doc.filter.rule).map((r: { tcp?: Record<string, string> }) => r.tcp).filter(Boolean);
    expect(tcp).toContainEqual(expect.objectContaining({ dstportstart: '1024', dstportend: '65535' }));
    const d = evaluate(vmFilterName('v'), filtersOf(compiled), { direction: 'out', protocol: 'tcp', port: 50000 });
    expect(d.verdict).toBe('accept');
    expect(d.rule?.origin).toMatchObject({ service: 'ftp' });
  });

  it('state= is rendered on the protocol element, not on <rule>', () => {
    const compiled = compilePolicy({
      services: [],
      departments: [],
      vms: [vm('v', { rules: [{ action: 'drop', direction: 'in', protocol: 'tcp', ports: [{ port: 22 }] }] })],
    });
    const rules = asArray(xml.parse(okVm(compiled, 'v').filter.xml).filter.rule) as Record<string, unknown>[];
    const deny = rules.find((r) => r.tcp !== undefined)!;
    expect(deny).not.toHaveProperty('state');
    expect(deny.tcp).toMatchObject({ state: 'NEW' });
  });

  it('protocol=all rules carry an <all/> protocol element', () => {
    const compiled = compilePolicy({
      services: [],
      departments: [],
      vms: [vm('v', { rules: [{ action: 'drop', direction: 'out', protocol: 'all', destination: '10.0.0.0/8' }] })],
    });
    const v = okVm(compiled, 'v');
    expect(v.filter.xml).toMatch(/<rule action="drop" direction="out" priority="-700">\s*<all dstipaddr="10.0.0.0" dstipmask="8"/);
    for (const r of asArray(xml.parse(v.filter.xml).filter.rule) as Record<string, unknown>[]) {
      const protocolElements = Object.keys(r).filter((k) => !['action', 'direction', 'priority', 'statematch'].includes(k));
      expect(protocolElements).toHaveLength(1);
    }
  });

  it('a comment starting with $ is rendered as text, never as a libvirt variable reference', () => {
    const compiled = compilePolicy({
      services: [],
      departments: [],
      vms: [vm('v', { rules: [{ action: 'drop', direction: 'in', protocol: 'tcp', ports: [{ port: 22 }], comment: '$% cost center' }, { action: 'drop', direction: 'in', protocol: 'udp', comment: '$IP' }] })],
    });
    const comments = okVm(compiled, 'v').filter.filter.rules.filter((r) => r.origin.kind === 'custom').map((r) => r.comment);
    // Each rule applies to both families: one libvirt rule per family, the same comment.
    expect(comments).toEqual([' $% cost center', ' $% cost center', ' $IP', ' $IP']);
  });

  it('custom rules of equal priority get libvirt priorities of their own, in list order (libvirt does not order ties)', () => {
    const rule = (action: 'accept' | 'drop', priority: number) => ({ action, direction: 'in' as const, protocol: 'tcp' as const, ports: [{ port: 22 }], priority });
    const compiled = compilePolicy({
      services: [],
      departments: [department('d', { rules: [{ ...rule('drop', 10), enforced: true }, rule('accept', 10), { ...rule('accept', 10), enforced: true }, rule('drop', 5)] })],
      vms: [vm('v', { department: 'd', rules: [rule('accept', 50), rule('drop', 50), rule('accept', 0)] })],
    }, { optimize: false });
    // IPv4 only here; each rule has an IPv6 twin at the same priority.
    const v4 = (r: NwRule) => r.protocol === 'tcp';
    const v = okVm(compiled, 'v').filter.filter.rules.filter((r) => r.origin.kind === 'custom' && v4(r));
    expect(v.map((r) => [r.action, r.priority])).toEqual([['accept', -700], ['accept', -699], ['drop', -698]]);
    // Optimized (optimize.ts), the second accept, identical to the first, is left out: it can never
    // match a packet. The drop stays (its instance matches NEW packets in any conntrack direction,
    // which the accept's --ctdir ORIGINAL does not cover).
    const optimized = compilePolicy({ services: [], departments: [], vms: [vm('v', { rules: [rule('accept', 50), rule('drop', 50), rule('accept', 0)] })] });
    const vo = okVm(optimized, 'v').filter.filter.rules.filter((r) => r.origin.kind === 'custom' && v4(r));
    expect(vo.map((r) => [r.action, r.priority])).toEqual([['accept', -700], ['drop', -698]]);
    const d = compiled.departments.get('d');
    if (!d?.ok) throw new Error('department did not compile');
    const dr = d.filter.filter.rules.filter((r) => r.origin.kind === 'custom' && v4(r));
    expect(dr.map((r) => [r.action, r.priority])).toEqual([['drop', -900], ['accept', -899], ['drop', -500], ['accept', -499]]);
    // The first of two equal-priority rules decides.
    expect(decide({ services: [], departments: [], vms: [vm('w', { rules: [rule('drop', 50), rule('accept', 50)] })] }, 'w', { direction: 'in', protocol: 'tcp', port: 22 }).verdict).toBe('drop');
  });

  it('filter names do not collide, even for long names sharing a prefix', () => {
    const long = 'x'.repeat(240);
    const names = [`${long}-a`, `${long}-b`, 'a', 'a.b', 'a-b'];
    const vmNames = names.map(vmFilterName);
    const deptNames = names.map(departmentFilterName);
    expect(new Set([...vmNames, ...deptNames]).size).toBe(names.length * 2);
    for (const n of [...vmNames, ...deptNames]) expect(n.length).toBeLessThanOrEqual(200);
    expect(vmFilterName(`${long}-a`)).toBe(vmFilterName(`${long}-a`));
  });

  it('an empty rule set still applies and fails closed (never an open VM)', () => {
    const compiled = compilePolicy({ services: [], departments: [], vms: [vm('bare')] });
    const v = okVm(compiled, 'bare');
    // Only the base rules (RELATED, IPv6 neighbour discovery: they accept no new connection) and the drops.
    expect(v.filter.filter.rules.filter((r) => r.origin.kind !== 'base')).toHaveLength(2);
    expect(v.filter.filter.rules.at(-2)).toMatchObject({ action: 'drop', direction: 'inout', protocol: 'all', priority: 1000 });
    expect(v.filter.filter.rules.at(-1)).toMatchObject({ action: 'drop', direction: 'inout', protocol: 'all-ipv6', priority: 1000 });
    const filters = filtersOf(compiled);
    for (const pkt of [
      { direction: 'in', protocol: 'tcp', port: 22 },
      { direction: 'out', protocol: 'udp', port: 53 },
      { direction: 'in', protocol: 'icmp' },
      { direction: 'out', protocol: 'sctp', port: 9 },
    ] as const) {
      expect(evaluate(v.filter.filter.name, filters, pkt).verdict).toBe('drop');
    }
  });
});
