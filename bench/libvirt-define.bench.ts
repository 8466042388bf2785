// Defines N filters (default 1,000) of 10 rules and of 100 rules, side by side in one run:
//   1. through our RPC client, one call at a time;
//   2. through our RPC client, BENCH_CONCURRENCY calls in flight (default 4; a pool of that many
//      sequential workers, so a call's latency is its time in flight, not time queued);
//   3. through the raw C API (bench/c/define.c linked against libvirt, one connection: the floor);
//      compiled into the cache when cc and libvirt-dev are there, skipped otherwise;
//   4. through a `virsh nwfilter-define --validate` loop (one process per filter), over the first
//      BENCH_VIRSH_N files (default 100): each call costs a process start, so fewer calls suffice.
//   5-7. the client, the C API and virsh again without VALIDATE: libvirtd compiles its RNG schema for
//      every validated define (about 2 ms here), a server cost that every method pays alike and
//      that hides the clients' own cost; these rows show it.
// All use virNWFilterDefineXMLFlags on new names. The machine is shared and its load
// changes by the second, so the methods are interleaved: BENCH_ROUNDS rounds (default 10), each
// running every method on its slice of the files (in a rotating order), so that all of them see the
// same noise. Prints per-call median and p95 latency, wall time per filter and the ratios of the
// medians. Needs the libvirtd of hack/libvirt-up.sh; removes its filters after every slice.
// Run: npm run bench:libvirt   (or npx tsx bench/libvirt-define.bench.ts; BENCH_N=200 for a quick run)
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { createHistogram } from 'node:perf_hooks';
import { join } from 'node:path';
import { LibvirtClient } from '../src/libvirt/index.js';

const N = Number(process.env.BENCH_N ?? 1000);
const VIRSH_N = Number(process.env.BENCH_VIRSH_N ?? Math.min(N, 100));
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const SOCKET = process.env.NWF_LIBVIRT_SOCKET ?? '/var/run/libvirt/libvirt-sock';
// Not "nwf-": a running agent owns that prefix and would remove these filters as orphans.
const prefix = `bench-define-${process.pid}`;

