/**
 * Packet-test lab: "the kernel is the judge". Tests prove firewall behaviour with real packets
 * through the iptables/ip6tables/ebtables rules that libvirt installs for a filter binding.
 *
 * TOPOLOGY (root network namespace = "host")
 *
 *     host (test process)  198.18.0.1/24  fd6e:7766:0:1::1/64
 *          |
 *     [bridge nwflab0]  (STP off, multicast snooping off: a dumb switch)
 *       |                |                 |
 *    nwfl-vm1         nwfl-peer         nwfl-r1          <- host ends of veth pairs = bridge ports,
 *       |                |                 |                exactly where libvirt binds a VM's tap
 *    ns nwflab-vm1    ns nwflab-peer    ns nwflab-r1 (router: ip_forward=1 in this namespace only)
 *    eth0 .10 / ::10  eth0 .11 / ::11   eth0 198.18.0.254 / fd6e:7766:0:1::254
 *                                       far0 198.18.1.1/24  fd6e:7766:0:2::1/64  (bridge, MTU 1280)
 *                                          |
 *                                       ns nwflab-far1  eth0 198.18.1.10 / fd6e:7766:0:2::10, MTU 1280
 *
 * Bridge endpoints ("VMs", "peers") route by default via the bridge address, and to the far network
 * via the router. The host's own addresses on the bridge matter: a REJECT on a bridge is emitted by
 * the host from its own address, so without one a reject degrades to a drop. Probes only ever go
 * between lab namespaces, the bridge addresses and loopback; the lab turns forwarding on in the
 * router's namespace only.
 * ADDRESSES: 198.18.0.0/24 + fd6e:7766:0:1::/64 on the bridge; 198.18.1.0/24 + fd6e:7766:0:2::/64
 * behind the router. Default host numbers: bridge endpoints .10, .11, ... (IPv6 ::10, ::11, the same
 * digits), MAC 52:54:00:6e:00:<n in hex>; the router .254; far endpoints .10, ... on the far net.
 * NAMES: bridge nwflab0, namespaces nwflab-<name>, host veths nwfl-<name> (name: <= 10 chars),
 * filters of tests should be named nwflab-* (hack/netlab.sh down removes those too).
 *
 * PATH MTU: the far link has MTU 1280, the bridge 1500. A far endpoint's own MSS would be derived
 * from its 1280 link and the VM would never send a packet too big; so its route back advertises a
 * 1500-link MSS (`advmss`), as a host behind a smaller transit link does. A VM's bulk transfer to it
 * then needs the router's ICMP "fragmentation needed" / ICMPv6 "packet too big" to reach the VM
 * through the VM's filter; if the filter drops them, the transfer stalls (`dropped`).
 *
 * PROBES run with real sockets inside the namespaces, through one long-lived agent process per
 * namespace (agent.ts, JSON lines over stdin/stdout; it exits when the lab closes or the test process
 * dies). Probes from 'host' run in the test process itself. Verdicts:
 *   open     TCP: connected AND one echoed byte came back (proves the reply direction);
 *            UDP: the datagram was echoed; ICMP: an echo reply came back
 *   refused  an explicit no: TCP RST, ICMP(v6) unreachable (e.g. a REJECT; on a connected UDP socket
 *            it surfaces as ECONNREFUSED), "From x icmp_seq=1 Destination ... Unreachable" for ping
 *   dropped  nothing came back within the timeout (default 700 ms)
 * A probe sends one SYN / one datagram / one echo request: bounded in time and in packets. An
 * unexpected error (a harness bug) throws instead of being classified.
 * Conntrack: bind() and unbind() delete the endpoint's conntrack entries, so a flow seen before the
 * change is judged by the new rules (libvirt's rules accept ESTABLISHED traffic).
 *
 * WHAT THE KERNEL DOES HERE (found with this lab; the smoke test lab.test.ts pins most of it)
 * - Host-originated packets to a VM never pass FORWARD: libvirt's FO- chain (matched with
 *   --physdev-is-bridged) does not see them. The VM's answers to the host do pass HI-, where each
 *   stateless rule also has its reverse half (e.g. --sport 2223 REJECT): such answers vanish.
 * - libvirt's <tcp>/<udp>/<icmp> are IPv4 only (iptables); IPv6 needs <tcp-ipv6>/... (ip6tables).
 * - REJECT: the host sends the ICMP error, subject to the host's ICMP rate limits (1/s per
 *   destination for IPv4, 10/s for IPv6, 1000/s overall with a burst of 50): many rejected probes
 *   towards one peer would mostly look dropped. hack/netlab.sh up lifts them (and down restores).
 * - A veth delivers synchronously: a VM's SYN was bridged, rejected and the ICMP error delivered
 *   back while the VM's connect() still held the socket lock; TCP drops such an error (nstat
 *   TcpExtLockDroppedIcmps) and over IPv6 the probe looked dropped. The host end of every bridge port
 *   therefore receives through threaded NAPI (GRO on, VM end without TSO), like a real VM's tap.
 * - A router sends neighbour solicitations for forwarded packets from its link-local address, not at
 *   all while that is tentative: lab namespaces run without DAD (IPv6 through the router stalled
 *   1-2 s after every setup otherwise). Lab namespaces have no ICMP rate limits either.
 * - dnsmasq pings an address before offering it (~3 s per first OFFER): the lab runs it --no-ping.
 *   udhcpc asks for unicast replies by default (OFFER/ACK to the offered address and the client's
 *   MAC), broadcast with `broadcast: true`; both pass a port bound without DHCP rules.
 *
 * ONE LAB PER MACHINE: names and addresses are fixed, so Lab.create() takes /run/nwflab.lock (a
 * concurrent test process waits, default up to 240 s; a dead owner's lock is taken over) and then
 * runs `hack/netlab.sh sweep`: under the lock, anything with the lab prefix is a dead run's leftover.
 *
 * RUN: `npx vitest run --project packet` (as root; the global setup runs hack/netlab.sh up, which
 * installs iproute2, iptables, iputils-ping, dnsmasq-base, udhcpc, conntrack and ethtool when
 * missing and sets the host sysctls the lab needs, saving the old values; and hack/netlab.sh down at
 * the end, which sweeps whatever a killed run left, removes nwflab-* filters and restores the
 * sysctls, unless another process's lab is live). `hack/netlab.sh status` shows what exists;
 * NWF_KEEP_NETLAB=1 keeps the host prepared after a run.
 *
 * USE
 *   const lab = await Lab.create({ name: 'smoke' });
 *   const vm = await lab.addEndpoint('vm1'); const peer = await lab.addEndpoint('peer');
 *   await lab.listen(vm, { tcp: [22], udp: [53] });
 *   await lab.bind(vm, 'nwflab-x', [{ name: 'IP', value: vm.ipv4 }]);
 *   const r = await lab.probe({ from: peer, to: vm, proto: 'tcp', family: 4, port: 22 }); // r.verdict
 *   await lab.close(); // in afterAll: removes everything it made, also after a failure
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { LibvirtClient, isNotFound, type NwFilterBinding } from '../../src/libvirt/index.js';
import type { AgentHello, AgentOp, AgentRequest, AgentResponse, AgentResults } from './agent-protocol.js';
import {
  EchoListeners,
  probe as probeHere,
  transfer as transferHere,
  type Family,
  type ListenSpec,
  type ProbeOutcome,
  type Proto,
  type SocketProbe,
  type TransferOutcome,
  type TransferSpec,
  type Verdict,
} from './probes.js';

export type { Family, ListenSpec, Proto, Verdict } from './probes.js';

export const LAB = {
  bridge: 'nwflab0',
  /** Fixed, locally administered: a bridge takes its lowest port's MAC otherwise, which changes as ports come and go. */
  bridgeMac: '02:6e:77:66:00:01',
  nsPrefix: 'nwflab-',
  portPrefix: 'nwfl-',
  filterPrefix: 'nwflab-',
  net4: '198.18.0',
  net6: 'fd6e:7766:0:1',
  far4: '198.18.1',
  far6: 'fd6e:7766:0:2',
  host4: '198.18.0.1',
  host6: 'fd6e:7766:0:1::1',
  mtu: 1500,
  farMtu: 1280,
} as const;

