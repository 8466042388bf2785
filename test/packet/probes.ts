// Real-socket probes and echo listeners. Shared by the namespace agent (agent.ts, which runs them
// inside a lab namespace) and the test process (probes from the host run in-process). Nothing here
// knows about namespaces or libvirt: every function takes addresses and returns a verdict.
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';

/**
 * What the network answered. `open`: the service answered in both directions. `refused`: an explicit
 * no came back (TCP RST, ICMP/ICMPv6 unreachable). `dropped`: nothing came back within the timeout.
 */
export type Verdict = 'open' | 'refused' | 'dropped';
export type Family = 4 | 6;
export type Proto = 'tcp' | 'udp' | 'icmp';

export interface SocketProbe {
  proto: Proto;
  family: Family;
  dst: string;
  /** Destination port (tcp/udp). */
  port?: number;
  /** Fixed source port (tcp/udp); ephemeral when absent. */
  srcPort?: number;
  timeoutMs: number;
}

export interface ProbeOutcome {
  verdict: Verdict;
  /** Why: the errno, `echo`, `reply`, `connected, no echo`, ... for failure messages. */
  detail: string;
  ms: number;
}

export interface TransferSpec {
  family: Family;
  dst: string;
  port: number;
  bytes: number;
  timeoutMs: number;
  /**
   * Forget the path MTU learned for dst first (`ip route flush cache DST`; default true), so that
   * the transfer has to discover it again: the ICMP "fragmentation needed"/"packet too big" must
   * then reach the sender, or the transfer stalls.
   */
  flushPmtu?: boolean;
}

export interface TransferOutcome extends ProbeOutcome {
  /** Bytes that came back from the echo server. */
  echoed: number;
  /** Path MTU the sender's kernel has cached for dst after the transfer (undefined: none learned). */
  pathMtu: number | undefined;
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** One datagram's payload; the echo server sends it back as is. */
const UDP_PAYLOAD = Buffer.from('nwflab-probe');

/**
 * errnos that are an answer from the path: the peer's kernel (RST, port unreachable), a REJECT rule
 * on the way (ICMP unreachable), or a local firewall (EPERM). Anything else is a harness failure and
 * is thrown, never classified. Note EHOSTUNREACH is also what a failed ARP/ND resolution gives, but
 * only after ~3 s, beyond sensible probe timeouts.
 */
const REFUSALS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPERM', 'EACCES']);

const errnoOf = (err: unknown): string => (err as NodeJS.ErrnoException | undefined)?.code ?? String(err);

/**
 * A promise settled once by whichever comes first: an answer, an error, or the deadline. Every path
 * runs `cleanup` exactly once, so sockets and timers never outlive the probe.
 */
function bounded<T>(timeoutMs: number, onTimeout: () => T, body: (settle: (v: T) => void, fail: (e: unknown) => void) => () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let cleanup: () => void = () => undefined;
    const finish = (f: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      cleanup();
      f();
    };
    const timer = setTimeout(() => finish(() => resolve(onTimeout())), timeoutMs);
    const fail = (e: unknown) => finish(() => reject(e instanceof Error ? e : new Error(String(e))));
    let release: () => void;
    try {
      release = body((v) => finish(() => resolve(v)), fail);
    } catch (e) {
      fail(e); // e.g. a bad port: the timer must not outlive it
      return;
    }
    // Settled while body was still running: clean up now, finish() saw the no-op.
    if (done) release();
    else cleanup = release;
  });
}

function outcome(verdict: Verdict, detail: string, start: number): ProbeOutcome {
  return { verdict, detail, ms: Math.round(performance.now() - start) };
}

/** Refusal errnos become `refused`; others reject (a bug in the lab, not a verdict). */
function refusalOr(err: unknown, start: number, settle: (o: ProbeOutcome) => void, fail: (e: unknown) => void): void {
  const code = errnoOf(err);
  if (REFUSALS.has(code)) settle(outcome('refused', code, start));
  else fail(err);
}

