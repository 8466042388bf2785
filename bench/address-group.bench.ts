// How long an address-group membership change takes to reach the kernel with 50 bound interfaces,
// for the two designs of docs/address-sets.md, side by side in one run:
//   redefine  the group's CIDRs inlined into the department filter, one accept rule per CIDR; a
//             change is a redefine of that filter, and libvirt rebuilds the chains of every bound
//             interface whose tree contains it, inside the define call;
//   ipset     one accept rule over a kernel IP set (`<all ipset=... ipsetflags='src,dst'/>` on a
//             hash:net,port set holding "<cidr>,tcp:<port>": libvirt 9.0 keeps ipset only on all /
//             all-ipv6, see the doc); a change is one sync() of src/netfilter/ipset.ts, no libvirt call.
//
// Setup: the packet lab (test/packet/lab.ts) gives a real VM endpoint per design (`vma`, `vmb`, a
// veth in a namespace, listening on tcp PORT) and a `peer`; each design's VM endpoint plus
// BENCH_INTERFACES-1 tap devices (`nwfg<pid><a|b><i>`, root namespace) are bound, each to a root
// filter of its own that references the design's department filter (private names `benchg-<pid>-`,
// not `nwf-`, which a running agent would remove). The department: related ICMP errors, IPv6
// neighbour discovery, ssh from 10.0.0.0/8, https and dns out, the group rule (BENCH_CIDRS CIDRs,
// default 20, none of which holds the peer), the final all / all-ipv6 inout drops at priority 1000.
//
// Each round (BENCH_ROUNDS, default 3; the designs' order alternates): with the peer not in the
// group, a probe peer -> vm tcp/PORT must be dropped; the peer's /32 is added and probes start every
// BENCH_PROBE_EVERY_MS (50) ms, each waiting BENCH_PROBE_MS (300) ms; the time to the first probe that
// got through is "to open" (its send time; the granularity is the probe interval), and "call" is how
// long the define / sync took. Then the /32 is removed and the time to the first dropped probe is
// "to dropped". Also counted: libvirt defines and ipset processes per change, iptables + ip6tables
// rules per interface (`-A` lines of iptables-save / ip6tables-save naming the interface, libvirt's
// jumps included). Prints a table of medians and the ratios. No assertions on times.
//
// Everything is removed at the end, also after a failure or Ctrl-C (after the call in flight, which
// for the redefine design can take a minute): bindings, filters, taps, sets, the lab.
//
// Needs root, the libvirtd of hack/libvirt-up.sh, `hack/netlab.sh up` (host sysctls of the lab) and
// the ipset tool. Holds nothing of libvirtd's, so wrap it:
//   flock /tmp/nwf-libvirt.lock npm run bench:groups
// Env: BENCH_INTERFACES (50), BENCH_CIDRS (20), BENCH_ROUNDS (3), BENCH_PROBE_MS (300),
// BENCH_PROBE_EVERY_MS (50), NWF_LIBVIRT_SOCKET. With 50 interfaces one redefine takes about a minute.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { LibvirtClient, type NwFilterBinding } from '../src/libvirt/index.js';
import { IpSetManager, type DesiredSet } from '../src/netfilter/index.js';
import { Lab, type Endpoint, type Verdict } from '../test/packet/lab.js';