export interface Endpoint {
  readonly name: string;
  readonly ns: string;
  /** Bridge endpoints: the host-side veth (a bridge port; what bind() binds). Far endpoints: the router-side veth, inside the router's namespace. */
  readonly port: string;
  readonly mac: string;
  readonly ipv4: string;
  readonly ipv6: string;
  readonly segment: 'bridge' | 'far';
}

export interface Router extends Endpoint {
  readonly farIpv4: string;
  readonly farIpv6: string;
  readonly farMtu: number;
}

/** An endpoint, or the host: the bridge's addresses in the root namespace (the test process). */
export type Target = Endpoint | 'host';

export interface Probe {
  from: Target;
  to: Target;
  proto: Proto;
  family: Family;
  port?: number;
  srcPort?: number;
  timeoutMs?: number;
}

export interface ProbeResult extends ProbeOutcome {
  probe: Probe;
  /** "vm1 -> peer tcp/4:22" for messages. */
  label: string;
}

export interface TransferOptions {
  from: Target;
  to: Target;
  family: Family;
  port: number;
  /** Default 256 KiB. */
  bytes?: number;
  /** Default 5000 ms. */
  timeoutMs?: number;
}

export interface TransferResult extends TransferOutcome {
  label: string;
}

export interface EndpointOptions {
  ipv4?: string;
  ipv6?: string;
  mac?: string;
}

export interface FilterParam {
  name: string;
  value: string;
}

export interface Chains {
  iptables: string;
  ip6tables: string;
  ebtables: string;
}

export interface DhcpServer {
  readonly endpoint: Endpoint;
  /** Ends dnsmasq; returns its log. */
  stop(): Promise<string>;
}

export interface DhcpLease {
  leased: boolean;
  ip?: string;
  server?: string;
  ms: number;
  /** udhcpc's output, for failure messages. */
  output: string;
}

export interface LabOptions {
  name: string;
  /** libvirtd's socket for bind(); default $NWF_LIBVIRT_SOCKET or /var/run/libvirt/libvirt-sock. */
  socketPath?: string;
  /** Default timeout of one probe; default 700 ms. */
  probeTimeoutMs?: number;
  /** Progress lines (setup steps); default silent. */
  log?: (line: string) => void;
  /** How long create() waits for another lab on this machine to close; default 240 s. */
  lockTimeoutMs?: number;
}

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const AGENT = fileURLToPath(new URL('./agent.ts', import.meta.url));
const COMMAND_TIMEOUT_MS = 20_000;
/** Loaded 2-core CI machines: a tsx-loaded agent can take seconds to come up. */
const AGENT_START_TIMEOUT_MS = 60_000;
/** Added to a request's own bound: the agent's event loop may lag behind on a busy machine. */
const AGENT_SLACK_MS = 10_000;
const READY_TIMEOUT_MS = 15_000;
const MAX_CONCURRENCY = 128;

// ---- commands -------------------------------------------------------------------------------

/** Runs a command; rejects on a non-zero exit unless listed in `ok`. Returns stdout. */
function cmd(argv: string[], opts: { input?: string; ok?: number[]; timeoutMs?: number } = {}): Promise<string> {
  const [file, ...args] = argv;
  if (!file) return Promise.reject(new Error('cmd: empty argv'));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? COMMAND_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== null && (code === 0 || opts.ok?.includes(code))) resolve(stdout);
      else reject(new Error(`${argv.join(' ')}: ${signal ?? `exit ${code}`}: ${stderr.trim() || stdout.trim()}`));
    });
    // A command that exits without reading all of its input must not fail us with EPIPE.
    child.stdin.on('error', () => undefined).end(opts.input ?? '');
  });
}

/** Several `ip` commands in one process; `ns` undefined = the root namespace. */
const ipBatch = (ns: string | undefined, lines: string[]): Promise<string> => cmd(['ip', ...(ns ? ['-n', ns] : []), '-batch', '-'], { input: `${lines.join('\n')}\n` });

function parse<T>(line: string): T | undefined {
  try {
    return JSON.parse(line) as T;
  } catch {
    return undefined;
  }
}

const inNs = (ns: string, argv: string[]): string[] => ['ip', 'netns', 'exec', ns, ...argv];

