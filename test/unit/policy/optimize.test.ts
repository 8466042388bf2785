// The optimizer (src/policy/optimize.ts) must not change what any packet gets: on random policies,
// the optimized and the unoptimized compile give the same verdict for every packet in every chain
// (any conntrack state and direction, not only first packets), the same first-packet decision
// (evaluate) and the same connection outcome (evaluateConnection). The packet suite holds the
// kernel against the same claim (test/packet/differential.test.ts).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseManifests } from '../../../src/api/index.js';
import { readManifestFiles } from '../../../src/cli/files.js';
import {
  compilePolicy,
  evaluate,
  evaluateChain,
  evaluateConnection,
  instantiateTree,
  type CompileOptions,
  type KernelPacket,
  type NwFilter,
  type PolicyInput,
  setMembersOf,
  type RuleInstance,
  type SetMembers,
} from '../../../src/policy/index.js';
import { packet, policyInput } from '../../helpers/arbitraries.js';
import { department, service, vm } from '../../helpers/builders.js';
import { filtersOf } from '../../helpers/decide.js';
import { randomPolicy } from '../../helpers/policy-world.js';

const RUNS = Number(process.env.FC_RUNS ?? 300);

/** Every compiled VM's instances, by VM name. */
type VmInstances = { instances: RuleInstance[]; root: string; filters: Map<string, NwFilter>; sets: SetMembers };

function instancesByVm(input: PolicyInput, options: CompileOptions): Map<string, VmInstances> {
  const compiled = compilePolicy(input, options);
  const filters = filtersOf(compiled);
  const out = new Map<string, VmInstances>();
  for (const [name, r] of compiled.vms) {
    if (!r.ok) continue;
    const root = r.filter.filter.name;
    out.set(name, { instances: instantiateTree(root, filters).instances, root, filters, sets: setMembersOf(r.sets) });
  }
  return out;
}

// A small world, so that random rules overlap, nest, touch and shadow each other often.
const PORTS = [20, 21, 22, 23, 24, 25, 26, 27, 28];
const CIDRS = ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.0/24', '10.1.2.3/32', '10.1.2.4/31', '192.168.0.0/16'];
const ADDRESSES4 = ['10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.3.1', '10.2.0.1', '192.168.1.1', '11.0.0.1', '192.0.2.254'];
const ADDRESSES6 = ['fd00::1', '2001:db8::fe', 'fd00:1::3', 'fd00:1::4', 'fd00:1::9'];

const CIDRS6 = ['fd00::/16', 'fd00:1::/32', 'fd00:1::3/128', 'fd00:1::4/127'];

const smallPolicy = randomPolicy({
  ports: PORTS,
  cidrs: CIDRS,
  serviceProtocols: ['tcp', 'udp', 'sctp'],
  maxPriority: 3,
  max: { services: 6, servicePorts: 3, rulePorts: 3, departmentRules: 4, vmRules: 5 },
});

/** Both families, ICMP types, address groups and peers (the VM's own addresses are its department's). */
const dualPolicy = randomPolicy({
  ports: PORTS,
  cidrs: CIDRS,
  cidrs6: CIDRS6,
  serviceProtocols: ['tcp', 'udp', 'sctp'],
  maxPriority: 3,
  max: { services: 5, servicePorts: 3, rulePorts: 2, departmentRules: 4, vmRules: 5 },
  groups: [
    { name: 'g1', addresses: ['10.1.2.0/24', 'fd00:1::/64'] },
    { name: 'g2', addresses: ['10.1.2.3', '192.168.1.1', 'fd00:1::3'] },
  ],
  peers: true,
  icmpNames: ['echo-request', 'destination-unreachable', 'router-advertisement', 'neighbor-solicitation', 'timestamp-request'],
  vmParameters: { ip: ['10.1.2.4'], ipv6: ['fd00:1::4'] },
});

