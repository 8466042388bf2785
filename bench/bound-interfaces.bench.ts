// What a department change costs while VMs run, with the optimizer (src/policy/optimize.ts) off and
// on, side by side in one run. libvirt rebuilds the iptables/ip6tables chains of every bound
// interface whose filter tree contains the redefined filter, inside the define call, one iptables
// process per rule instance plus a fixed set per interface and family.
//
// How: the examples' catalog and departments, and a VM like examples/vms/eng-web-01 (engineering:
// overrides, an enforced deny, custom rules; the VM's own overrides) are compiled twice, without and
// with the optimizer, into two private trees (names `benchb-<pid>-off-*` / `-on-*`: not `nwf-`, which a
// running agent would remove as orphans). For each M in BENCH_M, M tap devices `nwfb<pid><a|b><i>`
// in the root namespace are bound to each tree (2M in all, so both trees see the same host ruleset),
// then the department filter is redefined with one real change (redis 6379 <-> 6380) BENCH_ROUNDS
// times per tree, off and on interleaved (the order alternates per round). Prints seconds per define
// (median), seconds per interface, iptables + ip6tables rules per interface (`-A` lines of
// iptables-save / ip6tables-save that name the interface, libvirt's jumps included) and the ratio.
// Bindings, filters and taps are removed at the end, also after a failure or Ctrl-C.
//
// Env: BENCH_M (default "1,10,50"), BENCH_ROUNDS (default 2), NWF_LIBVIRT_SOCKET.
// Needs root and the libvirtd of hack/libvirt-up.sh; holds nothing else of libvirtd, so wrap it:
//   flock /tmp/nwf-libvirt.lock npm run bench:bound
// Binding M interfaces costs about as much as one define; M=50 takes about 20-30 minutes in all.
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { parseManifests } from '../src/api/index.js';
import { readManifestFiles } from '../src/cli/files.js';
import { LibvirtClient, type NwFilterBinding } from '../src/libvirt/index.js';
import { compilePolicy, filterUuid, instantiateTree, renderFilterXml, type NwFilter, type PolicyInput } from '../src/policy/index.js';
import { vm } from '../test/helpers/builders.js';

const MS = (process.env.BENCH_M ?? '1,10,50').split(',').map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const SOCKET = process.env.NWF_LIBVIRT_SOCKET ?? '/var/run/libvirt/libvirt-sock';
const PREFIX = `benchb-${process.pid}-`;
const TAP = `nwfb${process.pid}`;
// A define rebuilds every bound interface: 246 s measured for 50 before the optimizer.
const DEFINE_TIMEOUT_MS = 30 * 60_000;

type Mode = 'off' | 'on';
const MODES: Mode[] = ['off', 'on'];

const policy = (): PolicyInput => {
  const examples = parseManifests(readManifestFiles(['examples']));
  const web = vm('bench-web', {
    department: 'engineering',
    services: [
      { name: 'http', provide: 'allow' },
      { name: 'https', provide: 'allow' },
      { name: 'ssh', use: 'deny' },
    ],
    rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 8080 }, { port: 8081 }], source: '10.10.0.0/16' }],
    parameters: { ip: ['10.10.0.11'] },
  });
  return { services: examples.services, departments: examples.departments, vms: [web] };
};

/** The VM's tree for one mode, referenced filters first, renamed into the bench's prefix. */
function tree(mode: Mode): NwFilter[] {
  const compiled = compilePolicy(policy(), { optimize: mode === 'on' });
  const v = compiled.vms.get('bench-web');
  if (!v?.ok) throw new Error(`bench VM did not compile: ${JSON.stringify(v?.diagnostics)}`);
  const rename = (n: string): string => (n.startsWith('nwf-') ? `${PREFIX}${mode}-${n.slice(4)}` : n);
  return v.treeFilters.map(({ filter: f }) => {
    const name = rename(f.name);
    return { ...f, name, uuid: filterUuid(name), refs: f.refs.map(rename) };
  });
}

/** The one real change: redis use 6379 <-> 6380 in the department filter. */
function withRedisPort(dept: NwFilter, port: number): NwFilter {
  const redis = (r: NwFilter['rules'][number]): boolean => r.origin.kind === 'service' && r.origin.service === 'redis';
  return { ...dept, rules: dept.rules.map((r) => (redis(r) ? { ...r, dstPortStart: port, dstPortEnd: port } : r)) };
}

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
const tapName = (mode: Mode, i: number): string => `${TAP}${mode === 'off' ? 'a' : 'b'}${i}`;

