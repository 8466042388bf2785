// Defines N filters (default 1,000) of 10 rules and of 100 rules, side by side in one run:
//   1. through our RPC client, one call at a time;
//   2. through our RPC client, BENCH_CONCURRENCY calls in flight (default 4);
//   3. through the raw C API (bench/c/define.c linked against libvirt, one connection: the floor);
//      compiled into the cache when cc and libvirt-dev are there, skipped otherwise;
//   4. through a `virsh nwfilter-define --validate` loop (one process per filter), over the first
//      BENCH_VIRSH_N files (default 100): each call costs a process start, so fewer calls suffice.
// All use virNWFilterDefineXMLFlags(VALIDATE) on a new name. Prints per-call median and p95
// latency, wall time per filter (throughput) and the ratios. Needs the libvirtd of
// hack/libvirt-up.sh; removes its filters after each row.
// Run: npm run bench:libvirt   (or npx tsx bench/libvirt-define.bench.ts; BENCH_N=200 for a quick run)
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

interface Row {
  rules: number;
  method: string;
  calls: number;
  median: number;
  p95: number;
  /** Wall-clock time of the whole row divided by its calls: the throughput view. */
  wallPerCall: number;
}

async function main(): Promise<void> {
  const client = new LibvirtClient({ socketPath: SOCKET, concurrency: CONCURRENCY });
  await client.connect();
  const dir = mkdtempSync(join(tmpdir(), 'nwf-bench-'));
  const rows: Row[] = [];
  const cBin = rawCBinary();
  const row = (rules: number, method: string, times: number[], wall: number) =>
    rows.push({ rules, method, calls: times.length, median: quantile(times, 0.5), p95: quantile(times, 0.95), wallPerCall: wall / times.length });

  try {
    for (const rules of [10, 100]) {
      const names = Array.from({ length: N }, (_, i) => `${prefix}-${rules}-${i}`);
      const xmls = names.map((n) => filterXml(n, rules));
      const files = names.map((n, i) => {
        const f = join(dir, `${n}.xml`);
        writeFileSync(f, xmls[i]!);
        return f;
      });
      // Undefine between rows so that every row defines new filters (same work for each method).
      const cleanup = async () => {
        const mine = new Set(names);
        await Promise.all((await client.listFilters()).filter((f) => mine.has(f.name)).map((f) => client.undefineFilter(f)));
      };
      await cleanup();

      let times: number[] = [];
      let t0 = performance.now();
      for (const x of xmls) {
        const s = performance.now();
        await client.defineFilter(x);
        times.push(performance.now() - s);
      }
      row(rules, 'client, sequential', times, performance.now() - t0);
      await cleanup();

      times = [];
      t0 = performance.now();
      await Promise.all(
        xmls.map(async (x) => {
          const s = performance.now();
          await client.defineFilter(x);
          times.push(performance.now() - s);
        }),
      );
      row(rules, `client, ${CONCURRENCY} in flight`, times, performance.now() - t0);
      await cleanup();

      if (cBin) {
        t0 = performance.now();
        const out = execFileSync(cBin, files, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
        // its wall time includes the process start and connect, once
        row(rules, 'raw C API, sequential', out.trim().split('\n').map(Number), performance.now() - t0);
        await cleanup();
      }

      times = [];
      t0 = performance.now();
      for (const f of files.slice(0, VIRSH_N)) {
        const s = performance.now();
        execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'nwfilter-define', '--validate', f], { stdio: 'ignore' });
        times.push(performance.now() - s);
      }
      row(rules, 'virsh nwfilter-define loop', times, performance.now() - t0);
      await cleanup();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const version = await client.libVersion();
  await client.close();

  const f3 = (n: number) => n.toFixed(3);
  const out: string[] = [];
  out.push(`libvirt ${version}, node ${process.version}; ${N} filters per row (virsh loop: ${VIRSH_N}); all with VALIDATE`, '');
  out.push('| rules | method | calls | median ms/call | p95 ms/call | wall ms/filter |', '|---|---|---|---|---|---|');
  for (const r of rows) out.push(`| ${r.rules} | ${r.method} | ${r.calls} | ${f3(r.median)} | ${f3(r.p95)} | ${f3(r.wallPerCall)} |`);
  out.push('');
  for (const rules of [10, 100]) {
    const get = (m: string) => rows.find((r) => r.rules === rules && r.method.startsWith(m));
    const seq = get('client, sequential')!;
    const conc = get(`client, ${CONCURRENCY} in flight`)!;
    const raw = get('raw C API');
    const virsh = get('virsh')!;
    const vsRaw = raw ? `client/raw C median = ${(seq.median / raw.median).toFixed(2)}x` : 'raw C: n/a (apt-get install gcc libvirt-dev)';
    out.push(
      `${rules} rules: ${vsRaw}; virsh/client median = ${(virsh.median / seq.median).toFixed(1)}x; ` +
        `${CONCURRENCY} in flight vs sequential throughput = ${(seq.wallPerCall / conc.wallPerCall).toFixed(2)}x`,
    );
  }
  process.stdout.write(out.join('\n') + '\n');
}

await main();
