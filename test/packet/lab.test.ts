// The lab itself, judged by the kernel: without a binding everything between two "VMs" is open, a
// closed port is refused; a tiny filter of our own bound to vm1 (as libvirt binds a running VM's
// tap) drops and rejects exactly what it says, in the family it says; the host, the routed far
// network with its path-MTU discovery and DHCP still work; unbinding restores. And many probes
// finish in bounded time.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LibvirtClient } from '../../src/libvirt/index.js';
import { Lab, type Endpoint, type Probe, type ProbeResult, type Target, type Verdict } from './lab.js';

const SMOKE = 'nwflab-smoke';
// IPv4 only except 2223: libvirt's <tcp>/<udp> are IPv4 (ip6tables gets <tcp-ipv6>/<udp-ipv6>).
const SMOKE_XML = `<filter name='${SMOKE}' chain='root'>
  <rule action='drop' direction='in' priority='500'><tcp dstportstart='2222' state='NEW'/></rule>
  <rule action='reject' direction='in' priority='510'><tcp dstportstart='2223'/></rule>
  <rule action='reject' direction='in' priority='510'><tcp-ipv6 dstportstart='2223'/></rule>
  <rule action='drop' direction='in' priority='520'><udp dstportstart='5353'/></rule>
</filter>`;
// Drops exactly the ICMP errors path-MTU discovery needs on the way to the VM.
const NO_PMTU = 'nwflab-smoke-nopmtu';
const NO_PMTU_XML = `<filter name='${NO_PMTU}' chain='root'>
  <rule action='drop' direction='in' priority='100'><icmp type='3' code='4'/></rule>
  <rule action='drop' direction='in' priority='100'><icmpv6 type='2'/></rule>
</filter>`;

const TCP = [22, 2222, 2223];
const UDP = [53, 5353];
const CLOSED_TCP = 23;
const CLOSED_UDP = 54;
const FAR_PORT = 9000;
const FAMILIES = [4, 6] as const;

let lab: Lab;
let client: LibvirtClient;
let vm: Endpoint;
let peer: Endpoint;
let far: Endpoint;

const name = (t: Target): string => (t === 'host' ? 'host' : t.name);

/** "label: verdict" lines, so that a failure shows every probe that disagreed at once. */
const table = (rs: ProbeResult[]): string[] => rs.map((r) => `${r.label}: ${r.verdict}`);
const expected = (ps: Probe[], verdict: (p: Probe) => Verdict, results: ProbeResult[]): string[] =>
  ps.map((p, i) => `${results[i]?.label ?? `${name(p.from)} -> ${name(p.to)}`}: ${verdict(p)}`);

/** The probes that disagree, with why and how long they took (is a `dropped` just a slow machine?). */
function disagreements(rs: ProbeResult[], verdict: (p: Probe) => Verdict): void {
  const bad = rs.filter((r) => r.verdict !== verdict(r.probe));
  if (bad.length) console.log(`disagreeing probes:\n${bad.map((r) => `  ${r.label}: ${r.verdict} (${r.detail}, ${r.ms} ms), expected ${verdict(r.probe)}`).join('\n')}`);
}

async function check(ps: Probe[], verdict: (p: Probe) => Verdict): Promise<ProbeResult[]> {
  const rs = await lab.probeAll(ps);
  disagreements(rs, verdict);
  expect(table(rs)).toEqual(expected(ps, verdict, rs));
  return rs;
}

/** tcp on `tcp`, udp on `udp`, icmp; both families; from `from` to `to`. */
function matrix(from: Target, to: Target, tcp: number[], udp: number[]): Probe[] {
  return FAMILIES.flatMap((family): Probe[] => [
    ...tcp.map((port): Probe => ({ from, to, proto: 'tcp', family, port })),
    ...udp.map((port): Probe => ({ from, to, proto: 'udp', family, port })),
    { from, to, proto: 'icmp', family },
  ]);
}

beforeAll(async () => {
  const socketPath = inject('libvirtSocket');
  client = new LibvirtClient({ socketPath });
  await client.connect();
  const started = performance.now();
  // Setup lines (and any wait for another test process's lab) with their times, for slow runs.
  lab = await Lab.create({ name: 'smoke', socketPath, log: (line) => console.log(`${Math.round(performance.now() - started)} ms ${line}`) });
  vm = await lab.addEndpoint('vm1');
  peer = await lab.addEndpoint('peer');
  await lab.addRouter('r1');
  far = await lab.addFarEndpoint('far1');
  const ports = { tcp: TCP, udp: UDP };
  await Promise.all([lab.listen(vm, ports), lab.listen(peer, ports), lab.listen('host', ports), lab.listen(far, { tcp: [...TCP, FAR_PORT], udp: UDP })]);
  console.log(`lab setup (bridge, 4 namespaces, agents, listeners): ${Math.round(performance.now() - started)} ms`);
  await client.defineFilter(SMOKE_XML);
  await client.defineFilter(NO_PMTU_XML);
});

