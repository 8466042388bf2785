// IPv6, ICMP types, address groups and peer selectors, proven with real packets: policies are
// compiled, their kernel IP sets filled through the agent's ipset module, their filters defined in
// the real libvirtd and bound to a veth "VM" on the lab bridge; real sockets probe them. Every probe
// is held against the documented expectation AND against explain's model (the kernel must agree
// with both), as in scenarios.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_VERSION, AddressGroup } from '../../src/api/index.js';
import type { PolicyInput } from '../../src/policy/index.js';
import { department, service, vm } from '../helpers/builders.js';
import type { Endpoint, Lab, Probe, Verdict } from './lab.js';
import { PolicyOnLab, describeProbe } from './policy-on-lab.js';

const RUN = Date.now().toString(36).slice(-5);
let lab: Lab;
let fx: PolicyOnLab;
let vm1: Endpoint;
let peer: Endpoint;
let close: (() => Promise<void>) | undefined;
const totals = { probes: 0, scenarios: 0 };

const TCP_PORTS = [3001, 3002, 3003, 3004, 3005, 3006];

beforeAll(async () => {
  ({ lab, fx, close } = await PolicyOnLab.open(`dual${RUN}`, `nwflab-6${RUN}-`));
  vm1 = await lab.addEndpoint('vm1');
  peer = await lab.addEndpoint('peer');
  for (const t of [vm1, peer] as const) await fx.listen(t, { tcp: TCP_PORTS, udp: [] });
}, 180_000);

afterAll(async () => {
  await close?.();
  process.stdout.write(`dual-stack packets: ${totals.scenarios} scenarios, ${totals.probes} probes, kernel = documented = explain on every probe\n`);
}, 120_000);

type Case = [Probe, Verdict];

async function expectProbes(cases: Case[]): Promise<void> {
  const results = await lab.probeAll(cases.map(([p]) => p), { concurrency: 16 });
  const wrong: string[] = [];
  results.forEach((r, i) => {
    const [probe, documented] = cases[i]!;
    const predicted = fx.predict(probe);
    if (r.verdict !== documented || predicted.verdict !== r.verdict) {
      wrong.push(`${describeProbe(probe, r.verdict, predicted)} documented=${documented} (${r.detail})`);
    }
  });
  totals.probes += cases.length;
  expect(wrong, wrong.join('\n')).toEqual([]);
}

const tcp = (from: Endpoint, to: Endpoint, port: number, family: 4 | 6): Probe => ({ from, to, proto: 'tcp', family, port });
const ping = (from: Endpoint, to: Endpoint, family: 4 | 6): Probe => ({ from, to, proto: 'icmp', family });
const group = (name: string, addresses: string[]) =>
  AddressGroup.parse({ apiVersion: API_VERSION, kind: 'AddressGroup', metadata: { name }, spec: { addresses } });

