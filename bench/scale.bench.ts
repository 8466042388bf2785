// What N VMs on one node cost the operator end to end: the real controller and agent (dist/, default
// flags) against a real kube-apiserver + etcd of its own and the real libvirtd.
//
// How: hack/cluster-up.sh starts a bench-only cluster (NWF_STATE=/tmp/nwf-bench-scale, API server on
// 16543, etcd on 23890/23900; kubeconfig $NWF_STATE/kubeconfig), the CRDs are applied, `npm run build`
// runs once. For each N in BENCH_SIZES (a fresh set each): N shut-off qemu domains `bench-scale-<i>`
// (one ethernet interface `bsc<i>`) are defined with virsh, controller (--leader-elect false) and
// agent (--node-name bench-node) start, the examples' services and 20 generated departments
// (`bench-dept-<d>`, two overrides each) are created, then N VMFilters `bench-scale-<i>` (department
// i % 20, pinned to bench-node) plus BENCH_OTHER pinned to `other-node` (no domain, no agent: they
// show what VMs of other nodes cost this agent). Prints, per N: time to all Ready (and to a status on
// the other-node ones), peak RSS (VmHWM) per phase, reconciles per VM, API requests by verb and
// resource (apiserver_request_total), the agent's libvirt calls, /healthz latency of both processes
// during the rollout and the department change (a child process probes every 500 ms, 15 s timeout),
// a department change, 20 single-VM toggles, 65 s idle with --resync-period 30s (both processes
// restarted for it) and an agent restart. All objects carry the label nwfilter.infinibay.io/bench=scale.
// Cleanup, also after a failure or Ctrl-C (the processes run in their own process group, so the
// controller still removes finalizers): VMFilters, departments and services of the label are deleted,
// the bench-scale-<i> domains undefined, the processes stopped. The cluster is left running
// (a rerun reuses it; stop it with NWF_STATE=/tmp/nwf-bench-scale hack/cluster-down.sh).
//
// Env: BENCH_SIZES (default: BENCH_N, else "1000"), BENCH_OTHER (default 0), BENCH_CONCURRENCY (creates
// in flight, default 32), BENCH_CONTROLLER_NODE_FLAGS / BENCH_AGENT_NODE_FLAGS (node flags, e.g. a heap
// cap). Logs: /tmp/nwf-bench-scale/bench-logs. Needs root and the libvirtd of
// hack/libvirt-up.sh, whose nwfilters the agent garbage-collects, so wrap it:
//   flock /tmp/nwf-libvirt.lock npm run bench:scale
// A Ctrl-C ends flock too, so the lock is free while the cleanup still runs (seconds at N=200, minutes
// at 10,000); to stop it without that, send SIGINT to the bench's node process alone.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { PatchStrategy, setHeaderOptions, type KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { parse } from 'yaml';
import { API_VERSION, GROUP, VERSION } from '../src/api/index.js';
import { kindInformer, loadKubeConfig, makeClients } from '../src/kube/index.js';
import { createMetrics } from '../src/runtime/metrics.js';
import { freePort } from '../test/helpers/processes.js';

const SIZES = (process.env.BENCH_SIZES ?? process.env.BENCH_N ?? '1000').split(',').map(Number);
const OTHER = Number(process.env.BENCH_OTHER ?? 0);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STATE = '/tmp/nwf-bench-scale';
const CLUSTER_ENV = { ...process.env, NWF_STATE: STATE, NWF_APISERVER_PORT: '16543', NWF_ETCD_PORT: '23890', NWF_ETCD_PEER_PORT: '23900' };
const KUBECONFIG = join(STATE, 'kubeconfig');
const LOGS = join(STATE, 'bench-logs');
const LABEL = 'nwfilter.infinibay.io/bench';
const SELECTOR = `${LABEL}=scale`;
const DEPTS = 20;
const M = 'nwfilter_operator_';
const URI = 'qemu:///system';
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const t0 = performance.now();
const note = (msg: string): boolean => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(5)} s] ${msg}\n`);

let interrupted = false;
const check = (): void => {
  if (interrupted) throw new Error('interrupted');
};

// ---- processes, metrics ------------------------------------------------------------------------

function sh(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; quiet?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', input: opts.input, env: opts.env ?? process.env, maxBuffer: 512 * 1024 * 1024 });
  if (r.status !== 0 && !opts.quiet) throw new Error(`${cmd} ${args.slice(0, 4).join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout ?? '';
}
const kubectl = (args: string[], input?: string, quiet = false): string =>
  sh('kubectl', ['--kubeconfig', KUBECONFIG, ...args], { ...(input !== undefined ? { input } : {}), quiet });