/** Any packet in any of libvirt's chains, including conntrack combinations no first packet has. */
const kernelPacket: fc.Arbitrary<KernelPacket> = fc.oneof(
  fc.record({
    family: fc.constant(4 as const),
    chain: fc.constantFrom('FI', 'FO', 'HI') as fc.Arbitrary<'FI' | 'FO' | 'HI'>,
    protocol: fc.constantFrom('tcp', 'udp', 'sctp', 'icmp') as fc.Arbitrary<'tcp' | 'udp' | 'sctp' | 'icmp'>,
    src: fc.constantFrom(...ADDRESSES4),
    dst: fc.constantFrom(...ADDRESSES4),
    sport: fc.constantFrom(19, ...PORTS, 29, 40000),
    dport: fc.constantFrom(19, ...PORTS, 29, 40000),
    icmpType: fc.constantFrom(0, 3, 8, 11, 13, 14),
    icmpCode: fc.constantFrom(0, 0, 3),
    ctstate: fc.constantFrom('NEW', 'ESTABLISHED', 'RELATED', 'INVALID', 'UNTRACKED') as fc.Arbitrary<KernelPacket['ctstate']>,
    ctdir: fc.constantFrom('ORIGINAL', 'REPLY') as fc.Arbitrary<KernelPacket['ctdir']>,
  }),
  fc.record({
    family: fc.constant(6 as const),
    chain: fc.constantFrom('FI', 'FO', 'HI') as fc.Arbitrary<'FI' | 'FO' | 'HI'>,
    protocol: fc.constantFrom('tcp', 'udp', 'sctp', 'icmpv6') as fc.Arbitrary<'tcp' | 'udp' | 'sctp' | 'icmpv6'>,
    src: fc.constantFrom(...ADDRESSES6),
    dst: fc.constantFrom(...ADDRESSES6),
    sport: fc.constantFrom(...PORTS),
    dport: fc.constantFrom(...PORTS),
    icmpType: fc.constantFrom(1, 2, 128, 129, 133, 134, 135, 136),
    icmpCode: fc.constantFrom(0, 0, 4),
    ctstate: fc.constantFrom('NEW', 'ESTABLISHED', 'RELATED', 'INVALID', 'UNTRACKED') as fc.Arbitrary<KernelPacket['ctstate']>,
    ctdir: fc.constantFrom('ORIGINAL', 'REPLY') as fc.Arbitrary<KernelPacket['ctdir']>,
  }),
).map((p) => {
  // Ports only on tcp/udp/sctp, a type only on ICMP: what the kernel's packets carry.
  const ported = p.protocol === 'tcp' || p.protocol === 'udp' || p.protocol === 'sctp';
  const { sport, dport, icmpType, icmpCode, ...rest } = p;
  return { ...rest, ...(ported ? { sport, dport } : { icmpType, icmpCode }) };
});

function sameVerdicts(input: PolicyInput, packets: KernelPacket[]): number {
  const off = instancesByVm(input, { optimize: false });
  const on = instancesByVm(input, {});
  expect([...on.keys()]).toEqual([...off.keys()]);
  let checked = 0;
  for (const [name, o] of off) {
    const n = on.get(name)!;
    for (const p of packets) {
      const a = evaluateChain(o.instances, p, o.sets);
      const b = evaluateChain(n.instances, p, n.sets);
      expect(b.verdict, `${name} ${JSON.stringify(p)}: unoptimized ${a.instance?.rule.comment}, optimized ${b.instance?.rule.comment}`).toBe(a.verdict);
      checked++;
    }
  }
  return checked;
}