/** TCP: open = connected AND one echoed byte came back, which proves the reply direction too. */
export function tcpProbe(p: SocketProbe): Promise<ProbeOutcome> {
  const start = performance.now();
  let connected = false;
  return bounded(
    p.timeoutMs,
    () => outcome('dropped', connected ? 'connected, no echo' : 'no answer', start),
    (settle, fail) => {
      const sock = net.connect({ host: p.dst, port: requirePort(p), family: p.family, ...(p.srcPort ? { localPort: p.srcPort } : {}) });
      sock.once('connect', () => {
        connected = true;
        sock.write('x');
      });
      sock.once('data', () => settle(outcome('open', 'echo', start)));
      sock.once('end', () => settle(outcome('refused', 'closed before echo', start)));
      sock.on('error', (err) => refusalOr(err, start, settle, fail));
      // A reset instead of a FIN: no TIME_WAIT, so a fixed source port can be used again at once.
      return () => (connected && !sock.destroyed ? sock.resetAndDestroy() : sock.destroy());
    },
  );
}

/**
 * UDP on a connected socket: open = the datagram came back. An ICMP port unreachable (from the
 * peer's kernel or a REJECT rule) surfaces as ECONNREFUSED on the next receive: refused.
 */
export function udpProbe(p: SocketProbe): Promise<ProbeOutcome> {
  const start = performance.now();
  return bounded(
    p.timeoutMs,
    () => outcome('dropped', 'no answer', start),
    (settle, fail) => {
      const sock = dgram.createSocket({ type: p.family === 6 ? 'udp6' : 'udp4' });
      sock.on('error', (err) => refusalOr(err, start, settle, fail));
      sock.on('message', () => settle(outcome('open', 'echo', start)));
      const send = () =>
        sock.connect(requirePort(p), p.dst, () => sock.send(UDP_PAYLOAD, (err) => err && refusalOr(err, start, settle, fail)));
      if (p.srcPort) sock.bind({ port: p.srcPort, exclusive: true }, send);
      else send();
      return () => {
        try {
          sock.close();
        } catch {
          // already closed
        }
      };
    },
  );
}

/** Runs a command with a hard deadline (SIGKILL), never rejects on a non-zero exit. */
export function run(argv: string[], timeoutMs: number): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new Error('run: empty argv'));
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err && typeof err.code === 'string') return reject(err); // ENOENT & co: not run at all
      const timedOut = Boolean(err?.killed) && err?.signal === 'SIGKILL';
      resolve({ code: typeof err?.code === 'number' ? err.code : err ? null : 0, signal: err?.signal ?? null, stdout, stderr, timedOut });
    });
  });
}

/**
 * ICMP echo with the system ping (Node has no raw sockets): exit 0 = a reply. An ICMP error reply
 * (e.g. "From 198.18.0.1 icmp_seq=1 Destination Port Unreachable" from a REJECT) = refused.
 */