interface Proc {
  child: ChildProcess;
  health: string;
  metrics(): Promise<string>;
  stop(): Promise<void>;
}
// Controller and agent run detached (their own process group, so that Ctrl-C reaches only us and the
// controller is still there to remove finalizers during the cleanup); never leave a child behind.
const children = new Set<ChildProcess>();
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));
const track = (c: ChildProcess): ChildProcess => (children.add(c), c.once('exit', () => children.delete(c)));

async function startProc(command: 'controller' | 'agent', extra: string[]): Promise<Proc> {
  const [metricsPort, healthPort] = [await freePort(), await freePort()];
  const log = openSync(join(LOGS, `${command}-${Date.now()}.log`), 'a');
  const args = ['dist/cli.js', command, '--kubeconfig', KUBECONFIG, '--metrics-addr', `127.0.0.1:${metricsPort}`,
    '--health-addr', `127.0.0.1:${healthPort}`, ...extra];
  // BENCH_CONTROLLER_NODE_FLAGS / BENCH_AGENT_NODE_FLAGS: node flags to compare (e.g. --max-old-space-size=128).
  const nodeFlags = (process.env[`BENCH_${command.toUpperCase()}_NODE_FLAGS`] ?? '').split(' ').filter(Boolean);
  const child = track(spawn(process.execPath, [...nodeFlags, ...args], { cwd: ROOT, detached: true, stdio: ['ignore', log, log] }));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const proc: Proc = {
    child,
    health: `http://127.0.0.1:${healthPort}/healthz`,
    metrics: async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const late = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(late);
    },
  };
  await waitFor(`${command} ready`, 120_000, async () => {
    if (child.exitCode !== null) throw new Error(`${command} exited with ${child.exitCode}; see ${LOGS}`);
    return (await fetch(`http://127.0.0.1:${healthPort}/readyz`).catch(() => undefined))?.ok === true;
  });
  return proc;
}

/** Peak resident set (VmHWM) in MiB. */
const hwm = (p: Proc): number => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.child.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;

type Tally = Map<string, number>;
/** Sums a metric's samples by key(labels); samples whose key is undefined are left out. */
function tally(text: string, name: string, key: (l: Record<string, string>) => string | undefined): Tally {
  const out: Tally = new Map();
  for (const line of text.split('\n')) {
    const m = /^(\w+)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    const k = key(labels);
    if (k !== undefined) out.set(k, (out.get(k) ?? 0) + Number(m[3]));
  }
  return out;
}
const diff = (a: Tally, b: Tally): Tally => new Map([...b].map(([k, v]) => [k, v - (a.get(k) ?? 0)] as const).filter(([, v]) => v !== 0));
const sum = (t: Tally): number => [...t.values()].reduce((a, b) => a + b, 0);
const fmt = (t: Tally, max = 99): string =>
  [...t].sort((a, b) => b[1] - a[1]).slice(0, max).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ') || 'none';

interface Snap { api: Tally; ctrl: string; agent: string }
/** Our group's requests plus events and leases, by verb, resource[/subresource] and any non-2xx code. */
const apiRequests = (): Tally =>
  tally(kubectl(['get', '--raw', '/metrics']), 'apiserver_request_total', (l) =>
    l.group === GROUP || l.resource === 'events' || l.resource === 'leases'
      ? `${l.verb} ${l.resource}${l.subresource ? '/' + l.subresource : ''}${l.code?.startsWith('2') ? '' : ` (${l.code})`}`
      : undefined);