const xmlAttr = (s: string): string => s.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/** A stable UUID from a name (SHA-1, version 5 layout): the same endpoint owns the same binding owner. */
function nameUuid(name: string): string {
  const h = createHash('sha1').update(`nwflab:${name}`).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/** Polls `check` (itself bounded) until true; a short pause after a quick "no" keeps it from spinning. */
async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const t = Date.now();
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    if (Date.now() - t < 100) await sleep(100);
  }
}

// ---- runners: where a probe's sockets live ----------------------------------------------------

interface Runner {
  listen(spec: ListenSpec): Promise<void>;
  probe(p: SocketProbe): Promise<ProbeOutcome>;
  transfer(t: TransferSpec): Promise<TransferOutcome>;
}

/** The host: sockets in the test process, servers on the bridge addresses only (never on eth0). */
class HostRunner implements Runner {
  readonly listeners = new EchoListeners([LAB.host4, LAB.host6]);
  listen = (spec: ListenSpec) => this.listeners.listen(spec);
  probe = (p: SocketProbe) => probeHere(p);
  transfer = (t: TransferSpec) => transferHere(t);
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** The test process's end of one namespace's agent (agent.ts). */
class Agent implements Runner {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private stderr = '';
  private exited = false;
  private readonly exit: Promise<void>;