afterAll(async () => {
  const started = performance.now();
  // Bindings go with the lab; only then can libvirt undefine the filters.
  await lab?.close();
  console.log(`lab teardown: ${Math.round(performance.now() - started)} ms`);
  for (const f of [SMOKE, NO_PMTU]) await client?.undefineFilter(f).catch(() => undefined);
  await client?.close();
});

describe('without a binding', () => {
  it('everything between vm1 and peer is open: tcp, udp, icmp, IPv4 and IPv6, both ways', async () => {
    await check([...matrix(peer, vm, TCP, UDP), ...matrix(vm, peer, TCP, UDP)], () => 'open');
  });

  it('the host, the far network (through the router) and vm1 reach each other', async () => {
    await check([...matrix('host', vm, TCP, UDP), ...matrix(vm, 'host', TCP, UDP), ...matrix(far, vm, [22], [53]), ...matrix(vm, far, [22], [53])], () => 'open');
  });

  it('a closed port is refused (RST; ICMP port unreachable on a connected UDP socket)', async () => {
    await check([...matrix(peer, vm, [CLOSED_TCP], [CLOSED_UDP]), ...matrix('host', vm, [CLOSED_TCP], [CLOSED_UDP])].filter((p) => p.proto !== 'icmp'), () => 'refused');
  });

  it('DHCP: udhcpc in vm1 gets a lease from dnsmasq on peer, unicast and broadcast replies', async () => {
    const server = await lab.dhcpServer(peer, { range: ['198.18.0.100', '198.18.0.150'] });
    try {
      for (const broadcast of [false, true]) {
        const lease = await lab.dhcpClient(vm, { timeoutMs: 5000, broadcast });
        expect(lease, lease.output).toMatchObject({ leased: true, server: peer.ipv4 });
        expect(lease.ip).toMatch(/^198\.18\.0\.1([0-4]\d|50)$/);
      }
    } finally {
      await server.stop();
    }
  });

  it('path MTU: a bulk transfer from vm1 to the far network learns 1280 from the router', async () => {
    for (const family of FAMILIES) {
      const t = await lab.transfer({ from: vm, to: far, family, port: FAR_PORT });
      expect({ verdict: t.verdict, pathMtu: t.pathMtu }, `${t.label}: ${t.detail}`).toEqual({ verdict: 'open', pathMtu: 1280 });
    }
  });
});