const snap = async (ctrl: Proc, agent: Proc): Promise<Snap> => ({ api: apiRequests(), ctrl: await ctrl.metrics(), agent: await agent.metrics() });
const byKey = (text: string, name: string, label: string): Tally => tally(text, `${M}${name}`, (l) => l[label] ?? '');
/** The change of one of our metrics between two snapshots, by one label. */
const delta = (a: Snap, b: Snap, which: 'ctrl' | 'agent', name: string, label = 'kind'): Tally =>
  diff(byKey(a[which], name, label), byKey(b[which], name, label));
const calls = (s: Snap): Tally => tally(s.agent, `${M}libvirt_call_duration_seconds_count`, (l) => `${l.op}${l.ok === 'true' ? '' : ' (failed)'}`);
const libvirtCalls = (a: Snap, b: Snap): Tally => diff(calls(a), calls(b));
/** Seconds the agent waited on libvirtd, by call (summed over calls in flight at once). */
const libvirtSeconds = (a: Snap, b: Snap): string =>
  [...diff(...([a, b].map((s) => tally(s.agent, `${M}libvirt_call_duration_seconds_sum`, (l) => l.op ?? '')) as [Tally, Tally]))]
    .sort((x, y) => y[1] - x[1])
    .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
    .join(', ') || 'none';

