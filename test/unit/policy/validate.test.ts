import { describe, expect, it } from 'vitest';
import {
  BAND_TABLE,
  BANDS,
  compilePolicy,
  filterUuid,
  parsePacket,
  ruleProblems,
  validateFilter,
  validateTree,
  cidrContains,
  type NwFilter,
  type NwRule,
} from '../../../src/policy/index.js';
import { service, vm } from '../../helpers/builders.js';

const base: NwRule = {
  action: 'accept',
  direction: 'in',
  priority: 0,
  protocol: 'tcp',
  dstPortStart: 22,
  dstPortEnd: 22,
  comment: 'c',
  origin: { kind: 'default', level: 'vm', owner: 'x' },
};
const filter = (name: string, refs: string[] = [], rules: NwRule[] = []): NwFilter => ({ name, uuid: filterUuid(name), level: 'vm', refs, rules });

describe('our validation of what libvirt would silently change', () => {
  it.each([
    ['priority 5000 (libvirt would make it 500)', { priority: 5000 }, 'priority'],
    ['priority -1001', { priority: -1001 }, 'priority'],
    ['inverted port range (libvirt accepts it even with validation)', { dstPortStart: 90, dstPortEnd: 80 }, 'inverted'],
    ['port 0', { dstPortStart: 0, dstPortEnd: 0 }, 'port'],
    ['unknown protocol (libvirt would drop the element: match-everything)', { protocol: 'gre' }, 'protocol'],
    ['ports on icmp', { protocol: 'icmp' }, 'ports are not allowed'],
    ['comment of 257 characters', { comment: 'x'.repeat(257) }, 'comment'],
    ['unknown state', { state: ['OPEN'] }, 'state'],
    ['prefix 33', { src: { address: '10.0.0.0', prefix: 33 } }, 'prefix'],
  ])('refuses %s', (_name, patch, word) => {
    const problems = ruleProblems({ ...base, ...(patch as Partial<NwRule>) });
    expect(problems.join('; ')).toContain(word);
  });

  it('accepts a well-formed rule', () => expect(ruleProblems(base)).toEqual([]));

  it('warns above 50 rules', () => {
    const issues = validateFilter(filter('f', [], Array.from({ length: 51 }, () => base)));
    expect(issues).toEqual([expect.objectContaining({ severity: 'warning', reason: 'ManyRules' })]);
    expect(validateFilter(filter('f', [], Array.from({ length: 50 }, () => base)))).toEqual([]);
  });

  it('finds reference cycles, missing filters and deep trees', () => {
    const cyc = new Map([
      ['a', filter('a', ['b'])],
      ['b', filter('b', ['a'])],
    ]);
    expect(validateTree('a', cyc, new Set())).toEqual([expect.objectContaining({ reason: 'ReferenceCycle', message: 'cycle: a -> b -> a' })]);
    const missing = new Map([['a', filter('a', ['nope', 'clean-traffic'])]]);
    expect(validateTree('a', missing, new Set(['clean-traffic']))).toEqual([expect.objectContaining({ reason: 'MissingFilter' })]);
    const deep = new Map(['a', 'b', 'c', 'd'].map((n, i, all) => [n, filter(n, all[i + 1] ? [all[i + 1]!] : [])]));
    expect(validateTree('a', deep, new Set())).toEqual([expect.objectContaining({ severity: 'warning', reason: 'DeepReferences' })]);
  });

  it('compiles a VM whose custom rules exceed 50 with a ManyRules warning, not an error', () => {
    const rules = Array.from({ length: 60 }, (_, i) => ({ action: 'accept' as const, direction: 'in' as const, protocol: 'tcp' as const, ports: [{ port: 1000 + i }] }));
    const compiled = compilePolicy({ services: [], departments: [], vms: [vm('many', { rules })] });
    const r = compiled.vms.get('many')!;
    expect(r.ok).toBe(true);
    expect(r.diagnostics).toEqual([expect.objectContaining({ severity: 'warning', reason: 'ManyRules' })]);
  });
});

describe('priority bands', () => {
  it('are disjoint, ordered and inside libvirt\'s range', () => {
    for (let i = 0; i < BAND_TABLE.length; i++) {
      const b = BAND_TABLE[i]!;
      expect(b.from).toBeLessThanOrEqual(b.to);
      expect(b.from).toBeGreaterThanOrEqual(-1000);
      expect(b.to).toBeLessThanOrEqual(1000);
      if (i > 0) expect(b.from).toBeGreaterThan(BAND_TABLE[i - 1]!.to);
    }
    expect(BAND_TABLE.at(-1)!.from).toBe(BANDS.vmDefault);
  });
});

describe('references and reference errors', () => {
  it('reports a missing department and a missing service with reasons, without compiling the VM', () => {
    const compiled = compilePolicy({
      services: [service('ssh', { ports: [{ protocol: 'tcp', port: 22 }] })],
      departments: [],
      vms: [vm('a', { department: 'ghost' }), vm('b', { services: [{ name: 'telnet', use: 'allow' }] })],
    });
    expect(compiled.vms.get('a')).toMatchObject({ ok: false, diagnostics: [{ reason: 'DepartmentNotFound', field: 'spec.department' }] });
    expect(compiled.vms.get('b')).toMatchObject({ ok: false, diagnostics: [{ reason: 'ServiceNotFound', field: 'spec.services[0].name' }] });
    expect(compiled.filters.has('nwf-vm-a')).toBe(false);
  });
});

describe('packet parsing and addresses', () => {
  it('parses the CLI packet syntax', () => {
    expect(parsePacket('in tcp 22 from 10.1.2.3')).toEqual({ direction: 'in', protocol: 'tcp', port: 22, remote: '10.1.2.3' });
    expect(parsePacket('out udp 53 to 8.8.8.8 sport 5353')).toEqual({ direction: 'out', protocol: 'udp', port: 53, remote: '8.8.8.8', sourcePort: 5353 });
    expect(parsePacket('in tcp 22 from fd00::5')).toEqual({ direction: 'in', protocol: 'tcp', port: 22, remote: 'fd00::5', family: 6 });
    expect(parsePacket('out tcp 443 host')).toEqual({ direction: 'out', protocol: 'tcp', port: 443, remoteIsHost: true });
    expect(() => parsePacket('out udp 53 to 8.8.8.8 established')).toThrow(/unexpected "established"/);
    expect(parsePacket('in icmp')).toEqual({ direction: 'in', protocol: 'icmp' });
    expect(() => parsePacket('in tcp')).toThrow(/need a port/);
    expect(() => parsePacket('in tcp 22 to 1.2.3.4')).toThrow(/from/);
    expect(() => parsePacket('sideways tcp 22')).toThrow(/direction/);
    expect(() => parsePacket('in tcp 70000')).toThrow(/outside/);
  });

  it('matches CIDRs', () => {
    expect(cidrContains({ address: '10.0.0.0', prefix: 8 }, '10.255.1.1')).toBe(true);
    expect(cidrContains({ address: '10.0.0.0', prefix: 8 }, '11.0.0.1')).toBe(false);
    expect(cidrContains({ address: '0.0.0.0', prefix: 0 }, '1.2.3.4')).toBe(true);
    expect(cidrContains({ address: '192.168.1.7', prefix: 32 }, '192.168.1.7')).toBe(true);
  });

  it('derives stable RFC 4122-shaped UUIDs from names', () => {
    expect(filterUuid('nwf-global')).toBe(filterUuid('nwf-global'));
    expect(filterUuid('nwf-global')).not.toBe(filterUuid('nwf-global2'));
    expect(filterUuid('x')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
