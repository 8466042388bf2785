// The instantiation model (src/policy/instantiate.ts, which `explain` evaluates) against what a real
// libvirtd installs: every example VM and random policies are compiled, defined, bound to a tap
// device, and each of the six chains (FI/FO/HI, IPv4 and IPv6) read back with iptables -S must equal
// the model rule for rule (order within one priority aside: libvirt does not promise it, and the
// compiler never lets two actions share a priority).
import { execFileSync, spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LibvirtClient, NwFilterBinding } from '../../../src/libvirt/index.js';
import {
  chainOf,
  compilePolicy,
  filterUuid,
  instantiateTree,
  renderFilterXml,
  type NwFilter,
  type RuleInstance,
  type VmCompiled,
} from '../../../src/policy/index.js';
import { policyInput } from '../../helpers/arbitraries.js';
import { randomPolicy } from '../../helpers/policy-world.js';
import { parseManifests } from '../../../src/api/index.js';
import { readManifestFiles } from '../../../src/cli/files.js';
import { modelRule, readChain, ruleKey, type ChainRule } from '../../helpers/iptables.js';
import { newClient, prefix, removeFilters } from './support.js';

const P = prefix('inst');
const tap = `nwfi${Date.now().toString(36).slice(-6)}`;
const SEED = Number(process.env.NWF_SEED ?? Date.now() % 2 ** 31);
const RANDOM_TREES = Number(process.env.NWF_INSTANTIATION_RUNS ?? 10);

/** Kernel IP sets under test-private names (`nwfi<run>-<n>`: at most 31 characters, never an agent's `nwf4-`/`nwf6-`). */
const SET_PREFIX = `nwfi${Date.now().toString(36).slice(-5)}-`;
const privateSets = new Map<string, string>();
const privateSet = (name: string): string => {
  let p = privateSets.get(name);
  if (!p) privateSets.set(name, (p = `${SET_PREFIX}${privateSets.size}`));
  return p;
};

/** The VM's tree under test-private names (filters and sets), so that nothing else on this machine is touched. */
function privateTree(vm: VmCompiled): { root: string; filters: NwFilter[] } {
  const rename = (n: string): string => (vm.tree.includes(n) ? `${P}-${n}` : n);
  const filters = vm.treeFilters.map(({ filter }) => {
    const name = rename(filter.name);
    const rules = filter.rules.map((r) => (r.set ? { ...r, set: { ...r.set, name: privateSet(r.set.name) } } : r));
    return { ...filter, name, uuid: filterUuid(name), refs: filter.refs.map(rename), rules };
  });
  return { root: rename(vm.filter.filter.name), filters };
}

/** libvirt's iptables rules fail to instantiate on a set that does not exist: create the tree's sets first. */
function createSets(vm: VmCompiled): void {
  for (const s of vm.sets) {
    execFileSync('ipset', ['create', '-exist', privateSet(s.name), s.type, 'family', s.family === 4 ? 'inet' : 'inet6']);
  }
}

/** Compares in runs of equal priority, each as a multiset. */
function expectChainEqual(actual: ChainRule[], model: RuleInstance[], what: string): void {
  expect(actual.length, `${what}: rule count\nkernel: ${actual.map(ruleKey).join('\n')}`).toBe(model.length);
  let i = 0;
  while (i < model.length) {
    let j = i;
    while (j < model.length && model[j]!.rule.priority === model[i]!.rule.priority) j++;
    const want = model.slice(i, j).map((m) => ruleKey(modelRule(m))).sort();
    const got = actual.slice(i, j).map(ruleKey).sort();
    expect(got, `${what}: rules ${i}..${j - 1} (priority ${model[i]!.rule.priority})`).toEqual(want);
    i = j;
  }
}

