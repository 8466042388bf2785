// Defines 1,000 filters of 10 rules and of 100 rules through our RPC client (sequential, and with
// bounded concurrency), through the raw C API (a tiny program linked against libvirt, the floor),
// and through a `virsh nwfilter-define` loop, side by side in one run. Prints per-call medians and
// p95 and the ratios. Needs the libvirtd of hack/libvirt-up.sh; cleans up its filters.
// Run: npm run bench:libvirt        (BENCH_N=200 for a quicker run)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LibvirtClient } from '../src/libvirt/index.js';

const N = Number(process.env.BENCH_N ?? 1000);
const VIRSH_N = Number(process.env.BENCH_VIRSH_N ?? Math.min(N, 100));
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const prefix = `nwf-bench-${process.pid}`;

function filterXml(name: string, rules: number): string {
  const body = Array.from({ length: rules }, (_, i) => `<rule action='accept' direction='in' priority='${i % 1000}'><tcp dstportstart='${1000 + i}' comment='rule ${i}'/></rule>`).join('');
  return `<filter name='${name}' chain='root'>${body}</filter>`;
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

function rawCBinary(): string | undefined {
  const out = join(process.env.NWF_CACHE ?? join(process.env.HOME ?? '/root', '.cache/nwfilter-operator'), 'bin', 'bench-define-c');
  if (existsSync(out)) return out;
  mkdirSync(join(out, '..'), { recursive: true });
  const r = spawnSync('cc', ['-O2', '-o', out, 'bench/c/define.c', '-lvirt'], { encoding: 'utf8' });
  return r.status === 0 ? out : undefined;
}

async function main(): Promise<void> {
  const client = new LibvirtClient({ concurrency: CONCURRENCY });
  await client.connect();
  const dir = mkdtempSync(join(tmpdir(), 'nwf-bench-'));
  const rows: { rules: number; method: string; calls: number; median: number; p95: number; total: number }[] = [];
  const cBin = rawCBinary();

  for (const rules of [10, 100]) {
    const names = Array.from({ length: N }, (_, i) => `${prefix}-${rules}-${i}`);
    const xmls = names.map((n) => filterXml(n, rules));
    const files = names.map((n, i) => {
      const f = join(dir, `${n}.xml`);
      writeFileSync(f, xmls[i]!);
      return f;
    });
    const cleanup = async () => {
      for (const n of names) await client.undefineFilter(n).catch(() => undefined);
    };

    // 1. our client, one call at a time (first definition of each name)
    let times: number[] = [];
    let t0 = performance.now();
    for (const x of xmls) {
      const s = performance.now();
      await client.defineFilter(x);
      times.push(performance.now() - s);
    }
    rows.push({ rules, method: 'client, sequential', calls: N, median: quantile(times, 0.5), p95: quantile(times, 0.95), total: performance.now() - t0 });
    await cleanup();

    // 2. our client, CONCURRENCY calls in flight
    times = [];
    t0 = performance.now();
    await Promise.all(
      xmls.map(async (x) => {
        const s = performance.now();
        await client.defineFilter(x);
        times.push(performance.now() - s);
      }),
    );
    const wall = performance.now() - t0;
    rows.push({ rules, method: `client, ${CONCURRENCY} in flight`, calls: N, median: wall / N, p95: NaN, total: wall });
    await cleanup();

    // 3. raw C API, one connection (the floor)
    if (cBin) {
      t0 = performance.now();
      const out = execFileSync(cBin, files, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      const ct = out.trim().split('\n').map(Number);
      rows.push({ rules, method: 'raw C API, sequential', calls: N, median: quantile(ct, 0.5), p95: quantile(ct, 0.95), total: performance.now() - t0 });
      await cleanup();
    }

    // 4. a virsh loop (process start per filter), on the first VIRSH_N files
    times = [];
    t0 = performance.now();
    for (const f of files.slice(0, VIRSH_N)) {
      const s = performance.now();
      execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'nwfilter-define', '--validate', f], { stdio: 'ignore' });
      times.push(performance.now() - s);
    }
    rows.push({ rules, method: 'virsh nwfilter-define loop', calls: VIRSH_N, median: quantile(times, 0.5), p95: quantile(times, 0.95), total: performance.now() - t0 });
    await cleanup();
  }
  const version = await client.libVersion();
  await client.close();

  const fmt = (n: number) => (Number.isNaN(n) ? '-' : n.toFixed(3));
  process.stdout.write(`libvirt ${version}, node ${process.version}, ${N} filters per row (virsh: ${VIRSH_N})\n\n`);
  process.stdout.write('| rules | method | calls | median ms/call | p95 ms | total s |\n|---|---|---|---|---|---|\n');
  for (const r of rows) process.stdout.write(`| ${r.rules} | ${r.method} | ${r.calls} | ${fmt(r.median)} | ${fmt(r.p95)} | ${(r.total / 1000).toFixed(2)} |\n`);
  process.stdout.write('\n');
  for (const rules of [10, 100]) {
    const get = (m: string) => rows.find((r) => r.rules === rules && r.method.startsWith(m));
    const seq = get('client, sequential')!;
    const raw = get('raw C API');
    const virsh = get('virsh')!;
    process.stdout.write(
      `${rules} rules: client/raw C = ${raw ? (seq.median / raw.median).toFixed(2) + 'x' : 'n/a (no cc or libvirt-dev)'}; virsh/client = ${(virsh.median / seq.median).toFixed(1)}x\n`,
    );
  }
}

await main();