describe('optimizer: the same verdict for every packet (fast-check)', () => {
  it('every packet, every chain, every conntrack state: small world of overlapping rules', () => {
    const packets = fc.array(kernelPacket, { minLength: 50, maxLength: 50 });
    fc.assert(fc.property(smallPolicy, packets, (input, ps) => void sameVerdicts(input, ps)), { numRuns: RUNS });
  });

  it('every packet, every chain: both families, ICMP types, address groups and peers', () => {
    const packets = fc.array(kernelPacket, { minLength: 50, maxLength: 50 });
    fc.assert(fc.property(dualPolicy, packets, (input, ps) => void sameVerdicts(input, ps)), { numRuns: RUNS });
  });

  it('every packet, every chain: the general policy arbitrary', () => {
    const packets = fc.array(kernelPacket, { minLength: 30, maxLength: 30 });
    fc.assert(fc.property(policyInput, packets, (input, ps) => void sameVerdicts(input, ps)), { numRuns: RUNS });
  });

  it('first packets (evaluate) and whole connections (evaluateConnection) decide alike', () => {
    const query = fc.record({
      direction: fc.constantFrom('in', 'out') as fc.Arbitrary<'in' | 'out'>,
      protocol: fc.constantFrom('tcp', 'udp', 'icmp') as fc.Arbitrary<'tcp' | 'udp' | 'icmp'>,
      family: fc.constantFrom(4, 4, 6) as fc.Arbitrary<4 | 6>,
      port: fc.constantFrom(...PORTS),
      vm: fc.constantFrom(...ADDRESSES4),
      remote: fc.constantFrom(...ADDRESSES4),
      remoteIsHost: fc.boolean(),
      listening: fc.boolean(),
    });
    fc.assert(
      fc.property(smallPolicy, fc.array(query, { minLength: 20, maxLength: 20 }), fc.array(packet, { minLength: 10, maxLength: 10 }), (input, queries, ps) => {
        const off = instancesByVm(input, { optimize: false }).get('v1')!;
        const on = instancesByVm(input, {}).get('v1')!;
        for (const q of queries) {
          const conn = {
            direction: q.direction,
            protocol: q.protocol,
            family: q.family,
            ...(q.protocol === 'icmp' ? {} : { port: q.port }),
            vmAddress: q.family === 4 ? q.vm : ADDRESSES6[0]!,
            remoteAddress: q.family === 4 ? q.remote : ADDRESSES6[1]!,
            remoteIsHost: q.remoteIsHost,
            listening: q.listening,
          };
          expect(evaluateConnection(on.instances, conn).outcome, JSON.stringify(conn)).toBe(evaluateConnection(off.instances, conn).outcome);
        }
        for (const p of ps) expect(evaluate(on.root, on.filters, p).verdict).toBe(evaluate(off.root, off.filters, p).verdict);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('optimizer: what it removes', () => {
  const examples = parseManifests(readManifestFiles(['examples']));
  const count = (options: CompileOptions) =>
    Object.fromEntries([...instancesByVm(examples, options)].map(([name, v]) => [name, v.instances.length]));

  it('the examples: iptables + ip6tables rules per interface, before and after', () => {
    // docs/architecture.md ("Fewer rules per interface") quotes these numbers.
    expect(count({ optimize: false })).toEqual({ 'eng-db-01': 182, 'eng-web-01': 189, 'fin-desk-01': 157, 'lab-standalone': 120 });
    expect(count({})).toEqual({ 'eng-db-01': 170, 'eng-web-01': 177, 'fin-desk-01': 151, 'lab-standalone': 114 });
  });

  it("a department's default drop goes (the VM's default drop follows it), a reject stays, the VM's default always stays", () => {
    for (const defaultAction of ['drop', 'reject'] as const) {
      const c = compilePolicy({ services: [], departments: [department('d', { defaultAction })], vms: [vm('v', { department: 'd' })] });
      const d = c.departments.get('d')!;
      if (!d.ok) throw new Error('department did not compile');
      const defaults = d.filter.filter.rules.filter((r) => r.origin.kind === 'default').map((r) => r.action);
      expect(defaults).toEqual(defaultAction === 'drop' ? [] : ['reject', 'reject']);
      const v = c.vms.get('v')!;
      if (!v.ok) throw new Error('vm did not compile');
      expect(v.filter.filter.rules.filter((r) => r.origin.kind === 'default').map((r) => `${r.action} ${r.protocol}`)).toEqual(['drop all', 'drop all-ipv6']);
    }
  });

  it('adjacent port ranges of one band merge; a deny inside a wider deny of the same band goes', () => {
    const c = compilePolicy({
      services: [
        service('a', { ports: [{ protocol: 'tcp', port: 464 }], use: true }),
        service('b', { ports: [{ protocol: 'tcp', port: 465 }, { protocol: 'udp', port: 466 }], use: true }),
        service('ftp', { ports: [{ protocol: 'tcp', port: 21 }, { protocol: 'tcp', port: 1024, endPort: 65535 }] }),
        service('redis', { ports: [{ protocol: 'tcp', port: 6379 }] }),
      ],
      departments: [department('d', { services: [{ name: 'ftp', provide: 'deny' }, { name: 'redis', provide: 'deny' }] })],
      vms: [vm('v', { department: 'd' })],
    });
    const global = c.global.filter.rules.map((r) => `${r.protocol} ${r.dstPortStart}-${r.dstPortEnd}`);
    expect(global).toEqual(['tcp 464-465', 'tcp-ipv6 464-465', 'udp 466-466', 'udp-ipv6 466-466']);
    const d = c.departments.get('d')!;
    if (!d.ok) throw new Error('department did not compile');
    expect(d.filter.filter.rules.map((r) => `${r.action} ${r.direction} ${r.protocol} ${r.dstPortStart}-${r.dstPortEnd}`)).toEqual([
      'drop in tcp 21-21',
      'drop in tcp-ipv6 21-21',
      'drop in tcp 1024-65535',
      'drop in tcp-ipv6 1024-65535',
    ]);
  });

  it('optimize: false gives the rules exactly as generated', () => {
    const on = compilePolicy(examples);
    const off = compilePolicy(examples, { optimize: false });
    expect(off.global.filter.rules.length).toBeGreaterThan(on.global.filter.rules.length);
    expect(off.global.xml).toContain('kerberos use allow by global');
    expect(on.global.xml).toContain('dstportstart="464" dstportend="465" comment="kerberos use allow by global; smtps use allow by global"');
  });
});