describe('libvirt instantiates exactly what the model says', () => {
  let client: LibvirtClient;
  let binding: NwFilterBinding | undefined;
  let compared = 0;

  beforeAll(async () => {
    execFileSync('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    client = newClient();
    await client.connect();
  });
  afterAll(async () => {
    if (binding) await client.deleteBinding(binding).catch(() => undefined);
    await removeFilters(client, P);
    await client.close();
    spawnSync('ip', ['link', 'del', tap]);
    for (const name of privateSets.values()) spawnSync('ipset', ['destroy', name]);
    process.stdout.write(`instantiation: ${compared} chains compared with the kernel (seed ${SEED})\n`);
  });

  async function check(vm: VmCompiled, label: string): Promise<void> {
    if (binding) await client.deleteBinding(binding);
    binding = undefined;
    const { root, filters } = privateTree(vm);
    createSets(vm);
    for (const f of filters) await client.defineFilter(renderFilterXml(f), { adoptExistingUuid: true });
    const params = vm.binding.parameters.map((p) => `<parameter name='${p.name}' value='${p.value}'/>`).join('');
    binding = await client.createBinding(
      `<filterbinding><owner><name>${P}-owner</name><uuid>6f1c3c1e-3b7a-4a5e-9d2a-1b2c3d4e5f61</uuid></owner>` +
        `<portdev name='${tap}'/><mac address='52:54:00:12:34:56'/><filterref filter='${root}'>${params}</filterref></filterbinding>`,
    );
    const { instances } = instantiateTree(root, new Map(filters.map((f) => [f.name, f])));
    for (const family of [4, 6] as const) {
      for (const chain of ['FI', 'FO', 'HI'] as const) {
        expectChainEqual(readChain(family, chain, tap), chainOf(instances, family, chain), `${label} IPv${family} ${chain}`);
        compared++;
      }
    }
  }

  it('for every example VM', async () => {
    const compiled = compilePolicy(parseManifests(readManifestFiles(['examples'])));
    for (const [name, vm] of compiled.vms) {
      if (!vm.ok) throw new Error(`${name} did not compile`);
      await check(vm, name);
    }
  });

  it(`for ${RANDOM_TREES} random dual-stack policies with ICMP types, address groups and peers (seed ${SEED})`, async () => {
    const world = randomPolicy({
      ports: [20, 21, 22, 23, 1000],
      cidrs: ['10.0.0.0/8', '10.1.2.3/32'],
      cidrs6: ['fd00::/16', 'fd00:1::3/128'],
      serviceProtocols: ['tcp', 'udp', 'sctp'],
      maxPriority: 5,
      max: { services: 4, servicePorts: 2, rulePorts: 2, departmentRules: 3, vmRules: 4 },
      groups: [{ name: 'g1', addresses: ['10.1.0.0/16', 'fd00:1::/64'] }],
      peers: true,
      icmpNames: ['echo-request', 'destination-unreachable', 'router-advertisement', 'neighbor-solicitation'],
      vmParameters: { ip: ['10.1.2.4'], ipv6: ['fd00:1::4'] },
    });
    for (const [i, input] of fc.sample(world, { seed: SEED, numRuns: RANDOM_TREES }).entries()) {
      const vm = compilePolicy(input).vms.get('v1');
      if (!vm?.ok) throw new Error(`random dual ${i} did not compile: ${JSON.stringify(vm?.diagnostics)}`);
      await check(vm, `random dual ${i}`);
    }
  });

  it(`for ${RANDOM_TREES} random policies (seed ${SEED})`, async () => {
    const inputs = fc.sample(policyInput, { seed: SEED, numRuns: RANDOM_TREES });
    for (const [i, input] of inputs.entries()) {
      const compiled = compilePolicy(input);
      const vm = [...compiled.vms.values()].find((v): v is VmCompiled => v.ok && !v.treeFilters.some((f) => f.filter.refs.includes('clean-traffic')));
      if (!vm) continue;
      await check(vm, `random ${i} (${vm.name})`);
    }
  });
});
