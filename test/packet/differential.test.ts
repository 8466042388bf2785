// Differential test: random valid policies are compiled, defined in the real libvirtd and bound to a
// veth "VM"; random probes with real sockets are classified by the kernel (open / refused / dropped)
// and by `explain`'s model of libvirt's instances. They must agree on every probe. The seed is
// printed; NWF_SEED reproduces a run, NWF_DIFF_POLICIES and NWF_DIFF_PROBES bound it.
// What is bound is the compiler's default output, optimized (src/policy/optimize.ts); every probe
// is also predicted by explain on the UNOPTIMIZED compile of the same policy, and the kernel must
// agree with that too: the optimizer changes no verdict.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compilePolicy, instantiateTree, type NwFilter, type PolicyInput, type RuleInstance } from '../../src/policy/index.js';
import { randomPolicy } from '../helpers/policy-world.js';
import { LAB, type Endpoint, type Lab, type Probe } from './lab.js';
import { PolicyOnLab, describeProbe } from './policy-on-lab.js';

const SEED = Number(process.env.NWF_SEED ?? Date.now() % 2 ** 31);
const POLICIES = Number(process.env.NWF_DIFF_POLICIES ?? 24);
const PROBES_PER_POLICY = Number(process.env.NWF_DIFF_PROBES ?? 48);
const RUN = Date.now().toString(36).slice(-5);

/** Ports the policies and probes use; the last of each list has no listener (refused paths). */
const PORTS = [2000, 2001, 2002, 2003, 2004, 2005, 2006, 2007, 2008, 2009];
const LISTENING = PORTS.slice(0, -2);

let lab: Lab;
let fx: PolicyOnLab;
let vm1: Endpoint;
let peer: Endpoint;

let close: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ lab, fx, close } = await PolicyOnLab.open(`diff${RUN}`, `nwflab-d${RUN}-`));
  vm1 = await lab.addEndpoint('vm1');
  peer = await lab.addEndpoint('peer');
  for (const t of [vm1, peer, 'host'] as const) await fx.listen(t, { tcp: LISTENING, udp: LISTENING });
}, 180_000);

afterAll(async () => {
  await close?.();
}, 120_000);

// ---- random policies over the lab's addresses and ports ------------------------------------------

const port = fc.constantFrom(...PORTS);
/** CIDRs that contain the peer, the VM, the host, all of them, or nothing of the lab (known once the lab is up). */
const policy = (): fc.Arbitrary<PolicyInput> =>
  randomPolicy({
    ports: PORTS,
    cidrs: [`${peer.ipv4}/32`, `${vm1.ipv4}/32`, `${LAB.host4}/32`, `${LAB.net4}.0/24`, `${LAB.net4}.0/28`, '10.0.0.0/8'],
    cidrs6: [`${peer.ipv6}/128`, `${vm1.ipv6}/128`, `${LAB.host6}/128`, `${LAB.net6}::/64`, 'fd00::/8'],
    serviceProtocols: ['tcp', 'udp'],
    maxPriority: 99,
    max: { services: 5, servicePorts: 2, rulePorts: 2, departmentRules: 3, vmRules: 4 },
    // Groups that hold the peer (both families), the host, or neither; peers of department d are v1 itself.
    groups: [
      { name: 'g-peer', addresses: [peer.ipv4, peer.ipv6] },
      { name: 'g-host', addresses: [`${LAB.host4}/32`, `${LAB.host6}/128`] },
      { name: 'g-other', addresses: ['203.0.113.0/24', '2001:db8:9::/48'] },
    ],
    peers: true,
    icmpNames: ['echo-request', 'destination-unreachable', 'echo-reply'],
    vmParameters: { ip: [vm1.ipv4], ipv6: [vm1.ipv6] },
  });

const probe: () => fc.Arbitrary<Probe> = () =>
  fc
    .record({
      pair: fc.constantFrom<[Endpoint | 'host', Endpoint | 'host']>([peer, vm1], [vm1, peer], ['host', vm1], [vm1, 'host']),
      proto: fc.constantFrom('tcp', 'tcp', 'udp', 'udp', 'icmp') as fc.Arbitrary<'tcp' | 'udp' | 'icmp'>,
      family: fc.constantFrom(4, 4, 6, 6) as fc.Arbitrary<4 | 6>,
      port,
    })
    .map(({ pair: [from, to], proto, family, port: p }) => ({
      from,
      to,
      proto,
      family,
      ...(proto === 'icmp' ? {} : { port: p }),
    }));