describe(`${SMOKE} bound to vm1`, () => {
  beforeAll(async () => {
    await lab.bind(vm, SMOKE);
  });
  afterAll(async () => {
    await lab.unbind(vm);
  });

  /**
   * What the smoke filter does to a probe. Its rules are all direction='in': probes from vm1 pass.
   * Towards vm1, bridged probes meet the FO- chain. Probes from the host are locally generated: they
   * never traverse FORWARD, so FO- (matched with --physdev-is-bridged) does not see them; but vm1's
   * answers to the host go through HI-, where libvirt puts each stateless rule's reverse half
   * (--sport 2223 REJECT, --sport 5353 DROP): the answer is rejected or dropped on its way back, and
   * the host's probe sees nothing at all.
   */
  function smoke(p: Probe): Verdict {
    if (p.to !== vm) return 'open';
    if ((p.proto === 'tcp' && p.port === CLOSED_TCP) || (p.proto === 'udp' && p.port === CLOSED_UDP)) return 'refused';
    const udp5353v4 = p.family === 4 && p.proto === 'udp' && p.port === 5353;
    const tcp2223 = p.proto === 'tcp' && p.port === 2223;
    if (p.from === 'host') return tcp2223 || udp5353v4 ? 'dropped' : 'open';
    if (tcp2223) return 'refused';
    if (udp5353v4 || (p.family === 4 && p.proto === 'tcp' && p.port === 2222)) return 'dropped';
    return 'open';
  }

  it('libvirt installed FI-/FO-/HI- chains on the port: IPv4 and IPv6 as the filter says', async () => {
    const chains = await lab.chains(vm);
    expect(chains.iptables).toContain(`-A FO-${vm.port} -p tcp -m tcp --dport 2222 -m conntrack --ctstate NEW -j DROP`);
    expect(chains.iptables).toContain(`-A FO-${vm.port} -p udp -m udp --dport 5353 -j DROP`);
    expect(chains.ip6tables).toContain(`-A FO-${vm.port} -p tcp -m tcp --dport 2223 -j REJECT --reject-with icmp6-port-unreachable`);
    expect(chains.ip6tables).not.toContain('2222');
  });

  it('peer and far1 -> vm1: 2222 and 5353 dropped (IPv4 only), 2223 refused (a REJECT, both families), the rest open', async () => {
    await check([...matrix(peer, vm, [...TCP, CLOSED_TCP], [...UDP, CLOSED_UDP]), ...matrix(far, vm, [...TCP, CLOSED_TCP], [...UDP, CLOSED_UDP])], smoke);
  });

  it('host -> vm1 is not filtered on the way in; only its answers meet HI- (2223 and udp/4 5353 vanish)', async () => {
    await check(matrix('host', vm, [...TCP, CLOSED_TCP], [...UDP, CLOSED_UDP]), smoke);
  });

  it('vm1 -> others: open (the filter has only incoming rules)', async () => {
    await check([...matrix(vm, peer, TCP, UDP), ...matrix(vm, 'host', TCP, UDP), ...matrix(vm, far, [22], [53])], () => 'open');
  });

  it('path MTU still works: the router\'s ICMP errors reach vm1 through FO-', async () => {
    for (const family of FAMILIES) {
      const t = await lab.transfer({ from: vm, to: far, family, port: FAR_PORT });
      expect({ verdict: t.verdict, pathMtu: t.pathMtu }, `${t.label}: ${t.detail}`).toEqual({ verdict: 'open', pathMtu: 1280 });
    }
  });

  it('DHCP through the bound port (broadcast DISCOVER from 0.0.0.0 through FI-)', async () => {
    const server = await lab.dhcpServer(peer, { range: ['198.18.0.100', '198.18.0.150'] });
    try {
      for (const broadcast of [false, true]) {
        const lease = await lab.dhcpClient(vm, { timeoutMs: 5000, broadcast });
        expect(lease.leased, lease.output).toBe(true);
      }
    } finally {
      await server.stop();
    }
  });

  it('300 probes with probeAll finish in bounded time, each with the verdict the filter implies', async () => {
    const round = [...matrix(peer, vm, [...TCP, CLOSED_TCP], [...UDP, CLOSED_UDP]), ...matrix('host', vm, [...TCP, CLOSED_TCP], [...UDP, CLOSED_UDP]), ...matrix(far, vm, [...TCP, CLOSED_TCP], [...UDP, CLOSED_UDP]), ...matrix(vm, peer, TCP, UDP)];
    const probes = Array.from({ length: 300 }, (_, i) => round[i % round.length]!);
    const started = performance.now();
    const rs = await lab.probeAll(probes, { concurrency: 32 });
    const ms = Math.round(performance.now() - started);
    const counts = rs.reduce<Record<string, number>>((c, r) => ({ ...c, [r.verdict]: (c[r.verdict] ?? 0) + 1 }), {});
    console.log(`probeAll: ${rs.length} probes in ${ms} ms at concurrency 32 (${JSON.stringify(counts)})`);
    disagreements(rs, smoke);
    expect(table(rs)).toEqual(expected(probes, smoke, rs));
    // ~40 of them wait out the 700 ms drop timeout; generous for a loaded 2-core machine.
    expect(ms).toBeLessThan(60_000);
  });
});

describe('path MTU needs ICMP: a filter that drops "fragmentation needed" / "packet too big"', () => {
  it('stalls the bulk transfer to the far network in both families (a PMTU black hole)', async () => {
    await lab.bind(vm, NO_PMTU);
    try {
      for (const family of FAMILIES) {
        const t = await lab.transfer({ from: vm, to: far, family, port: FAR_PORT, timeoutMs: 3000 });
        expect(t.verdict, `${t.label}: ${t.detail}`).toBe('dropped');
        expect(t.pathMtu).toBeUndefined();
      }
    } finally {
      await lab.unbind(vm);
    }
  });
});

describe('after unbinding', () => {
  it('everything is open again, and the chains are gone', async () => {
    await check([...matrix(peer, vm, TCP, UDP), ...matrix(far, vm, TCP, UDP)], () => 'open');
    const t = await lab.transfer({ from: vm, to: far, family: 4, port: FAR_PORT });
    expect(t.verdict).toBe('open');
    expect(await lab.chains(vm)).toEqual({ iptables: '', ip6tables: '', ebtables: '' });
  });
});