  private constructor(
    readonly ns: string,
    private readonly child: ChildProcess,
  ) {
    this.exit = new Promise((r) => child.once('close', () => r()));
    // Without listeners these would throw in the test process: a failed spawn, a write after exit.
    child.on('error', (err) => (this.stderr += `\n${err.message}`));
    child.stdin?.on('error', () => undefined);
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4000)));
    child.once('close', (code, signal) => {
      this.exited = true;
      const err = new Error(`agent in ${ns} exited (${code ?? signal}): ${this.stderr.trim()}`);
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(err);
      }
      this.pending.clear();
    });
  }

  /** Starts the agent in `ns` and waits for its hello line. */
  static async start(ns: string): Promise<Agent> {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', AGENT], {
      cwd: REPO, // --import tsx resolves from here
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', HOME: process.env.HOME ?? '/root' },
    });
    const agent = new Agent(ns, child);
    const lines = createInterface({ input: child.stdout! });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`agent in ${ns}: no hello within ${AGENT_START_TIMEOUT_MS} ms: ${agent.stderr}`)), AGENT_START_TIMEOUT_MS);
        lines.once('line', (line) => {
          clearTimeout(timer);
          if (parse<AgentHello>(line)?.hello === 'nwflab-agent') resolve();
          else reject(new Error(`agent in ${ns}: unexpected first line ${line}`));
        });
        child.once('close', () => {
          clearTimeout(timer);
          reject(new Error(`agent in ${ns} exited before its hello: ${agent.stderr}`));
        });
      });
    } catch (err) {
      await agent.stop();
      throw err;
    }
    lines.on('line', (line) => agent.onLine(line));
    return agent;
  }

  private onLine(line: string): void {
    const res = parse<AgentResponse>(line);
    if (!res) return void (this.stderr += `\nnot JSON: ${line}`);
    const p = this.pending.get(res.id);
    if (!p) return;
    this.pending.delete(res.id);
    clearTimeout(p.timer);
    if (res.ok) p.resolve(res.result);
    else p.reject(new Error(`agent in ${this.ns}: ${res.error}`));
  }

  request<K extends AgentOp>(op: K, body: Omit<Extract<AgentRequest, { op: K }>, 'id' | 'op'>, boundMs: number): Promise<AgentResults[K]> {
    if (this.exited) return Promise.reject(new Error(`agent in ${this.ns} has exited: ${this.stderr.trim()}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`agent in ${this.ns}: no answer to ${op} within ${boundMs + AGENT_SLACK_MS} ms`));
      }, boundMs + AGENT_SLACK_MS);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.child.stdin!.write(`${JSON.stringify({ id, op, ...body })}\n`);
    });
  }

  listen = async (spec: ListenSpec): Promise<void> => {
    await this.request('listen', { spec }, 5000);
  };
  probe = (p: SocketProbe) => this.request('probe', { probe: p }, p.timeoutMs + 2000);
  transfer = (t: TransferSpec) => this.request('transfer', { spec: t }, t.timeoutMs + 10_000);

  /** Ends stdin (the agent stops its daemons and exits), SIGKILL after 5 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.stdin?.end();
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exit;
    clearTimeout(killer);
  }
}

// ---- the lab ----------------------------------------------------------------------------------

interface Undo {
  key: string;
  what: string;
  run: () => Promise<void>;
}

const LAB_OWNER = '';

export class Lab {
  /** What to undo, per owner ('' = the lab itself, else an endpoint name), in creation order. */
  private readonly undo = new Map<string, Undo[]>();
  private readonly endpoints = new Map<string, Endpoint>();
  /** Promises, so that two first probes from one endpoint start one agent. */
  private readonly agents = new Map<string, Promise<Agent>>();
  private readonly bindings = new Map<string, NwFilterBinding>();
  private readonly portLocks = new Map<string, Promise<unknown>>();
  private readonly host = new HostRunner();
  private router: Router | undefined;
  private client: LibvirtClient | undefined;
  private nextDaemon = 1;
  private closing: Promise<void> | undefined;
  private readonly probeTimeoutMs: number;

  private constructor(
    readonly name: string,
    /** Private temp dir: udhcpc hook script, dnsmasq lease and pid files. */
    readonly dir: string,
    private readonly options: LabOptions,
  ) {
    this.probeTimeoutMs = options.probeTimeoutMs ?? 700;
  }

  /** Makes the bridge and its addresses when absent. Requires `hack/netlab.sh up` (host sysctls). */
  static async create(options: LabOptions): Promise<Lab> {
    if (!/^[a-z0-9-]{1,40}$/.test(options.name)) throw new Error(`lab name "${options.name}": use [a-z0-9-], up to 40 characters`);
    await assertHostPrepared();
    const unlock = await lockMachine(options.name, options.lockTimeoutMs ?? 240_000, (l) => options.log?.(`[lab ${options.name}] ${l}`));
    let lab: Lab;
    try {
      lab = new Lab(options.name, await mkdtemp(join(tmpdir(), `nwflab-${options.name}-`)), options);
    } catch (err) {
      await unlock();
      throw err;
    }
    lab.track(LAB_OWNER, 'lock', `lock ${LOCK_FILE}`, unlock);
    lab.track(LAB_OWNER, 'dir', `temp dir ${lab.dir}`, () => rm(lab.dir, { recursive: true, force: true }));
    lab.track(LAB_OWNER, 'host-listeners', 'echo servers on the host', () => lab.host.listeners.close());
    try {
      // Under the lock, anything with the lab's prefix was left by a run that died (SIGKILL, a
      // crashed worker): its bindings, namespaces and veths would clash with ours (same names and
      // addresses). hack/netlab.sh owns that sweep.
      const swept = await cmd(['bash', join(REPO, 'hack/netlab.sh'), 'sweep'], { timeoutMs: 60_000 });
      for (const line of swept.split('\n').filter(Boolean)) lab.log(line);
      await writeFile(join(lab.dir, 'udhcpc.sh'), UDHCPC_HOOK, { mode: 0o755 });
      await lab.ensureBridge();
    } catch (err) {
      await lab.close().catch(() => undefined);
      throw err;
    }
    return lab;
  }

  // ---- cleanup bookkeeping ----

  private track(owner: string, key: string, what: string, run: () => Promise<void>): void {
    const list = this.undo.get(owner) ?? [];
    list.push({ key, what, run });
    this.undo.set(owner, list);
  }

  /** Runs one undo step now (e.g. unbind) and forgets it. */
  private async release(owner: string, key: string): Promise<void> {
    const list = this.undo.get(owner) ?? [];
    const i = list.findIndex((u) => u.key === key);
    if (i < 0) return;
    const [u] = list.splice(i, 1);
    await u?.run();
  }

  /** Runs every undo step of an owner, newest first; keeps going past failures and returns them. */
  private async unwind(owner: string): Promise<Error[]> {
    const errors: Error[] = [];
    const list = this.undo.get(owner) ?? [];
    for (let u = list.pop(); u; u = list.pop()) {
      this.log(`undo ${u.what}`);
      await u.run().catch((e: unknown) => errors.push(new Error(`${u.what}: ${e instanceof Error ? e.message : String(e)}`)));
    }
    this.undo.delete(owner);
    return errors;
  }

  /** Runs `build`; when it fails, undoes what it did for `owner` and rethrows. */
  private async building<T>(owner: string, build: () => Promise<T>): Promise<T> {
    try {
      return await build();
    } catch (err) {
      await this.unwind(owner);
      this.endpoints.delete(owner);
      this.agents.delete(owner);
      throw err;
    }
  }

  /** Removes everything this lab made (endpoints newest first, then the bridge); idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const errors: Error[] = [];
      const owners = [...this.undo.keys()].filter((o) => o !== LAB_OWNER).reverse();
      for (const owner of [...owners, LAB_OWNER]) errors.push(...(await this.unwind(owner)));
      this.endpoints.clear();
      this.agents.clear();
      if (errors.length) throw new AggregateError(errors, `lab ${this.name}: cleanup failed: ${errors.map((e) => e.message).join('; ')}`);
    })();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing) throw new Error(`lab ${this.name} is closed`);
  }

  private log(line: string): void {
    this.options.log?.(`[lab ${this.name}] ${line}`);
  }

  // ---- topology ----

  private async ensureBridge(): Promise<void> {
    const exists = await cmd(['ip', 'link', 'show', LAB.bridge], { ok: [1] }).then((out) => out.length > 0);
    if (!exists) {
      this.log(`bridge ${LAB.bridge}`);
      this.track(LAB_OWNER, 'bridge', `bridge ${LAB.bridge}`, () => cmd(['ip', 'link', 'delete', LAB.bridge]).then(() => undefined));
      await cmd(['ip', 'link', 'add', LAB.bridge, 'address', LAB.bridgeMac, 'mtu', String(LAB.mtu), 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0', 'mcast_snooping', '0']);
      // The bridge's own setting (it goes with the bridge): its link-local usable at once, see createNamespace.
      await writeFile(`/proc/sys/net/ipv6/conf/${LAB.bridge}/accept_dad`, '0');
      await cmd(['ip', 'link', 'set', LAB.bridge, 'up']);
    }
    // Also when the bridge was left by someone else: add what is missing, remove only what we added.
    const present = await cmd(['ip', '-o', 'addr', 'show', 'dev', LAB.bridge]);
    for (const addr of [`${LAB.host4}/24`, `${LAB.host6}/64`]) {
      if (present.includes(` ${addr} `)) continue;
      await cmd(['ip', 'addr', 'add', addr, 'dev', LAB.bridge, ...(addr.includes(':') ? ['nodad'] : [])]);
      if (exists) this.track(LAB_OWNER, `addr ${addr}`, `address ${addr}`, () => cmd(['ip', 'addr', 'del', addr, 'dev', LAB.bridge], { ok: [2] }).then(() => undefined));
    }
  }

  private async createNamespace(owner: string, ns: string): Promise<void> {
    const existing = await cmd(['ip', 'netns', 'list']);
    if (existing.split('\n').some((l) => l.split(' ')[0] === ns)) {
      throw new Error(`namespace ${ns} exists already (left by an earlier run? run hack/netlab.sh down)`);
    }
    this.track(owner, 'ns', `namespace ${ns}`, () => removeNamespace(ns));
    await cmd(['ip', 'netns', 'add', ns]);
    await cmd(inNs(ns, ['sh', '-c', NS_SYSCTLS]));
  }

  private allocate(segment: 'bridge' | 'far', opts: EndpointOptions): { ipv4: string; ipv6: string; mac: string } {
    const used = new Set([...this.endpoints.values()].flatMap((e) => [e.ipv4, e.mac]));
    const [net4, net6] = segment === 'bridge' ? [LAB.net4, LAB.net6] : [LAB.far4, LAB.far6];
    let n = 10;
    while (used.has(`${net4}.${n}`) || used.has(mac(segment, n))) n++;
    if (n > 250) throw new Error('lab: out of addresses');
    return { ipv4: opts.ipv4 ?? `${net4}.${n}`, ipv6: opts.ipv6 ?? `${net6}::${n}`, mac: opts.mac ?? mac(segment, n) };
  }

  /** Routes of a bridge endpoint (or the host) to the far network, via the router. */
  private farRoutes(router: Router): string[] {
    return [`route replace ${LAB.far4}.0/24 via ${router.ipv4}`, `route replace ${LAB.far6}::/64 via ${router.ipv6}`];
  }

  /** A namespace with a veth whose host end is a port of the lab bridge. */
  private async plugIntoBridge(name: string, opts: EndpointOptions): Promise<Endpoint> {
    validateName(name);
    if (this.endpoints.has(name)) throw new Error(`endpoint ${name} exists`);
    const ep: Endpoint = { name, ns: `${LAB.nsPrefix}${name}`, port: `${LAB.portPrefix}${name}`, segment: 'bridge', ...this.allocate('bridge', opts) };
    this.endpoints.set(name, ep);
    await this.createNamespace(name, ep.ns);
    // Deleting the host end removes both ends at once; a namespace's own devices go asynchronously.
    this.track(name, 'port', `veth ${ep.port}`, () => cmd(['ip', 'link', 'delete', ep.port], { ok: [1] }).then(() => undefined));
    await cmd(['ip', 'link', 'add', ep.port, 'mtu', String(LAB.mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'address', ep.mac, 'mtu', String(LAB.mtu), 'netns', ep.ns]);
    await this.decouple(ep);
    await ipBatch(ep.ns, [
      'link set lo up',
      `addr add ${ep.ipv4}/24 dev eth0`,
      // nodad: usable at once, no 1-2 s of "tentative" after every setup.
      `addr add ${ep.ipv6}/64 dev eth0 nodad`,
      'link set eth0 up',
    ]);
    return ep;
  }

  /**
   * Makes the host side of a veth receive asynchronously, as a real VM's tap does. A veth hands a
   * packet to its peer synchronously: a VM's SYN is bridged, REJECTed by libvirt's chain and the
   * ICMP error delivered back to the VM while the VM's connect() still holds the socket lock. TCP
   * drops such an error (nstat TcpExtLockDroppedIcmps); over IPv6 the connection then looked
   * `dropped` instead of `refused` (IPv4 happened to recover). With GRO on, the host end receives
   * through NAPI, made threaded (a kernel thread per port), if the VM end sends without TSO (else
   * a veth bypasses NAPI for non-GSO packets such as a SYN).
   */
  private async decouple(ep: Endpoint): Promise<void> {
    await cmd(['ethtool', '-K', ep.port, 'gro', 'on']);
    await cmd(inNs(ep.ns, ['ethtool', '-K', 'eth0', 'tso', 'off']));
    await cmd(['ip', 'link', 'set', ep.port, 'master', LAB.bridge, 'up']);
    // NAPI exists once the port is up.
    await writeFile(`/sys/class/net/${ep.port}/threaded`, '1');
  }

  /** A "VM" or "peer" on the bridge: namespace, veth (host end = bridge port), both families. */
  async addEndpoint(name: string, opts: EndpointOptions = {}): Promise<Endpoint> {
    this.assertOpen();
    const started = performance.now();
    return this.building(name, async () => {
      const ep = await this.plugIntoBridge(name, opts);
      await ipBatch(ep.ns, [`route add default via ${LAB.host4}`, `route add ::/0 via ${LAB.host6}`, ...(this.router ? this.farRoutes(this.router) : [])]);
      await this.waitReachable(ep, LAB.host4, LAB.host6);
      this.log(`endpoint ${name} ready in ${Math.round(performance.now() - started)} ms`);
      return ep;
    });
  }

  /**
   * A router on the bridge with a far network behind it (link MTU `farMtu`, default 1280). Bridge
   * endpoints (and the host) get routes to the far network via it. One router per lab.
   */
  async addRouter(name: string, opts: EndpointOptions & { farMtu?: number } = {}): Promise<Router> {
    this.assertOpen();
    if (this.router) throw new Error(`lab ${this.name} has a router already (${this.router.name})`);
    const farMtu = opts.farMtu ?? LAB.farMtu;
    return this.building(name, async () => {
      const ep = await this.plugIntoBridge(name, { ipv4: `${LAB.net4}.254`, ipv6: `${LAB.net6}::254`, ...opts });
      const router: Router = { ...ep, farIpv4: `${LAB.far4}.1`, farIpv6: `${LAB.far6}::1`, farMtu };
      // The far side is a bridge inside the router's namespace, so several far endpoints can share it.
      await ipBatch(router.ns, [
        `link add far0 mtu ${farMtu} type bridge stp_state 0 forward_delay 0 mcast_snooping 0`,
        `addr add ${router.farIpv4}/24 dev far0`,
        `addr add ${router.farIpv6}/64 dev far0 nodad`,
        'link set far0 up',
      ]);
      // Forwarding in the router's namespace only; the root namespace keeps its own settings.
      await cmd(inNs(router.ns, ['sh', '-c', 'echo 1 >/proc/sys/net/ipv4/ip_forward && echo 1 >/proc/sys/net/ipv6/conf/all/forwarding']));
      for (const other of this.endpoints.values()) if (other.segment === 'bridge' && other !== ep) await ipBatch(other.ns, this.farRoutes(router));
      this.track(name, 'host-routes', 'host routes to the far network', () =>
        ipBatch(undefined, [`route del ${LAB.far4}.0/24`, `route del ${LAB.far6}::/64`]).then(() => undefined, () => undefined),
      );
      await ipBatch(undefined, this.farRoutes(router).map((r) => `${r} dev ${LAB.bridge}`));
      this.endpoints.set(name, router);
      this.router = router;
      this.track(name, 'router', 'router role', async () => {
        this.router = undefined;
      });
      return router;
    });
  }

  /** An endpoint on the router's far network (MTU 1280 link); routes everything via the router. */
  async addFarEndpoint(name: string, opts: EndpointOptions = {}): Promise<Endpoint> {
    this.assertOpen();
    const router = this.router;
    if (!router) throw new Error('addFarEndpoint: add a router first');
    validateName(name);
    if (this.endpoints.has(name)) throw new Error(`endpoint ${name} exists`);
    const started = performance.now();
    return this.building(name, async () => {
      const ep: Endpoint = { name, ns: `${LAB.nsPrefix}${name}`, port: `f-${name}`, segment: 'far', ...this.allocate('far', opts) };
      this.endpoints.set(name, ep);
      await this.createNamespace(name, ep.ns);
      this.track(name, 'port', `veth ${ep.port} in ${router.ns}`, () => cmd(['ip', '-n', router.ns, 'link', 'delete', ep.port], { ok: [1] }).then(() => undefined));
      const mtu = router.farMtu;
      await ipBatch(router.ns, [`link add ${ep.port} mtu ${mtu} type veth peer name eth0 address ${ep.mac} mtu ${mtu} netns ${ep.ns}`, `link set ${ep.port} master far0 up`]);
      // advmss: announce the MSS of a 1500 link although ours is smaller (see PATH MTU above).
      await ipBatch(ep.ns, [
        'link set lo up',
        `addr add ${ep.ipv4}/24 dev eth0`,
        `addr add ${ep.ipv6}/64 dev eth0 nodad`,
        'link set eth0 up',
        `route add default via ${router.farIpv4} advmss ${LAB.mtu - 40}`,
        `route add ::/0 via ${router.farIpv6} advmss ${LAB.mtu - 60}`,
      ]);
      // Through the router to the host: proves forwarding and neighbour discovery on both links.
      await this.waitReachable(ep, LAB.host4, LAB.host6);
      this.log(`far endpoint ${name} ready in ${Math.round(performance.now() - started)} ms`);
      return ep;
    });
  }

  /** Removes an endpoint and all it owns (agent, daemons, binding, namespace, veth). */
  async removeEndpoint(ep: Endpoint): Promise<void> {
    if (this.router?.name === ep.name && [...this.endpoints.values()].some((e) => e.segment === 'far')) {
      throw new Error(`remove the far endpoints behind ${ep.name} first`);
    }
    const errors = await this.unwind(ep.name);
    this.endpoints.delete(ep.name);
    this.agents.delete(ep.name);
    if (errors.length) throw new AggregateError(errors, `removing ${ep.name}: ${errors.map((e) => e.message).join('; ')}`);
  }

  /** The agent of an endpoint; started on first use (a router gets one only when it is probed from). */
  private agentFor(ep: Endpoint): Promise<Agent> {
    if (!this.endpoints.has(ep.name)) return Promise.reject(new Error(`${ep.name} is not an endpoint of lab ${this.name}`));
    let agent = this.agents.get(ep.name);
    if (!agent) {
      agent = Agent.start(ep.ns);
      this.agents.set(ep.name, agent);
      const started = agent;
      this.track(ep.name, 'agent', `agent in ${ep.ns}`, () => started.then((a) => a.stop(), () => undefined));
    }
    return agent;
  }

  /**
   * Waits until ep answers pings to both addresses (neighbour discovery done, router forwarding):
   * the first IPv6 packets after a setup may be lost while the neighbour entries settle.
   */
  private async waitReachable(ep: Endpoint, v4: string, v6: string): Promise<void> {
    const agent = await this.agentFor(ep);
    for (const [family, dst] of [[4, v4], [6, v6]] as const) {
      await until(`${ep.name} -> ${dst}`, READY_TIMEOUT_MS, async () => {
        const r = await agent.probe({ proto: 'icmp', family, dst, timeoutMs: 500 });
        if (r.verdict !== 'open') this.log(`${ep.name} -> ${dst}: ${r.verdict} (${r.detail}), again`);
        return r.verdict === 'open';
      });
    }
  }

  private runnerOf(t: Target): Promise<Runner> {
    return t === 'host' ? Promise.resolve(this.host) : this.agentFor(t);
  }

  list(): Endpoint[] {
    return [...this.endpoints.values()];
  }

  // ---- listening and probing ----

  /** Echo servers on `t` (TCP: echo; UDP: datagram back), both families; additive and idempotent. */
  async listen(t: Target, spec: ListenSpec): Promise<void> {
    this.assertOpen();
    await (await this.runnerOf(t)).listen(spec);
  }

  async probe(p: Probe): Promise<ProbeResult> {
    this.assertOpen();
    const runner = await this.runnerOf(p.from);
    const sp: SocketProbe = { proto: p.proto, family: p.family, dst: address(p.to, p.family), timeoutMs: p.timeoutMs ?? this.probeTimeoutMs };
    if (p.port !== undefined) sp.port = p.port;
    if (p.srcPort !== undefined) sp.srcPort = p.srcPort;
    // Two probes from one fixed source port at once would steal each other's answers.
    const lock = p.srcPort ? `${targetName(p.from)}/${p.proto}/${p.family}/${p.srcPort}` : undefined;
    const outcome = await this.serialize(lock, () => runner.probe(sp));
    return { ...outcome, probe: p, label: label(p) };
  }

  /** Runs probes `concurrency` at a time (default 32); results in the order of `probes`. */
  async probeAll(probes: Probe[], opts: { concurrency?: number } = {}): Promise<ProbeResult[]> {
    const concurrency = Math.max(1, Math.min(opts.concurrency ?? 32, MAX_CONCURRENCY));
    const results: ProbeResult[] = new Array<ProbeResult>(probes.length);
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && next < probes.length) {
        const i = next++;
        try {
          results[i] = await this.probe(probes[i]!);
        } catch (err) {
          failed = true; // the other workers stop taking probes
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, probes.length) }, worker));
    return results;
  }

  /**
   * A bulk TCP transfer (echoed back) from `from` to an echo server on `to`, after forgetting the
   * path MTU cached for that destination: proves that path-MTU discovery works through the filters.
   */
  async transfer(o: TransferOptions): Promise<TransferResult> {
    this.assertOpen();
    const runner = await this.runnerOf(o.from);
    const spec: TransferSpec = { family: o.family, dst: address(o.to, o.family), port: o.port, bytes: o.bytes ?? 256 * 1024, timeoutMs: o.timeoutMs ?? 5000 };
    const r = await runner.transfer(spec);
    return { ...r, label: `${targetName(o.from)} -> ${targetName(o.to)} transfer/${o.family}:${o.port} ${spec.bytes} B` };
  }

  private serialize<T>(key: string | undefined, f: () => Promise<T>): Promise<T> {
    if (!key) return f();
    const run = (this.portLocks.get(key) ?? Promise.resolve()).then(f, f);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.portLocks.set(key, tail);
    void tail.then(() => this.portLocks.get(key) === tail && this.portLocks.delete(key));
    return run;
  }

  // ---- libvirt ----

  /**
   * The lab's libvirt connection, (re)connected before every use: other tests on this machine
   * restart libvirtd, and a binding must still be removed afterwards (libvirtd keeps bindings
   * across restarts).
   */
  private async libvirt(): Promise<LibvirtClient> {
    if (!this.client) {
      const client = new LibvirtClient({ socketPath: this.options.socketPath ?? process.env.NWF_LIBVIRT_SOCKET ?? '/var/run/libvirt/libvirt-sock' });
      this.client = client;
      this.track(LAB_OWNER, 'libvirt', 'libvirt connection', () => client.close());
    }
    await this.client.connect();
    return this.client;
  }

  /**
   * Binds `filter` to the endpoint's bridge port, as libvirt does for a running VM's tap. Owner
   * name/uuid derive from the lab and endpoint names.
   */
  async bind(ep: Endpoint, filter: string, params: FilterParam[] = []): Promise<NwFilterBinding> {
    this.assertOpen();
    if (ep.segment !== 'bridge') throw new Error(`bind: ${ep.name} is not on the lab bridge`);
    if (this.bindings.has(ep.name)) throw new Error(`bind: ${ep.name} is bound already (unbind first)`);
    const client = await this.libvirt();
    const owner = `nwflab-${this.name}-${ep.name}`;
    const xml =
      `<filterbinding><owner><name>${xmlAttr(owner)}</name><uuid>${nameUuid(owner)}</uuid></owner>` +
      `<portdev name='${ep.port}'/><mac address='${ep.mac}'/>` +
      `<filterref filter='${xmlAttr(filter)}'>${params.map((p) => `<parameter name='${xmlAttr(p.name)}' value='${xmlAttr(p.value)}'/>`).join('')}</filterref>` +
      `</filterbinding>`;
    const binding = await client.createBinding(xml);
    this.bindings.set(ep.name, binding);
    this.track(ep.name, 'binding', `binding on ${ep.port}`, async () => {
      this.bindings.delete(ep.name);
      await (await this.libvirt()).deleteBinding(binding).catch((e: unknown) => {
        if (!isNotFound(e)) throw e;
      });
      await forgetFlows(ep);
    });
    await forgetFlows(ep);
    return binding;
  }

  async unbind(ep: Endpoint): Promise<void> {
    await this.release(ep.name, 'binding');
  }

  /** `iptables -S`/`ip6tables -S` of the endpoint's FI-/FO-/HI- chains, and its ebtables chains; '' where none. */
  async chains(ep: Endpoint): Promise<Chains> {
    const save = async (tool: string) => {
      const parts: string[] = [];
      for (const prefix of ['FI', 'FO', 'HI']) parts.push(await cmd([tool, '-w', '-S', `${prefix}-${ep.port}`], { ok: [1] }));
      return parts.join('');
    };
    return { iptables: await save('iptables'), ip6tables: await save('ip6tables'), ebtables: await ebtablesChains(ep.port) };
  }

  // ---- DHCP ----

  /** dnsmasq (DHCPv4 only, no DNS) on the endpoint's eth0, started by its agent: it ends with the lab. */
  async dhcpServer(ep: Endpoint, opts: { range: [string, string]; leaseTime?: string }): Promise<DhcpServer> {
    this.assertOpen();
    const agent = await this.agentFor(ep);
    const tag = `dnsmasq-${ep.name}-${this.nextDaemon++}`;
    const argv = [
      'dnsmasq',
      '--no-daemon',
      '--conf-file=/dev/null',
      '--log-facility=-',
      '--log-dhcp',
      '--port=0', // no DNS
      '--no-resolv',
      '--no-hosts',
      // dnsmasq pings an address before offering it, which delays every first OFFER by ~3 s.
      '--no-ping',
      '--interface=eth0',
      '--bind-interfaces',
      '--dhcp-authoritative',
      `--dhcp-range=${opts.range[0]},${opts.range[1]},255.255.255.0,${opts.leaseTime ?? '2m'}`,
      `--dhcp-leasefile=${join(this.dir, `${tag}.leases`)}`,
      `--pid-file=${join(this.dir, `${tag}.pid`)}`,
      '--user=root',
      '--group=root',
    ];
    const { daemon } = await agent.request('daemon', { argv, ready: 'DHCP, IP range', readyTimeoutMs: 10_000 }, 10_000);
    let output: string | undefined;
    const stop = async () => {
      output = (await agent.request('stop', { daemon }, 5000)).output;
    };
    this.track(ep.name, tag, `${tag}`, stop);
    return {
      endpoint: ep,
      stop: async () => {
        await this.release(ep.name, tag);
        return output ?? '';
      },
    };
  }

  /**
   * A real DHCP client (busybox udhcpc) in the endpoint's namespace: DISCOVER, OFFER, REQUEST, ACK.
   * Only reports the lease (its hook script configures nothing). `broadcast` asks the server to
   * broadcast its replies (udhcpc -B); by default they come unicast to the offered address and MAC.
   */
  async dhcpClient(ep: Endpoint, opts: { timeoutMs?: number; broadcast?: boolean } = {}): Promise<DhcpLease> {
    this.assertOpen();
    const timeoutMs = opts.timeoutMs ?? 5000;
    // One DISCOVER per second (-T 1), as many as fit the timeout (-t), then give up (-n).
    const tries = Math.max(1, Math.floor(timeoutMs / 1000));
    const argv = ['udhcpc', '-f', '-q', '-n', '-i', 'eth0', '-t', String(tries), '-T', '1', '-A', '1', '-s', join(this.dir, 'udhcpc.sh'), ...(opts.broadcast ? ['-B'] : [])];
    const started = performance.now();
    const r = await (await this.agentFor(ep)).request('exec', { argv, timeoutMs: timeoutMs + 3000 }, timeoutMs + 3000);
    const output = `${r.stdout}${r.stderr}`;
    const m = /nwflab-lease ip=(\S*) serverid=(\S*)/.exec(r.stdout);
    const lease: DhcpLease = { leased: r.code === 0 && Boolean(m?.[1]), ms: Math.round(performance.now() - started), output };
    if (m?.[1]) lease.ip = m[1];
    if (m?.[2]) lease.server = m[2];
    return lease;
  }
}

// ---- helpers ----------------------------------------------------------------------------------

/**
 * One lab per machine at a time: the bridge, the namespace names and the addresses are fixed, so two
 * test processes (two vitest runs) would tear down each other's topology. The lock file holds the
 * owner's pid; a dead owner's lock is taken over. hack/netlab.sh down leaves a live owner's lab alone.
 */
export const LOCK_FILE = '/run/nwflab.lock';

async function lockMachine(name: string, timeoutMs: number, log: (line: string) => void): Promise<() => Promise<void>> {
  const end = Date.now() + timeoutMs;
  const mine = `${process.pid} ${name}\n`;
  let reported = '';
  for (;;) {
    try {
      const f = await open(LOCK_FILE, 'wx');
      await f.writeFile(mine);
      await f.close();
      return async () => {
        // Only our own lock: never one a later owner took over.
        if ((await readFile(LOCK_FILE, 'utf8').catch(() => '')) === mine) await unlink(LOCK_FILE).catch(() => undefined);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = await readFile(LOCK_FILE, 'utf8').catch(() => '');
    const pid = Number(holder.split(' ')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) {
      log(`taking over the stale lock of ${holder.trim() || 'nobody'}`);
      await unlink(LOCK_FILE).catch(() => undefined);
      continue;
    }
    if (Date.now() > end) throw new Error(`another lab holds ${LOCK_FILE} (pid and name: ${holder.trim()}) for more than ${timeoutMs} ms`);
    if (holder !== reported) log(`waiting for the lab of pid ${holder.trim()} to close`);
    reported = holder;
    await sleep(250);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Settings of every lab namespace (its own, gone with it):
 * - no duplicate address detection: above all for the link-local address, from which a router
 *   sends the neighbour solicitation for a packet it forwards, and not at all while that address is
 *   tentative (forwarded IPv6 stalled for 1-2 s after every setup);
 * - no ICMP rate limits: a closed port must answer port-unreachable to every probe, not to one per
 *   second and destination (the defaults would turn many `refused` into `dropped`).
 */
const NS_SYSCTLS = [
  'echo 0 >/proc/sys/net/ipv6/conf/all/accept_dad',
  'echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad',
  'echo 0 >/proc/sys/net/ipv4/icmp_ratelimit',
  'echo 0 >/proc/sys/net/ipv6/icmp/ratelimit',
  'echo 100000 >/proc/sys/net/ipv4/icmp_msgs_per_sec',
  'echo 100000 >/proc/sys/net/ipv4/icmp_msgs_burst',
].join(' && ');

/** udhcpc's event hook: reports a lease, leaves the interface alone (and never touches /etc/resolv.conf). */
const UDHCPC_HOOK = `#!/bin/sh
[ "$1" = bound ] && echo "nwflab-lease ip=$ip serverid=$serverid"
exit 0
`;

function validateName(name: string): void {
  // nwfl-<name> is an interface name: at most 15 characters.
  if (!/^[a-z][a-z0-9]{0,9}$/.test(name)) throw new Error(`endpoint name "${name}": [a-z][a-z0-9]*, at most 10 characters`);
}

const mac = (segment: 'bridge' | 'far', n: number): string => `52:54:00:6e:${segment === 'bridge' ? '00' : '01'}:${n.toString(16).padStart(2, '0')}`;

const targetName = (t: Target): string => (t === 'host' ? 'host' : t.name);

function address(t: Target, family: Family): string {
  if (t === 'host') return family === 4 ? LAB.host4 : LAB.host6;
  return family === 4 ? t.ipv4 : t.ipv6;
}

export function label(p: Probe): string {
  const port = p.proto === 'icmp' ? '' : `:${p.port ?? '?'}${p.srcPort ? ` from :${p.srcPort}` : ''}`;
  return `${targetName(p.from)} -> ${targetName(p.to)} ${p.proto}/${p.family}${port}`;
}

/** What hack/netlab.sh up sets on the host (why: see there). */
const HOST_SYSCTLS: [string, string][] = [
  ['net/bridge/bridge-nf-call-iptables', '1'],
  ['net/bridge/bridge-nf-call-ip6tables', '1'],
  ['net/ipv4/icmp_ratelimit', '0'],
  ['net/ipv6/icmp/ratelimit', '0'],
];

async function assertHostPrepared(): Promise<void> {
  for (const [path, want] of HOST_SYSCTLS) {
    const v = (await readFile(`/proc/sys/${path}`, 'utf8').catch(() => 'missing')).trim();
    if (v !== want) throw new Error(`${path.replace(/\//g, '.')} is ${v}, the lab needs ${want}: run hack/netlab.sh up`);
  }
}

/** Ends what still runs in the namespace (only the lab's own processes run there), then deletes it. */
async function removeNamespace(ns: string): Promise<void> {
  const pids = (await cmd(['ip', 'netns', 'pids', ns], { ok: [1, 255] })).split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  await cmd(['ip', 'netns', 'delete', ns], { ok: [1, 255] });
}

/**
 * Deletes the conntrack entries of an endpoint's addresses in the root namespace, where bridge
 * netfilter tracks bridged flows. Exit 1 = nothing to delete.
 */
async function forgetFlows(ep: Endpoint): Promise<void> {
  for (const addr of [ep.ipv4, ep.ipv6]) {
    for (const dir of ['-s', '-d']) await cmd(['conntrack', '-D', dir, addr], { ok: [1] });
  }
}

/** The blocks of `ebtables -t nat -L` whose chain name mentions the port (libvirt-I-<port>, I-<port>-arp, ...). */
async function ebtablesChains(port: string): Promise<string> {
  const all = await cmd(['ebtables', '-t', 'nat', '-L'], { ok: [1, 255] }).catch(() => '');
  return all
    .split(/\n(?=Bridge chain: )/)
    .filter((block) => new RegExp(`^Bridge chain: \\S*${port.replace(/[-]/g, '\\-')}\\S*,`).test(block))
    .join('\n');
}