/**
 * libvirt's instances (the model's) of v1's tree compiled without the optimizer, with the set names
 * of the bound tree (the fixture's lab-private names): the optimizer keeps a rule's set as it is.
 */
function unoptimizedInstances(input: PolicyInput): RuleInstance[] {
  const compiled = compilePolicy(input, { optimize: false });
  const v1 = compiled.vms.get('v1');
  if (!v1?.ok) throw new Error('v1 did not compile without the optimizer');
  const filters = new Map<string, NwFilter>([...compiled.filters].map(([n, f]) => [n, f.filter]));
  return instantiateTree(v1.filter.filter.name, filters).instances.map((i) => (i.set ? { ...i, set: { ...i.set, name: fx.privateSet(i.set.name) } } : i));
}

describe('differential: explain equals the kernel on random policies and probes', () => {
  it(`${POLICIES} random policies x ${PROBES_PER_POLICY} probes (seed ${SEED})`, async () => {
    const policies = fc.sample(policy(), { seed: SEED, numRuns: POLICIES });
    const probes = fc.sample(fc.array(probe(), { minLength: PROBES_PER_POLICY, maxLength: PROBES_PER_POLICY }), { seed: SEED + 1, numRuns: POLICIES });
    const disagreements: string[] = [];
    const verdicts = { open: 0, refused: 0, dropped: 0 };
    let total = 0;
    const instanceCounts = { unoptimized: 0, optimized: 0 };
    const withSets = { policies: 0, sets: 0 };
    const started = Date.now();
    for (const [i, input] of policies.entries()) {
      // A fresh binding per policy also forgets the conntrack entries of earlier probes.
      await fx.apply(input, { v1: vm1 }, (f) => f, { rebind: true });
      const unoptimized = unoptimizedInstances(input);
      instanceCounts.unoptimized += unoptimized.length;
      instanceCounts.optimized += fx.vm('v1').instances.length;
      const sets = fx.vm('v1').compiled.sets.length;
      withSets.policies += sets > 0 ? 1 : 0;
      withSets.sets += sets;
      const batch = probes[i]!;
      const results = await lab.probeAll(batch, { concurrency: 16 });
      results.forEach((r, j) => {
        total++;
        verdicts[r.verdict]++;
        const predicted = fx.predict(batch[j]!);
        if (predicted.verdict !== r.verdict) {
          disagreements.push(`policy ${i}: ${describeProbe(batch[j]!, r.verdict, predicted)}\n  ${JSON.stringify(input)}`);
        }
        const before = fx.predict(batch[j]!, unoptimized);
        if (before.verdict !== r.verdict) {
          disagreements.push(`policy ${i} (explain of the unoptimized compile): ${describeProbe(batch[j]!, r.verdict, before)}\n  ${JSON.stringify(input)}`);
        }
      });
    }
    const agree = total - new Set(disagreements.map((d) => d.split('\n')[0]!.replace(' (explain of the unoptimized compile)', ''))).size;
    process.stdout.write(
      `differential: ${POLICIES} policies, ${total} probes, ${agree} agree with explain of the optimized and of the unoptimized compile ` +
        `(open ${verdicts.open}, refused ${verdicts.refused}, dropped ${verdicts.dropped}) in ${Math.round((Date.now() - started) / 1000)} s, seed ${SEED}; ` +
        `rule instances per interface: ${instanceCounts.unoptimized} unoptimized, ${instanceCounts.optimized} optimized in all; ` +
        `${withSets.policies} policies matched ${withSets.sets} kernel IP sets (address groups, peers)\n`,
    );
    const kinds = new Map<string, number>();
    for (const d of disagreements) {
      const k = /kernel=\w+ explain=\w+ \[[^\]]*\]/.exec(d)?.[0] ?? d;
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    }
    expect(disagreements, [...kinds].map(([k, n]) => `${n} x ${k}`).join('\n') + '\n' + disagreements.slice(0, 5).join('\n')).toEqual([]);
    // A run whose probes all land on one verdict would prove little.
    expect(Math.min(verdicts.open, verdicts.refused, verdicts.dropped)).toBeGreaterThan(0);
  });
});
