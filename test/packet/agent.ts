// One long-lived agent per lab namespace, started by the lab as
//   ip netns exec nwflab-<name> node --import tsx test/packet/agent.ts
// so that every socket it opens, and every child it runs (ping, udhcpc, dnsmasq), lives in that
// namespace. Spawning a process per probe would be far too slow for thousands of probes; one agent
// serves any number of concurrent requests (protocol: agent-protocol.ts).
// It exits when its stdin ends: when the lab closes it, and when the test process dies.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { AgentHello, AgentRequest, AgentResponse, AgentResults } from './agent-protocol.js';
import { EchoListeners, probe, run, transfer } from './probes.js';

const OUTPUT_LINES = 200;

interface Daemon {
  child: ChildProcess;
  output: string[];
  exited: Promise<void>;
}

/** Long-lived children (dnsmasq) tied to the agent's life. */
class Daemons {
  private next = 1;
  private readonly running = new Map<number, Daemon>();

  start(argv: string[], ready: RegExp, timeoutMs: number): Promise<AgentResults['daemon']> {
    const [file, ...args] = argv;
    if (!file) return Promise.reject(new Error('daemon: empty argv'));
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin', LC_ALL: 'C' } });
    const d: Daemon = { child, output: [], exited: new Promise((r) => child.once('close', () => r())) };
    const id = this.next++;
    this.running.set(id, d);
    void d.exited.then(() => this.running.delete(id));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${file} not ready within ${timeoutMs} ms:\n${d.output.join('\n')}`));
      }, timeoutMs);
      const onLine = (line: string) => {
        d.output.push(line);
        if (d.output.length > OUTPUT_LINES) d.output.shift();
        if (ready.test(line)) {
          clearTimeout(timer);
          resolve({ daemon: id, pid: child.pid ?? -1 });
        }
      };
      for (const stream of [child.stdout, child.stderr]) if (stream) createInterface({ input: stream }).on('line', onLine);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${file} exited (${code ?? signal}) before it was ready:\n${d.output.join('\n')}`));
      });
    });
  }

  async stop(id: number): Promise<AgentResults['stop']> {
    const d = this.running.get(id);
    if (!d) return { output: '' };
    d.child.kill('SIGTERM');
    const killer = setTimeout(() => d.child.kill('SIGKILL'), 2000);
    await d.exited;
    clearTimeout(killer);
    return { output: d.output.join('\n') };
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((id) => this.stop(id)));
  }
}

// Inside a namespace the agent is the only tenant: the wildcard addresses mean "this VM".
const listeners = new EchoListeners(['0.0.0.0', '::']);
const daemons = new Daemons();

async function serve(req: AgentRequest): Promise<unknown> {
  switch (req.op) {
    case 'listen':
      await listeners.listen(req.spec);
      return listeners.ports();
    case 'probe':
      return probe(req.probe);
    case 'transfer':
      return transfer(req.spec);
    case 'exec':
      return run(req.argv, req.timeoutMs);
    case 'daemon':
      return daemons.start(req.argv, new RegExp(req.ready), req.readyTimeoutMs);
    case 'stop':
      return daemons.stop(req.daemon);
  }
}

function write(msg: AgentResponse | AgentHello): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}

async function handle(line: string): Promise<void> {
  let req: AgentRequest;
  try {
    req = JSON.parse(line) as AgentRequest;
  } catch {
    process.stderr.write(`agent: not JSON: ${line}\n`);
    return;
  }
  try {
    write({ id: req.id, ok: true, result: await serve(req) });
  } catch (err) {
    write({ id: req.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  }
}

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await daemons.stopAll();
  await listeners.close();
  process.exit(0);
}

const input = createInterface({ input: process.stdin });
input.on('line', (line) => void handle(line));
input.once('close', () => void shutdown());
process.once('SIGTERM', () => void shutdown());
write({ hello: 'nwflab-agent', pid: process.pid });