function filterXml(name: string, rules: number): string {
  const body = Array.from(
    { length: rules },
    (_, i) => `<rule action='accept' direction='in' priority='${(i % 900) + 1}'><tcp dstportstart='${1000 + i}' comment='rule ${i}'/></rule>`,
  ).join('');
  return `<filter name='${name}' chain='root'>${body}</filter>`;
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

/** The C baseline, compiled once per source version into the shared cache. */
function rawCBinary(): string | undefined {
  const src = 'bench/c/define.c';
  const hash = createHash('sha256').update(readFileSync(src)).digest('hex').slice(0, 12);
  const out = join(process.env.NWF_CACHE ?? join(process.env.HOME ?? '/root', '.cache/nwfilter-operator'), 'bin', `bench-define-c-${hash}`);
  if (existsSync(out)) return out;
  mkdirSync(join(out, '..'), { recursive: true });
  const r = spawnSync('cc', ['-O2', '-o', out, src, '-lvirt'], { encoding: 'utf8' });
  return r.status === 0 ? out : undefined;
}

type Method = 'seq' | 'conc' | 'c' | 'virsh' | 'seqNv' | 'cNv' | 'virshNv';

interface Acc {
  times: number[];
  wall: number;
}

/** Runs `fn` over `items` with `k` workers, each one call at a time. */
async function pool<T>(items: T[], k: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: k }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function main(): Promise<void> {
  const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
  const client = new LibvirtClient({ socketPath: SOCKET, concurrency: CONCURRENCY });
  await client.connect();
  const dir = mkdtempSync(join(tmpdir(), 'nwf-bench-'));
  const cBin = rawCBinary();
  const methods: Method[] = (['seq', 'conc', 'c', 'virsh', 'seqNv', 'cNv', 'virshNv'] as const).filter((m) => cBin || (m !== 'c' && m !== 'cNv'));
  const label: Record<Method, string> = {
    seq: 'client, sequential',
    conc: `client, ${CONCURRENCY} in flight`,
    c: 'raw C API, sequential',
    virsh: 'virsh nwfilter-define --validate loop',
    seqNv: 'client, sequential, no VALIDATE',
    cNv: 'raw C API, sequential, no VALIDATE',
    virshNv: 'virsh nwfilter-define loop, no --validate',
  };
  const results = new Map<number, Record<Method, Acc>>();
  // Whether the event loop stays free while the client works: the gaps between ticks of a 1 ms
  // timer, recorded only during the client's slices (virsh and C rows block it with execFileSync).
  const ticks = createHistogram();
  const watchLoop = (): (() => void) => {
    let last = performance.now();
    const t = setInterval(() => {
      const now = performance.now();
      ticks.record(Math.max(1, Math.round((now - last) * 1000)));
      last = now;
    }, 1);
    return () => clearInterval(t);
  };

  try {
    for (const rules of [10, 100]) {
      const names = Array.from({ length: N }, (_, i) => `${prefix}-${rules}-${i}`);
      const xmls = names.map((n) => filterXml(n, rules));
      const files = names.map((n, i) => {
        const f = join(dir, `${n}.xml`);
        writeFileSync(f, xmls[i]!);
        return f;
      });
      const acc = Object.fromEntries(methods.map((m) => [m, { times: [], wall: 0 }])) as unknown as Record<Method, Acc>;
      results.set(rules, acc);
      const cleanup = async (slice: string[]) => {
        const mine = new Set(slice);
        await Promise.all((await client.listFilters()).filter((f) => mine.has(f.name)).map((f) => client.undefineFilter(f)));
      };
      await cleanup(names);

      for (let round = 0; round < ROUNDS; round++) {
        const from = Math.floor((round * N) / ROUNDS);
        const to = Math.floor(((round + 1) * N) / ROUNDS);
        const idx = Array.from({ length: to - from }, (_, i) => from + i);
        const virshIdx = idx.slice(0, Math.max(1, Math.round((VIRSH_N * idx.length) / N)));
        const order = methods.map((_, i) => methods[(i + round) % methods.length]!);
        for (const m of order) {
          const a = acc[m];
          const t0 = performance.now();
          if (m === 'seq' || m === 'conc' || m === 'seqNv') {
            const stopWatch = watchLoop();
            const validate = m !== 'seqNv';
            await pool(idx, m === 'conc' ? CONCURRENCY : 1, async (i) => {
              const s = performance.now();
              await client.defineFilter(xmls[i]!, { validate });
              a.times.push(performance.now() - s);
            });
            a.wall += performance.now() - t0;
            stopWatch();
          } else if (m === 'c' || m === 'cNv') {
            const args = [...(m === 'cNv' ? ['--no-validate'] : []), ...idx.map((i) => files[i]!)];
            const out = execFileSync(cBin!, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
            const ct = out.trim().split('\n').map(Number);
            a.times.push(...ct);
            a.wall += ct.reduce((x, y) => x + y, 0); // its calls only, not its process start
          } else {
            for (const i of virshIdx) {
              const s = performance.now();
              const validate = m === 'virsh' ? ['--validate'] : [];
              execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'nwfilter-define', ...validate, files[i]!], { stdio: 'ignore' });
              a.times.push(performance.now() - s);
            }
            a.wall += performance.now() - t0;
          }
          await cleanup(idx.map((i) => names[i]!));
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    // also after a failure: leave no filter of this run behind
    const left = (await client.listFilters().catch(() => [])).filter((f) => f.name.startsWith(`${prefix}-`));
    for (const f of left) await client.undefineFilter(f).catch(() => undefined);
  }
  const version = await client.libVersion();
  await client.close();

  const f3 = (n: number) => n.toFixed(3);
  const out: string[] = [];
  out.push(`libvirt ${version}, node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  out.push(`${N} filters per row (virsh loops: ${VIRSH_N}), ${ROUNDS} interleaved rounds; VALIDATE unless the row says otherwise`, '');
  out.push('| rules | method | calls | median ms/call | p95 ms/call | wall ms/filter |', '|---|---|---|---|---|---|');
  for (const [rules, acc] of results)
    for (const m of methods) {
      const a = acc[m];
      out.push(`| ${rules} | ${label[m]} | ${a.times.length} | ${f3(quantile(a.times, 0.5))} | ${f3(quantile(a.times, 0.95))} | ${f3(a.wall / a.times.length)} |`);
    }
  out.push('');
  for (const [rules, acc] of results) {
    const med = (m: Method) => quantile(acc[m].times, 0.5);
    const x = (a: Method, b: Method) => `${(med(a) / med(b)).toFixed(2)}x`;
    const vsRaw = cBin ? `client/raw C = ${x('seq', 'c')} (no VALIDATE: ${x('seqNv', 'cNv')})` : 'raw C: n/a (apt-get install gcc libvirt-dev)';
    const thr = (acc.seq.wall / acc.seq.times.length / (acc.conc.wall / acc.conc.times.length)).toFixed(2);
    out.push(
      `${rules} rules (medians): ${vsRaw}; virsh/client = ${x('virsh', 'seq')} (no VALIDATE: ${x('virshNv', 'seqNv')}); ` +
        `throughput ${CONCURRENCY} in flight / sequential = ${thr}x`,
    );
  }
  const ms = (us: number) => (us / 1000).toFixed(1);
  out.push(`gap between ticks of a 1 ms timer while the client ran: p50 ${ms(ticks.percentile(50))} ms, p99 ${ms(ticks.percentile(99))} ms, max ${ms(ticks.max)} ms`);
  process.stdout.write(out.join('\n') + '\n');
}

await main();