const INTERFACES = Number(process.env.BENCH_INTERFACES ?? 50);
const CIDRS = Number(process.env.BENCH_CIDRS ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PROBE_MS = Number(process.env.BENCH_PROBE_MS ?? 300);
const PROBE_EVERY_MS = Number(process.env.BENCH_PROBE_EVERY_MS ?? 50);
const SOCKET = process.env.NWF_LIBVIRT_SOCKET ?? '/var/run/libvirt/libvirt-sock';
const PORT = 8443;
const PREFIX = `benchg-${process.pid}-`;
const SET_PREFIX = `benchg${process.pid}-`;
const SET = `${SET_PREFIX}web`;
const TAP = `nwfg${process.pid % 10_000_000}`;
// A define rebuilds every bound interface inside the call (about 1.3 s each on a 2-CPU machine).
const DEFINE_TIMEOUT_MS = 30 * 60_000;

type Design = 'redefine' | 'ipset';
const DESIGNS: Design[] = ['redefine', 'ipset'];
const letter = (d: Design): string => (d === 'redefine' ? 'a' : 'b');

/** Realistic group members: a few /16s, /24s and single hosts of private ranges (matched, never sent to). */
const groupCidrs = (): string[] =>
  Array.from({ length: CIDRS }, (_, i) => (i % 3 === 0 ? `10.${20 + i}.0.0/16` : i % 3 === 1 ? `172.16.${i}.0/24` : `192.168.${i}.17/32`));

const uuids = new Map<string, string>();
const uuidOf = (name: string): string => {
  let u = uuids.get(name);
  if (!u) uuids.set(name, (u = randomUUID()));
  return u;
};

const filterName = (d: Design, what: string): string => `${PREFIX}${letter(d)}-${what}`;

/** The department filter of a design with the group holding `members`. */
function departmentXml(d: Design, members: readonly string[]): string {
  const name = filterName(d, 'dept');
  const rule = (attrs: string, body: string): string => `<rule ${attrs}>${body}</rule>`;
  const rules = [
    rule(`action='accept' direction='inout' priority='-1000'`, `<all state='RELATED'/>`),
    rule(`action='accept' direction='inout' priority='-1000'`, `<all-ipv6 state='RELATED'/>`),
    ...[135, 136].flatMap((t) =>
      ['in', 'out'].map((dir) => rule(`action='accept' direction='${dir}' priority='-1000' statematch='false'`, `<icmpv6 type='${t}'/>`)),
    ),
    rule(`action='accept' direction='in' priority='-380'`, `<tcp srcipaddr='10.0.0.0' srcipmask='8' dstportstart='22'/>`),
    rule(`action='accept' direction='out' priority='100'`, `<tcp dstportstart='443'/>`),
    rule(`action='accept' direction='out' priority='100'`, `<udp dstportstart='53'/>`),
    ...(d === 'redefine'
      ? members.map((m) => {
          const [addr, prefix] = m.split('/');
          return rule(`action='accept' direction='in' priority='-400'`, `<tcp srcipaddr='${addr}' srcipmask='${prefix}' dstportstart='${PORT}'/>`);
        })
      : [rule(`action='accept' direction='in' priority='-400'`, `<all ipset='${SET}' ipsetflags='src,dst'/>`)]),
    rule(`action='drop' direction='inout' priority='1000'`, `<all/>`),
    rule(`action='drop' direction='inout' priority='1000'`, `<all-ipv6/>`),
  ];
  return `<filter name='${name}' chain='root'><uuid>${uuidOf(name)}</uuid>${rules.join('')}</filter>`;
}

function rootXml(d: Design, i: number): string {
  const name = filterName(d, `vm-${i}`);
  return (
    `<filter name='${name}' chain='root'><uuid>${uuidOf(name)}</uuid>` +
    `<rule action='accept' direction='in' priority='-580'><tcp dstportstart='8080'/></rule>` +
    `<filterref filter='${filterName(d, 'dept')}'/></filter>`
  );
}

const desiredSet = (members: readonly string[]): Map<string, DesiredSet> =>
  new Map([[SET, { family: 4, type: 'hash:net,port', members: members.map((m) => `${m},tcp:${PORT}`) }]]);

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });

/** iptables + ip6tables rules (`-A` lines) naming each of `devs`, averaged. */
function rulesPerInterface(devs: readonly string[]): number {
  const lines = [...sh('iptables-save', []).split('\n'), ...sh('ip6tables-save', []).split('\n')].filter((l) => l.startsWith('-A '));
  const counts = devs.map((d) => lines.filter((l) => new RegExp(`[ -]${d}( |$)`).test(l)).length);
  return Math.round(counts.reduce((a, b) => a + b, 0) / Math.max(1, counts.length));
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

interface Sample {
  toOpenMs: number;
  openCallMs: number;
  toDroppedMs: number;
  droppedCallMs: number;
}

async function main(): Promise<void> {
  const client = new LibvirtClient({ socketPath: SOCKET, callTimeoutMs: DEFINE_TIMEOUT_MS });
  const sets = new IpSetManager();
  const bindings: NwFilterBinding[] = [];
  const taps: string[] = [];
  const counts = { defines: 0 };
  const define = async (xml: string): Promise<void> => {
    counts.defines++;
    await client.defineFilter(xml, { timeoutMs: DEFINE_TIMEOUT_MS });
  };
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
    process.stderr.write('interrupted: cleaning up after the call in flight\n');
  });
  const log = (line: string): void => void process.stdout.write(`${line}\n`);
  let lab: Lab | undefined;

  const samples: Record<Design, Sample[]> = { redefine: [], ipset: [] };
  const perChange: Record<Design, { defines: number; ipsetProcesses: number }> = { redefine: { defines: 0, ipsetProcesses: 0 }, ipset: { defines: 0, ipsetProcesses: 0 } };
  const rules: Record<Design, { without: number; with: number }> = { redefine: { without: 0, with: 0 }, ipset: { without: 0, with: 0 } };
  /** Probes that saw the new verdict before the last one that saw the old (a transient state of the chains). */
  const transients: Record<Design, number> = { redefine: 0, ipset: 0 };
  const probes: Record<Design, number> = { redefine: 0, ipset: 0 };
  try {
    await client.connect();
    lab = await Lab.create({ name: 'address-group-bench', probeTimeoutMs: PROBE_MS });
    const peer = await lab.addEndpoint('peer');
    const vms: Record<Design, Endpoint> = { redefine: await lab.addEndpoint('vma'), ipset: await lab.addEndpoint('vmb') };
    for (const d of DESIGNS) await lab.listen(vms[d], { tcp: [PORT] });
    const group = groupCidrs();
    const withPeer = [...group, `${peer.ipv4}/32`];

    // The set before any filter that names it: a binding whose set is missing fails (docs/address-sets.md).
    await sets.sync(desiredSet(group), { prefix: SET_PREFIX });
    const devs: Record<Design, string[]> = { redefine: [], ipset: [] };
    for (const d of DESIGNS) {
      const s = performance.now();
      await define(departmentXml(d, group));
      for (let i = 0; i < INTERFACES; i++) await define(rootXml(d, i));
      await lab.bind(vms[d], filterName(d, 'vm-0'), [{ name: 'IP', value: vms[d].ipv4 }]);
      devs[d].push(vms[d].port);
      for (let i = 1; i < INTERFACES && !interrupted; i++) {
        const dev = `${TAP}${letter(d)}${i}`;
        sh('ip', ['tuntap', 'add', 'dev', dev, 'mode', 'tap']);
        taps.push(dev);
        sh('ip', ['link', 'set', dev, 'up']);
        const owner = `${PREFIX}${dev}`;
        const mac = `52:54:00:${letter(d) === 'a' ? '0a' : '0b'}:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
        bindings.push(
          await client.createBinding(
            `<filterbinding><owner><name>${owner}</name><uuid>${uuidOf(owner)}</uuid></owner><portdev name='${dev}'/><mac address='${mac}'/>` +
              `<filterref filter='${filterName(d, `vm-${i}`)}'><parameter name='IP' value='198.18.${letter(d) === 'a' ? 10 : 11}.${i}'/></filterref></filterbinding>`,
          ),
        );
        devs[d].push(dev);
      }
      log(`${d}: ${devs[d].length} interfaces bound in ${((performance.now() - s) / 1000).toFixed(1)} s`);
    }
    counts.defines = 0;
    for (const d of DESIGNS) rules[d].without = rulesPerInterface(devs[d]);

    /**
     * Probes peer -> vm every PROBE_EVERY_MS from `t0` until the change's call has returned and a
     * probe sent after that saw `want`. The flip is the send time of the first probe of the final run
     * of `want` verdicts (after the last probe that saw something else); probes that saw `want`
     * earlier than that are transient (while libvirt rebuilt the interface's chains: the first small
     * run saw the VM open 100 ms into a redefine, then dropped again). All probes in flight are
     * waited for, so that none outlives the measurement.
     */
    const timeTo = async (want: Verdict, vm: Endpoint, t0: number, call: Promise<number>): Promise<{ flipMs: number; transient: number; probes: number }> => {
      const seen: Array<{ sent: number; ok: boolean }> = [];
      let callEnd: number | undefined;
      void call.then((ms) => (callEnd = t0 + ms), () => (callEnd = performance.now()));
      const inflight = new Set<Promise<void>>();
      const settled = (): boolean => callEnd !== undefined && seen.some((p) => p.ok && p.sent > callEnd!);
      while (!settled()) {
        if (callEnd !== undefined && performance.now() - callEnd > 30_000) throw new Error(`peer -> ${vm.name} tcp/${PORT} not ${want} 30 s after the change`);
        const sent = performance.now();
        const p: Promise<void> = lab!.probe({ from: peer, to: vm, proto: 'tcp', family: 4, port: PORT }).then((r) => void seen.push({ sent, ok: r.verdict === want }));
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
        await sleep(PROBE_EVERY_MS);
      }
      await Promise.all(inflight);
      seen.sort((a, b) => a.sent - b.sent);
      const lastOther = Math.max(-Infinity, ...seen.filter((p) => !p.ok).map((p) => p.sent));
      const flip = seen.find((p) => p.ok && p.sent > lastOther)!;
      return { flipMs: flip.sent - t0, transient: seen.filter((p) => p.ok && p.sent < lastOther).length, probes: seen.length };
    };
    const expectVerdict = async (vm: Endpoint, want: Verdict): Promise<void> => {
      const r = await lab!.probe({ from: peer, to: vm, proto: 'tcp', family: 4, port: PORT, timeoutMs: 700 });
      if (r.verdict !== want) throw new Error(`peer -> ${vm.name} tcp/${PORT} is ${r.verdict}, expected ${want} (${r.detail})`);
    };
    /** One membership change of a design: its call and the time until the probes see `want`. */
    const change = async (d: Design, members: readonly string[], want: Verdict): Promise<{ flipMs: number; callMs: number; transient: number }> => {
      const defines = counts.defines;
      let ipsetProcesses = 0;
      const t0 = performance.now();
      const call = (
        d === 'redefine'
          ? define(departmentXml(d, members))
          : sets.sync(desiredSet(members), { prefix: SET_PREFIX }).then((r) => {
              if (r.updated.length !== 1) throw new Error(`sync did not update the set: ${JSON.stringify(r)}`);
              ipsetProcesses = r.processes;
            })
      ).then(() => performance.now() - t0);
      const [callMs, flip] = await Promise.all([call, timeTo(want, vms[d], t0, call)]);
      perChange[d] = { defines: counts.defines - defines, ipsetProcesses };
      transients[d] += flip.transient;
      probes[d] += flip.probes;
      return { flipMs: flip.flipMs, callMs, transient: flip.transient };
    };

    for (let round = 0; round < ROUNDS && !interrupted; round++) {
      const order = round % 2 === 0 ? DESIGNS : [...DESIGNS].reverse();
      for (const d of order) {
        if (interrupted) break;
        await expectVerdict(vms[d], 'dropped');
        const open = await change(d, withPeer, 'open');
        if (round === 0) rules[d].with = rulesPerInterface(devs[d]);
        const dropped = await change(d, group, 'dropped');
        samples[d].push({ toOpenMs: open.flipMs, openCallMs: open.callMs, toDroppedMs: dropped.flipMs, droppedCallMs: dropped.callMs });
        log(
          `round ${round + 1} ${d}: to open ${(open.flipMs / 1000).toFixed(2)} s (call ${(open.callMs / 1000).toFixed(2)} s, ${open.transient} transient), ` +
            `to dropped ${(dropped.flipMs / 1000).toFixed(2)} s (call ${(dropped.callMs / 1000).toFixed(2)} s, ${dropped.transient} transient)`,
        );
      }
    }
  } finally {
    for (const b of bindings.splice(0)) await client.deleteBinding(b).catch(() => undefined);
    // The lab removes its own bindings (the VM endpoints), namespaces and veths.
    await lab?.close().catch((e: unknown) => process.stderr.write(`lab cleanup: ${(e as Error).message}\n`));
    for (const t of taps.splice(0)) {
      try {
        sh('ip', ['link', 'del', t]);
      } catch {
        // already gone
      }
    }
    // Root filters first: libvirt refuses to undefine a filter that another one references.
    const ours = (await client.listFilters().catch(() => [])).filter((f) => f.name.startsWith(PREFIX));
    for (const f of [...ours.filter((f) => !f.name.endsWith('-dept')), ...ours.filter((f) => f.name.endsWith('-dept'))]) {
      await client.undefineFilter(f).catch((e: unknown) => process.stderr.write(`undefine ${f.name}: ${(e as Error).message}\n`));
    }
    const left = await sets.sync(new Map(), { prefix: SET_PREFIX }).catch((e: unknown) => void process.stderr.write(`ipset cleanup: ${(e as Error).message}\n`));
    if (left && left.inUse.length) process.stderr.write(`ipset cleanup: still in use: ${left.inUse.join(', ')}\n`);
  }
  const version = await client.libVersion();
  await client.close();
  if (samples.redefine.length === 0 || samples.ipset.length === 0) return;
  const m = (d: Design, k: keyof Sample): number => median(samples[d].map((s) => s[k])) / 1000;
  const row = (d: Design): string =>
    `| ${d} | ${perChange[d].defines} | ${perChange[d].ipsetProcesses} | ${rules[d].without} -> ${rules[d].with} ` +
    `| ${m(d, 'toOpenMs').toFixed(2)} | ${m(d, 'openCallMs').toFixed(2)} | ${m(d, 'toDroppedMs').toFixed(2)} | ${m(d, 'droppedCallMs').toFixed(2)} ` +
    `| ${transients[d]} of ${probes[d]} |`;
  const ratio = (k: keyof Sample): string => `${(m('redefine', k) / m('ipset', k)).toFixed(0)}x`;
  log(
    [
      '',
      `libvirt ${version}, node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ` +
        `${INTERFACES} bound interfaces per design, ${CIDRS} CIDRs in the group, ${samples.ipset.length} rounds, medians; ` +
        `probes every ${PROBE_EVERY_MS} ms, each waiting ${PROBE_MS} ms`,
      '',
      '| design | libvirt defines per change | ipset processes per change | rules per interface (peer out -> in) | to open s | call s | to dropped s | call s | transient probes |',
      '|---|---|---|---|---|---|---|---|---|',
      row('redefine'),
      row('ipset'),
      '',
      `redefine / ipset: to open ${ratio('toOpenMs')}, its call ${ratio('openCallMs')}; to dropped ${ratio('toDroppedMs')}, its call ${ratio('droppedCallMs')}`,
    ].join('\n'),
  );
}

await main();