export async function icmpProbe(p: SocketProbe): Promise<ProbeOutcome> {
  const start = performance.now();
  const seconds = (p.timeoutMs / 1000).toFixed(3);
  const r = await run(['ping', p.family === 6 ? '-6' : '-4', '-n', '-c', '1', '-W', seconds, p.dst], p.timeoutMs + 2000);
  if (r.code === 0) return outcome('open', 'reply', start);
  const error = /^From \S+ icmp_seq=\d+ (.+)$/m.exec(r.stdout);
  if (error) return outcome('refused', error[1] ?? 'icmp error', start);
  if (r.code === 1 || r.timedOut) return outcome('dropped', 'no reply', start);
  throw new Error(`ping ${p.dst} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
}

export function probe(p: SocketProbe): Promise<ProbeOutcome> {
  switch (p.proto) {
    case 'tcp':
      return tcpProbe(p);
    case 'udp':
      return udpProbe(p);
    case 'icmp':
      return icmpProbe(p);
  }
}

function requirePort(p: { proto?: Proto; port?: number }): number {
  if (!p.port || p.port < 1 || p.port > 65535) throw new Error(`${p.proto ?? 'transfer'} probe needs a port in 1..65535, got ${p.port}`);
  return p.port;
}

// ---- bulk transfer (path MTU) -----------------------------------------------------------------

/** Writes `bytes` to a TCP echo server and reads them back; DF is Linux's default for TCP. */
function echoTransfer(t: TransferSpec, start: number): Promise<TransferOutcome> {
  let echoed = 0;
  let connected = false;
  const result = (o: ProbeOutcome): TransferOutcome => ({ ...o, echoed, pathMtu: undefined });
  return bounded(
    t.timeoutMs,
    () => result(outcome('dropped', connected ? `${echoed}/${t.bytes} bytes echoed` : 'no answer', start)),
    (settle, fail) => {
      const sock = net.connect({ host: t.dst, port: requirePort(t), family: t.family });
      sock.once('connect', () => {
        connected = true;
        sock.write(Buffer.alloc(t.bytes, 0x5a));
      });
      sock.on('data', (d: Buffer) => {
        echoed += d.length;
        if (echoed >= t.bytes) settle(result(outcome('open', `${echoed} bytes echoed`, start)));
      });
      sock.once('end', () => settle(result(outcome('refused', `closed after ${echoed}/${t.bytes} bytes`, start))));
      sock.on('error', (err) => refusalOr(err, start, (o) => settle(result(o)), fail));
      return () => (connected && !sock.destroyed ? sock.resetAndDestroy() : sock.destroy());
    },
  );
}

/** The path MTU the kernel cached for dst ("cache expires 597sec mtu 1280"), if any. */
export async function cachedPathMtu(family: Family, dst: string): Promise<number | undefined> {
  const r = await run(['ip', `-${family}`, 'route', 'get', dst], 5000);
  const m = /\bmtu (\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : undefined;
}

export async function transfer(t: TransferSpec): Promise<TransferOutcome> {
  if (t.flushPmtu ?? true) {
    const r = await run(['ip', `-${t.family}`, 'route', 'flush', 'cache', t.dst], 5000);
    if (r.code !== 0) throw new Error(`ip route flush cache: ${r.stderr.trim()}`);
  }
  const o = await echoTransfer(t, performance.now());
  return { ...o, pathMtu: await cachedPathMtu(t.family, t.dst) };
}

// ---- echo listeners ---------------------------------------------------------------------------

export interface ListenSpec {
  tcp?: number[];
  udp?: number[];
}

/**
 * TCP and UDP echo servers on given addresses. listen() is additive and idempotent (a port already
 * served is kept), close() ends every server and connection.
 */
export class EchoListeners {
  private readonly tcp = new Map<string, net.Server>();
  private readonly udp = new Map<string, dgram.Socket>();
  private readonly conns = new Set<net.Socket>();

  /** `hosts`: addresses to bind (`0.0.0.0`/`::` inside a namespace; the bridge addresses on the host). */
  constructor(private readonly hosts: string[]) {}

  async listen(spec: ListenSpec): Promise<void> {
    const work: Promise<void>[] = [];
    for (const host of this.hosts) {
      for (const port of spec.tcp ?? []) if (!this.tcp.has(`${host}/${port}`)) work.push(this.listenTcp(host, port));
      for (const port of spec.udp ?? []) if (!this.udp.has(`${host}/${port}`)) work.push(this.listenUdp(host, port));
    }
    await Promise.all(work);
  }

  private listenTcp(host: string, port: number): Promise<void> {
    const server = net.createServer((sock) => {
      this.conns.add(sock);
      sock.once('close', () => this.conns.delete(sock));
      // Probes reset their connections; a peer that vanished behind a new drop rule must not pin
      // the socket forever.
      sock.setTimeout(30_000, () => sock.destroy());
      sock.on('error', () => sock.destroy());
      sock.pipe(sock);
    });
    this.tcp.set(`${host}/${port}`, server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, ipv6Only: net.isIPv6(host) }, () => resolve());
    });
  }

  private listenUdp(host: string, port: number): Promise<void> {
    const sock = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', ipv6Only: net.isIPv6(host) });
    sock.on('message', (msg, from) => sock.send(msg, from.port, from.address));
    this.udp.set(`${host}/${port}`, sock);
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: host, port, exclusive: true }, () => {
        sock.off('error', reject);
        // A send to a peer that went away may report an ICMP error here: not fatal for a server.
        sock.on('error', () => undefined);
        resolve();
      });
    });
  }

  ports(): { tcp: string[]; udp: string[] } {
    return { tcp: [...this.tcp.keys()], udp: [...this.udp.keys()] };
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await Promise.all([...this.tcp.values()].map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const s of this.udp.values()) s.close();
    this.tcp.clear();
    this.udp.clear();
  }
}