/** iptables + ip6tables rules (`-A` lines) that name `dev`, from one save of each family. */
function rulesPerInterface(devs: string[]): number {
  const lines = [...sh('iptables-save', []).split('\n'), ...sh('ip6tables-save', []).split('\n')].filter((l) => l.startsWith('-A '));
  const counts = devs.map((d) => lines.filter((l) => new RegExp(`[ -]${d}( |$)`).test(l)).length);
  return Math.round(counts.reduce((a, b) => a + b, 0) / Math.max(1, counts.length));
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const client = new LibvirtClient({ socketPath: SOCKET, callTimeoutMs: DEFINE_TIMEOUT_MS });
  await client.connect();
  const trees = { off: tree('off'), on: tree('on') };
  const model = Object.fromEntries(
    MODES.map((m) => [m, instantiateTree(trees[m].at(-1)!.name, new Map(trees[m].map((f) => [f.name, f]))).instances.length]),
  ) as Record<Mode, number>;
  const bindings: NwFilterBinding[] = [];
  const taps: string[] = [];
  const cleanup = async (): Promise<void> => {
    for (const b of bindings.splice(0)) await client.deleteBinding(b).catch(() => undefined);
    for (const t of taps.splice(0)) {
      try {
        sh('ip', ['link', 'del', t]);
      } catch {
        // already gone
      }
    }
  };
  const removeFilters = async (): Promise<void> => {
    // Referencing filters first: libvirt refuses to undefine a filter that another one uses.
    for (const level of ['vm-', 'dept-', 'global']) {
      for (const f of await client.listFilters()) {
        if (f.name.startsWith(PREFIX) && f.name.includes(`-${level}`)) await client.undefineFilter(f).catch(() => undefined);
      }
    }
  };
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
    process.stderr.write('interrupted: cleaning up after the current call\n');
  });

  const rows: string[] = [];
  try {
    for (const M of MS) {
      if (interrupted) break;
      const times: Record<Mode, number[]> = { off: [], on: [] };
      // Each tree starts with an empty VM filter, so binding costs libvirt almost nothing; the real
      // VM filter is defined once all interfaces are bound (one rebuild of all, not M).
      for (const mode of MODES) {
        const t = trees[mode];
        for (const f of t.slice(0, -1)) await client.defineFilter(renderFilterXml(f));
        const root = t.at(-1)!;
        await client.defineFilter(renderFilterXml({ ...root, refs: [], rules: [] }));
        for (let i = 0; i < M; i++) {
          const dev = tapName(mode, i);
          sh('ip', ['tuntap', 'add', 'dev', dev, 'mode', 'tap']);
          taps.push(dev);
          sh('ip', ['link', 'set', dev, 'up']);
          const owner = `${PREFIX}${dev}`;
          const mac = `52:54:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}:${mode === 'off' ? '0a' : '0b'}`;
          bindings.push(
            await client.createBinding(
              `<filterbinding><owner><name>${owner}</name><uuid>${filterUuid(owner)}</uuid></owner><portdev name='${dev}'/>` +
                `<mac address='${mac}'/>` +
                `<filterref filter='${root.name}'><parameter name='IP' value='10.10.0.11'/></filterref></filterbinding>`,
            ),
          );
        }
        const s = performance.now();
        await client.defineFilter(renderFilterXml(root), { timeoutMs: DEFINE_TIMEOUT_MS });
        process.stdout.write(`M=${M} ${mode}: ${M} interfaces bound, first full instantiation ${((performance.now() - s) / 1000).toFixed(1)} s\n`);
      }
      const devs = (mode: Mode): string[] => Array.from({ length: M }, (_, i) => tapName(mode, i));
      const perIf = { off: rulesPerInterface(devs('off')), on: rulesPerInterface(devs('on')) };
      for (let round = 0; round < ROUNDS && !interrupted; round++) {
        const order: Mode[] = round % 2 === 0 ? ['off', 'on'] : ['on', 'off'];
        for (const mode of order) {
          const dept = trees[mode].find((f) => f.level === 'department')!;
          const xml = renderFilterXml(withRedisPort(dept, round % 2 === 0 ? 6380 : 6379));
          const s = performance.now();
          await client.defineFilter(xml, { timeoutMs: DEFINE_TIMEOUT_MS });
          const sec = (performance.now() - s) / 1000;
          times[mode].push(sec);
          process.stdout.write(`M=${M} round ${round + 1} ${mode}: department define ${sec.toFixed(2)} s\n`);
        }
      }
      // Back to the original department, so the next M starts from the same trees.
      for (const mode of MODES) {
        await client.defineFilter(renderFilterXml(trees[mode].find((f) => f.level === 'department')!), { timeoutMs: DEFINE_TIMEOUT_MS });
      }
      const off = median(times.off);
      const on = median(times.on);
      rows.push(
        `| ${M} | ${off.toFixed(2)} | ${on.toFixed(2)} | ${(off / M).toFixed(2)} | ${(on / M).toFixed(2)} ` +
          `| ${perIf.off} | ${perIf.on} | ${(off / on).toFixed(2)}x |`,
      );
      await cleanup();
    }
  } finally {
    await cleanup();
    await removeFilters();
  }
  const version = await client.libVersion();
  await client.close();
  const out = [
    '',
    `libvirt ${version}, node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${ROUNDS} rounds per M, medians`,
    `model: ${model.off} rule instances per interface unoptimized, ${model.on} optimized (FI/FO/HI chains, both families)`,
    '',
    '| M | off s/define | on s/define | off s/interface | on s/interface | off rules/interface | on rules/interface | off/on |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
  ];
  process.stdout.write(out.join('\n') + '\n');
}

await main();