async function waitFor(what: string, timeoutMs: number, ok: () => boolean | Promise<boolean>, everyMs = 250): Promise<number> {
  const start = performance.now();
  for (;;) {
    check();
    if (await ok()) return (performance.now() - start) / 1000;
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Sleeps `ms`, but gives way to Ctrl-C within a second. */
async function pause(ms: number): Promise<void> {
  for (const end = performance.now() + ms; performance.now() < end; ) {
    check();
    await sleep(Math.min(1000, end - performance.now()));
  }
}

/** A child process that GETs each URL every 500 ms; one line `<url index> <ms>` per answer, -1 on no answer in 15 s, -2 on error. */
function startProbe(urls: string[]): () => Promise<string[]> {
  const script = `const urls = process.argv.slice(1);
setInterval(() => urls.forEach((u, i) => { const s = performance.now();
  fetch(u, { signal: AbortSignal.timeout(15000) }).then((r) => r.arrayBuffer()).then(() => console.log(i, performance.now() - s),
    (e) => console.log(i, e.name === 'TimeoutError' ? -1 : -2)); }), 500);
process.on('SIGTERM', () => process.exit(0));`;
  const child = track(spawn(process.execPath, ['-e', script, ...urls], { stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  return async () => {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    return urls.map((_, i) => {
      const ms = out.split('\n').filter((l) => l.startsWith(`${i} `)).map((l) => Number(l.split(' ')[1]));
      const ok = ms.filter((x) => x >= 0).sort((a, b) => a - b);
      const p99 = ok[Math.min(ok.length - 1, Math.floor(ok.length * 0.99))] ?? NaN;
      return `${ms.length} probes, max ${(ok.at(-1) ?? NaN).toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, > 1 s: ${ok.filter((x) => x > 1000).length}, ` +
        `unanswered in 15 s: ${ms.filter((x) => x === -1).length}, errors: ${ms.filter((x) => x === -2).length}`;
    });
  };
}

// ---- objects and domains -------------------------------------------------------------------------

const services = readdirSync(join(ROOT, 'examples/services')).sort().map((f) => parse(readFileSync(join(ROOT, 'examples/services', f), 'utf8')));
const serviceNames: string[] = services.map((s) => s.metadata.name);
const svc = (k: number): string => serviceNames[k % serviceNames.length]!;
const labelled = (o: Record<string, any>): Record<string, any> => ({ ...o, metadata: { ...o.metadata, labels: { [LABEL]: 'scale' } } });
/** Department d: provides one service and uses another; the department change flips the first. */
const department = (d: number, provide = 'allow'): Record<string, any> =>
  labelled({
    apiVersion: API_VERSION,
    kind: 'DepartmentPolicy',
    metadata: { name: `bench-dept-${d}` },
    spec: { services: [{ name: svc(2 * d), provide }, { name: svc(2 * d + 1), use: 'allow' }] },
  });
const vmName = (i: number): string => `bench-scale-${i}`;
const vmFilter = (name: string, node: string, dept: number): Record<string, any> =>
  labelled({ apiVersion: API_VERSION, kind: 'VMFilter', metadata: { name }, spec: { domain: { name }, nodeName: node, department: `bench-dept-${dept}` } });

/** virsh runs `;`-separated commands in one connection: 200 defines per process instead of one each. */
function virshBatch(commands: string[]): void {
  for (let i = 0; i < commands.length; i += 200) sh('virsh', ['-q', '-c', URI, commands.slice(i, i + 200).join(' ; ')], { quiet: true });
}
const ourDomains = (): string[] => sh('virsh', ['-q', '-c', URI, 'list', '--all', '--name']).split('\n').filter((n) => /^bench-scale-\d+$/.test(n.trim()));
function defineDomains(n: number): void {
  const dir = join(STATE, 'bench-domains');
  mkdirSync(dir, { recursive: true });
  const hex = (x: number): string => (x & 255).toString(16).padStart(2, '0');
  virshBatch(Array.from({ length: n }, (_, i) => {
    const file = join(dir, `${i}.xml`);
    writeFileSync(file, `<domain type='qemu'><name>${vmName(i)}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>` +
      `<os><type arch='x86_64' machine='pc'>hvm</type></os><devices><interface type='ethernet'><mac address='52:54:00:5c:${hex(i >> 8)}:${hex(i)}'/>` +
      `<target dev='bsc${i}' managed='yes'/><model type='virtio'/></interface></devices></domain>`);
    return `define ${file}`;
  }));
  const have = ourDomains().length;
  if (have !== n) throw new Error(`defined ${have} of ${n} domains`);
}
const undefineDomains = (): void => virshBatch(ourDomains().map((n) => `undefine ${n.trim()}`));

/** Deletes the label's objects, VMFilters first while the controller and agent run (finalizers). */
function deleteObjects(n: number): void {
  const timeout = Math.max(120, Math.ceil(n / 20));
  kubectl(['delete', 'vmfilters', '-l', SELECTOR, '--wait=false'], undefined, true);
  kubectl(['wait', '--for=delete', 'vmfilters', '-l', SELECTOR, `--timeout=${timeout}s`], undefined, true);
  if (kubectl(['get', 'vmfilters', '-l', SELECTOR, '-o', 'name'], undefined, true).trim()) {
    note(`WARNING: VMFilters of ${SELECTOR} still there after ${timeout} s (see ${LOGS})`);
  }
  kubectl(['delete', 'departmentpolicies,servicepolicies', '-l', SELECTOR, '--timeout=60s'], undefined, true);
}

// ---- one size ------------------------------------------------------------------------------------

async function runSize(n: number, out: string[]): Promise<void> {
  const kc = loadKubeConfig(KUBECONFIG);
  const clients = makeClients(kc);
  const custom = clients.custom;
  const patch = (plural: string, name: string, body: object): Promise<unknown> =>
    custom.patchClusterCustomObject({ group: GROUP, version: VERSION, plural, name, body }, merge);
  // The bench's own view, one LIST + WATCH (no polling that would show up in the request counts).
  const informer = kindInformer(clients, 'VMFilter', pino({ level: 'silent' }), createMetrics({ defaultMetrics: false }));
  type View = { ready: boolean; applied: boolean; desired: string | undefined; accepted: boolean };
  const view = new Map<string, View>();
  const seen = (o: KubernetesObject & { status?: any }): void => {
    const name = o.metadata!.name!;
    const s = o.status ?? {};
    const cond = (t: string): { status?: string } | undefined => (s.conditions ?? []).find((c: { type: string }) => c.type === t);
    const ready = cond('Ready')?.status === 'True';
    view.set(name, { ready, applied: ready && !!s.desiredHash && s.appliedHash === s.desiredHash, desired: s.desiredHash, accepted: !!cond('Accepted') });
  };
  informer.on('add', seen);
  informer.on('update', seen);
  informer.on('delete', (o) => view.delete(o.metadata!.name!));
  let ctrl: Proc | undefined;
  let agent: Proc | undefined;
  const rows: [string, string][] = [];
  const row = (k: string, v: string): number => rows.push([k, v]);
  const rss = (phase: string): number => row(`peak RSS after ${phase} (VmHWM)`, `controller ${hwm(ctrl!).toFixed(0)} MiB, agent ${hwm(agent!).toFixed(0)} MiB`);
  try {
    note(`N=${n}: defining ${n} domains`);
    undefineDomains();
    defineDomains(n);
    ctrl = await startProc('controller', ['--leader-elect', 'false']);
    agent = await startProc('agent', ['--node-name', 'bench-node']);
    await informer.start();
    deleteObjects(n); // leftovers of an interrupted run, if any
    kubectl(['apply', '--server-side', '-f', '-'], [...services.map(labelled), ...Array.from({ length: DEPTS }, (_, i) => department(i))]
      .map((o) => JSON.stringify(o)).join('\n---\n'));
    kubectl(['wait', '--for=condition=Accepted', 'departmentpolicies', '-l', SELECTOR, '--timeout=60s']);

    // 1-6: rollout
    const names = [...Array.from({ length: n }, (_, i) => vmName(i))];
    const others = Array.from({ length: OTHER }, (_, j) => `bench-scale-other-${j}`);
    const objs = [...names.map((v, i) => vmFilter(v, 'bench-node', i % DEPTS)), ...others.map((v, j) => vmFilter(v, 'other-node', j % DEPTS))];
    const s0 = await snap(ctrl, agent);
    const stopProbe = startProbe([ctrl.health, agent.health]);
    note(`N=${n}: creating ${objs.length} VMFilters`);
    const start = performance.now();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < objs.length && !interrupted) {
        const body = objs[next++]!;
        await custom.createClusterCustomObject({ group: GROUP, version: VERSION, plural: 'vmfilters', body });
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const created = (performance.now() - start) / 1000;
    const since = (): number => (performance.now() - start) / 1000;
    let otherAt = OTHER === 0 ? 0 : NaN;
    await waitFor(`${n} VMFilters Ready`, Math.max(600_000, n * 200), () => {
      if (Number.isNaN(otherAt) && others.every((o) => view.get(o)?.accepted)) otherAt = since();
      return names.every((v) => view.get(v)?.applied);
    });
    const allReady = since();
    const otherTimeout = Math.max(120_000, OTHER * 100);
    if (Number.isNaN(otherAt)) await waitFor('other-node statuses', otherTimeout, () => others.every((o) => view.get(o)?.accepted)).then(() => (otherAt = since()));
    const probes = await stopProbe();
    const s1 = await snap(ctrl, agent);
    row('1. creates sent (POST, ' + CONCURRENCY + ' in flight)', `${created.toFixed(1)} s`);
    row(`1. create start -> all ${n} Ready (applied == desired)`, `${allReady.toFixed(1)} s (${(n / allReady).toFixed(1)} VMs/s)`);
    if (OTHER) row(`1. create start -> all ${OTHER} other-node VMFilters have Accepted`, `${otherAt.toFixed(1)} s`);
    rss('rollout');
    for (const [which, label] of [['ctrl', 'controller'], ['agent', 'agent']] as const) {
      const r = delta(s0, s1, which, 'reconcile_total');
      row(`3. reconciles per VM, ${label}`, `${(sum(r) / n).toFixed(2)} (${fmt(r)})`);
    }
    for (const [k, v] of [...diff(s0.api, s1.api)].sort((a, b) => b[1] - a[1])) row(`4. API ${k}`, String(v));
    row('5. libvirt calls by the agent', fmt(libvirtCalls(s0, s1)));
    row('5. libvirt writes by the agent', fmt(delta(s0, s1, 'agent', 'libvirt_writes_total', 'op')));
    row('5. time waiting on libvirtd', libvirtSeconds(s0, s1));
    row('6. /healthz controller during rollout', probes[0]!);
    row('6. /healthz agent during rollout', probes[1]!);
    check();

    // 7: department change (bench-dept-0 stops providing its first service)
    const members = names.filter((_, i) => i % DEPTS === 0);
    const before = new Map(members.map((v) => [v, view.get(v)?.desired]));
    const stopProbe2 = startProbe([ctrl.health, agent.health]);
    const s2 = await snap(ctrl, agent);
    await patch('departmentpolicies', 'bench-dept-0', department(0, 'deny'));
    const deptTime = await waitFor('department change applied', Math.max(300_000, n * 100), () =>
      members.every((v) => { const s = view.get(v); return !!s?.applied && s.desired !== before.get(v); }));
    const probes2 = await stopProbe2();
    const s3 = await snap(ctrl, agent);
    row(`7. department change -> its ${members.length} VMs applied`, `${deptTime.toFixed(1)} s`);
    row('7. agent reconciles / status writes', `${sum(delta(s2, s3, 'agent', 'reconcile_total'))} / ${sum(delta(s2, s3, 'agent', 'status_writes_total'))}`);
    row('7. libvirt calls (writes and reads)', fmt(libvirtCalls(s2, s3)));
    row('7. API requests', fmt(diff(s2.api, s3.api)));
    row('7. /healthz controller / agent', `${probes2[0]} / ${probes2[1]}`);
    rss('department change');

    // 8: single-VM toggles: ssh use deny at VM level (the global default and every department allow it)
    const step = Math.max(1, Math.floor(n / 20));
    const times: number[] = [];
    for (const i of Array.from({ length: Math.min(20, n) }, (_, k) => k * step + (step > 1 ? 1 : 0))) {
      check();
      const v = vmName(i);
      const was = view.get(v)?.desired;
      const s = performance.now();
      await patch('vmfilters', v, { spec: { services: [{ name: 'ssh', use: 'deny' }] } });
      await waitFor(`${v} toggled`, 120_000, () => { const st = view.get(v); return !!st?.applied && st.desired !== was; }, 20);
      times.push((performance.now() - s) / 1000);
    }
    times.sort((a, b) => a - b);
    const q = (p: number): string => times[Math.min(times.length - 1, Math.floor(times.length * p))]!.toFixed(2);
    row(`8. single-VM toggle -> applied (${times.length} VMs, one at a time)`, `median ${q(0.5)} s, p95 ${q(0.95)} s, max ${times.at(-1)!.toFixed(2)} s`);
    rss('toggles');

    // 9: idle with --resync-period 30s (both restarted with it)
    note(`N=${n}: restarting both with --resync-period 30s; idle window`);
    await Promise.all([ctrl.stop(), agent.stop()]);
    ctrl = await startProc('controller', ['--leader-elect', 'false', '--resync-period', '30s']);
    agent = await startProc('agent', ['--node-name', 'bench-node', '--resync-period', '30s']);
    const quiet = await settle(ctrl, agent);
    const s4 = await snap(ctrl, agent);
    await pause(65_000);
    const s5 = await snap(ctrl, agent);
    // Leases left out: the API server renews its own identity lease every 10 s (no leader election here).
    const writes = (t: Tally): Tally => new Map([...t].filter(([k]) => /^(PATCH|APPLY|PUT|POST|DELETE) /.test(k) && !k.includes('leases')));
    row(`9. idle 65 s after restart + ${quiet.toFixed(0)} s settle: status writes (expected 0)`,
      `controller ${sum(delta(s4, s5, 'ctrl', 'status_writes_total'))}, agent ${sum(delta(s4, s5, 'agent', 'status_writes_total'))}`);
    const idleWrites = sum(delta(s4, s5, 'agent', 'libvirt_writes_total', 'op'));
    row('9. idle: libvirt writes (expected 0) / agent resyncs', `${idleWrites} / ${sum(delta(s4, s5, 'agent', 'resyncs_total', ''))}`);
    row('9. idle: API writes', fmt(writes(diff(s4.api, s5.api))));

    // 10: agent restart; the new process's counters start at 0, so its figures are absolute
    const s6 = await snap(ctrl, agent);
    await agent.stop();
    agent = await startProc('agent', ['--node-name', 'bench-node', '--resync-period', '30s']);
    await pause(20_000);
    const s7 = await snap(ctrl, agent);
    const fresh = { ...s6, agent: '' };
    row('10. agent restart + 20 s: agent status writes (expected ~0)', String(sum(delta(fresh, s7, 'agent', 'status_writes_total'))));
    row('10. agent restart: apiserver writes on vmfilters/status', fmt(new Map([...diff(s6.api, s7.api)].filter(([k]) => k.includes('vmfilters/status')))));
    row('10. agent restart: libvirt writes / calls', `${sum(delta(fresh, s7, 'agent', 'libvirt_writes_total', 'op'))} / ${sum(libvirtCalls(fresh, s7))}`);
    row('peak RSS of the restarted processes', `controller ${hwm(ctrl).toFixed(0)} MiB, agent ${hwm(agent).toFixed(0)} MiB`);
  } finally {
    note(`N=${n}: cleaning up`);
    if (ctrl && agent) deleteObjects(n);
    undefineDomains();
    await Promise.all([ctrl?.stop(), agent?.stop()]);
    await informer.stop();
    note(`N=${n}: cleaned up`);
    if (rows.length) out.push('', `### N=${n}${OTHER ? ` (+${OTHER} VMFilters on other-node)` : ''}, ${serviceNames.length} services, ${DEPTS} departments`, '',
      '| figure | value |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v} |`),
      '', 'API figures include the bench\'s own requests (POST vmfilters: its creates; PATCH departmentpolicies in 7; one WATCH) ' +
        'and the API server\'s renewals of its own identity leases (leases; the controller runs without leader election).');
  }
}

/** Waits until neither process reconciled or wrote for 6 s: a restart re-reads everything first. */
async function settle(c: Proc, a: Proc): Promise<number> {
  const counters = (t: string): number =>
    sum(byKey(t, 'reconcile_total', 'kind')) + sum(byKey(t, 'status_writes_total', 'kind')) + sum(byKey(t, 'libvirt_writes_total', 'op'));
  let last = '';
  let same = 0;
  return waitFor('processes to settle', 300_000, async () => {
    const k = `${counters(await c.metrics())} ${counters(await a.metrics())}`;
    same = k === last ? same + 1 : 0;
    last = k;
    return same >= 3;
  }, 2000);
}

async function main(): Promise<void> {
  let firstAt = 0;
  process.on('SIGINT', () => {
    // npm and tsx may relay the terminal's Ctrl-C that already reached us: a repeat within 2 s is that
    // echo. A later one aborts the cleanup (the exit hook still kills the processes).
    if (interrupted && Date.now() - firstAt > 2000) process.exit(130);
    if (interrupted) return;
    interrupted = true;
    firstAt = Date.now();
    note('interrupted: cleaning up (Ctrl-C again to abort the cleanup)');
  });
  mkdirSync(LOGS, { recursive: true });
  note('cluster: hack/cluster-up.sh');
  sh('hack/cluster-up.sh', [], { env: CLUSTER_ENV });
  kubectl(['apply', '--server-side', '--force-conflicts', '-f', 'crds/']);
  kubectl(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  note('npm run build');
  sh('npm', ['run', 'build']);
  const libvirt = /Using library: (.*)/.exec(sh('virsh', ['-c', URI, 'version']))?.[1] ?? 'libvirt ?';
  const server = (JSON.parse(kubectl(['version', '-o', 'json'])) as { serverVersion?: { gitVersion?: string } }).serverVersion?.gitVersion;
  const out = ['', `node ${process.version}, ${libvirt}, kube-apiserver ${server ?? '?'}, ${cpus().length} CPUs`];
  try {
    for (const n of SIZES) {
      check();
      await runSize(n, out);
    }
  } finally {
    process.stdout.write(out.join('\n') + '\n');
  }
}

await main().catch((err: unknown) => {
  // After Ctrl-C the cleanup has run; a stack trace would only hide the tables printed above it.
  if (!interrupted) throw err;
  note('interrupted; cleaned up');
  process.exitCode = 130;
});