describe('IPv6, ICMP types, address groups and peers (real libvirt bindings, kernel IP sets, real sockets)', () => {
  it('a service applies to both families unless restricted; used and provided over IPv6', async () => {
    const input: PolicyInput = {
      services: [
        service('both', { ports: [{ protocol: 'tcp', port: 3001 }], use: true, provide: true }),
        service('v4only', { ports: [{ protocol: 'tcp', port: 3002, family: 'ipv4' }], use: true, provide: true }),
        service('v6only', { ports: [{ protocol: 'tcp', port: 3003, family: 'ipv6' }], use: false, provide: true }),
      ],
      departments: [],
      vms: [vm('v1', { parameters: { ip: [vm1.ipv4], ipv6: [vm1.ipv6] } })],
    };
    await fx.apply(input, { v1: vm1 });
    await expectProbes([
      [tcp(peer, vm1, 3001, 6), 'open'], // provided over IPv6
      [tcp(vm1, peer, 3001, 6), 'open'], // used over IPv6
      [tcp(peer, vm1, 3001, 4), 'open'],
      [tcp(peer, vm1, 3002, 4), 'open'],
      [tcp(peer, vm1, 3002, 6), 'dropped'], // family: ipv4
      [tcp(peer, vm1, 3003, 6), 'open'],
      [tcp(peer, vm1, 3003, 4), 'dropped'], // family: ipv6
      [tcp(vm1, peer, 3003, 6), 'dropped'], // not used
      [tcp(peer, vm1, 3004, 6), 'dropped'], // nothing allows it: IPv6 is closed by default
    ]);
    totals.scenarios++;
  });

  it('IPv6 is closed by default and opened by a rule with an IPv6 source; an IPv4 rule does not open IPv6', async () => {
    const closed: PolicyInput = { services: [], departments: [], vms: [vm('v1', { parameters: { ip: [vm1.ipv4], ipv6: [vm1.ipv6] } })] };
    await fx.apply(closed, { v1: vm1 });
    await expectProbes([
      [tcp(peer, vm1, 3004, 6), 'dropped'],
      [tcp(vm1, peer, 3004, 6), 'dropped'],
      [ping(peer, vm1, 6), 'dropped'],
    ]);
    const opened: PolicyInput = {
      ...closed,
      vms: [
        vm('v1', {
          parameters: { ip: [vm1.ipv4], ipv6: [vm1.ipv6] },
          rules: [
            { action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 3004 }], source: `${peer.ipv6}/128` },
            { action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 3005 }], source: `${peer.ipv4}/32` },
            { action: 'accept', direction: 'out', protocol: 'tcp', ports: [{ port: 3006 }], family: 'ipv6' },
          ],
        }),
      ],
    };
    await fx.apply(opened, { v1: vm1 });
    await expectProbes([
      [tcp(peer, vm1, 3004, 6), 'open'],
      [tcp(peer, vm1, 3004, 4), 'dropped'], // the rule's source is IPv6: the rule is IPv6 only
      [tcp(peer, vm1, 3005, 4), 'open'],
      [tcp(peer, vm1, 3005, 6), 'dropped'],
      [tcp(vm1, peer, 3006, 6), 'open'],
      [tcp(vm1, peer, 3006, 4), 'dropped'],
    ]);
    totals.scenarios++;
  });

  it('ICMP echo by name in both families: the ping service answers pings, nothing else of ICMP opens', async () => {
    const input: PolicyInput = {
      services: [service('ping', { ports: [{ protocol: 'icmp', icmp: { name: 'echo-request' } }], use: false, provide: true })],
      departments: [],
      vms: [vm('v1', { parameters: { ip: [vm1.ipv4], ipv6: [vm1.ipv6] } })],
    };
    await fx.apply(input, { v1: vm1 });
    await expectProbes([
      [ping(peer, vm1, 4), 'open'], // echo-request in, its reply (ESTABLISHED) out
      [ping(peer, vm1, 6), 'open'],
      [ping(vm1, peer, 4), 'dropped'], // not used
      [ping(vm1, peer, 6), 'dropped'],
    ]);
    totals.scenarios++;
  });

  it('an address group as a source, changed at run time: the probe flips with no filter redefined', async () => {
    const policy = (addresses: string[]): PolicyInput => ({
      addressGroups: [group('admins', addresses)],
      services: [],
      departments: [],
      vms: [
        vm('v1', {
          parameters: { ip: [vm1.ipv4], ipv6: [vm1.ipv6] },
          rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 3001 }], sourceGroup: 'admins' }],
        }),
      ],
    });
    await fx.apply(policy(['203.0.113.0/24', '2001:db8:1::/48']), { v1: vm1 });
    const xmlBefore = await fx.filterXml(fx.vm('v1').compiled.filter.filter.name);
    const bindingsBefore = JSON.stringify(await fx.bindings());
    await expectProbes([
      [tcp(peer, vm1, 3001, 4), 'dropped'],
      [tcp(peer, vm1, 3001, 6), 'dropped'],
    ]);
    await fx.apply(policy(['203.0.113.0/24', '2001:db8:1::/48', peer.ipv4, `${peer.ipv6}/128`]), { v1: vm1 });
    await expectProbes([
      [tcp(peer, vm1, 3001, 4), 'open'],
      [tcp(peer, vm1, 3001, 6), 'open'],
      [tcp(peer, vm1, 3002, 4), 'dropped'], // the group opens the rule's port only
    ]);
    // A membership change is a kernel set update: the filter libvirt holds and the binding stay as they were.
    expect(await fx.filterXml(fx.vm('v1').compiled.filter.filter.name)).toBe(xmlBefore);
    expect(JSON.stringify(await fx.bindings())).toBe(bindingsBefore);
    await fx.apply(policy([`${peer.ipv6}/128`]), { v1: vm1 });
    await expectProbes([
      [tcp(peer, vm1, 3001, 4), 'dropped'],
      [tcp(peer, vm1, 3001, 6), 'open'],
    ]);
    totals.scenarios++;
  });

  it('a department peer selector: a VM joins the department and becomes reachable, leaves and is not', async () => {
    const policy = (peerDepartment: string | undefined): PolicyInput => ({
      services: [],
      departments: [
        department('eng', { rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 3002 }], sourcePeers: { department: 'eng' } }] }),
        department('sales'),
      ],
      vms: [
        vm('v1', { department: 'eng', parameters: { ip: [vm1.ipv4], ipv6: [vm1.ipv6] } }),
        // The peer endpoint is the VM that joins and leaves (its own filter is not bound here).
        vm('peervm', { ...(peerDepartment ? { department: peerDepartment } : {}), parameters: { ip: [peer.ipv4], ipv6: [peer.ipv6] } }),
      ],
    });
    await fx.apply(policy('sales'), { v1: vm1 });
    await expectProbes([
      [tcp(peer, vm1, 3002, 4), 'dropped'],
      [tcp(peer, vm1, 3002, 6), 'dropped'],
    ]);
    await fx.apply(policy('eng'), { v1: vm1 });
    await expectProbes([
      [tcp(peer, vm1, 3002, 4), 'open'],
      [tcp(peer, vm1, 3002, 6), 'open'],
      [tcp(peer, vm1, 3003, 4), 'dropped'],
    ]);
    await fx.apply(policy(undefined), { v1: vm1 });
    await expectProbes([
      [tcp(peer, vm1, 3002, 4), 'dropped'],
      [tcp(peer, vm1, 3002, 6), 'dropped'],
    ]);
    totals.scenarios++;
  });

  it('a drop from a group beats a lower level accept, in both families', async () => {
    const input: PolicyInput = {
      addressGroups: [group('blocked', [peer.ipv4, peer.ipv6])],
      services: [service('web', { ports: [{ protocol: 'tcp', port: 3003 }], provide: true })],
      departments: [],
      vms: [vm('v1', { parameters: { ip: [vm1.ipv4], ipv6: [vm1.ipv6] }, rules: [{ action: 'drop', direction: 'in', protocol: 'all', sourceGroup: 'blocked' }] })],
    };
    await fx.apply(input, { v1: vm1 });
    await expectProbes([
      [tcp(peer, vm1, 3003, 4), 'dropped'],
      [tcp(peer, vm1, 3003, 6), 'dropped'],
      [tcp(vm1, peer, 3003, 4), 'dropped'], // nothing allows the VM to use it
    ]);
    await fx.apply({ ...input, addressGroups: [group('blocked', ['203.0.113.9'])] }, { v1: vm1 });
    await expectProbes([
      [tcp(peer, vm1, 3003, 4), 'open'],
      [tcp(peer, vm1, 3003, 6), 'open'],
    ]);
    totals.scenarios++;
  });
});
