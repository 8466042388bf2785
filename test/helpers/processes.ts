import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface OperatorProcess {
  child: ChildProcess;
  metricsPort: number;
  healthPort: number;
  logFile: string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  metrics(): Promise<string>;
}

const running = new Set<ChildProcess>();
// A test that fails half-way must not leave operators running against the shared daemons.
process.once('exit', () => running.forEach((c) => c.kill('SIGKILL')));

/** Starts `nwfilter-operator <command>` from source, logging to a file under $NWF_STATE/test-logs. */
export async function startOperator(command: 'controller' | 'agent', args: string[], label: string): Promise<OperatorProcess> {
  const metricsPort = await freePort();
  const healthPort = await freePort();
  const dir = join(process.env.NWF_STATE ?? '/tmp/nwfilter-operator', 'test-logs');
  mkdirSync(dir, { recursive: true });
  const logFile = join(dir, `${label}-${Date.now()}.log`);
  const log = createWriteStream(logFile);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli.ts', command, '--metrics-addr', `127.0.0.1:${metricsPort}`, '--health-addr', `127.0.0.1:${healthPort}`, ...args],
    { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(child);
  child.once('exit', () => running.delete(child));
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const proc: OperatorProcess = {
    child,
    metricsPort,
    healthPort,
    logFile,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    async metrics() {
      // A kept-alive connection the server closes as idle at the moment fetch reuses it fails with
      // "other side closed": that is the socket, not the process, so ask again on a new one.
      for (let attempt = 1; ; attempt++) {
        try {
          const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
          return await r.text();
        } catch (err) {
          if (attempt >= 3 || child.exitCode !== null || child.signalCode !== null) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
  // Ready when /readyz answers 200 (informers synced, libvirt connected).
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${label} exited with ${child.exitCode}; see ${logFile}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${label} not ready after 60s; see ${logFile}`);
    }
    try {
      const r = await fetch(`http://127.0.0.1:${healthPort}/readyz`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return proc;
}

/** Sum of a Prometheus counter's samples whose labels include `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = line.match(/^(\w+)(\{([^}]*)\})?\s+([0-9.eE+-]+)$/);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries((m[3] ?? '').split(',').filter(Boolean).map((kv) => { const [k, v] = kv.split('='); return [k, v!.replace(/^"|"$/g, '')]; }));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(m[4]);
  }
  return total;
}
