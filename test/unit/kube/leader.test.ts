// Leader election against an in-memory Lease API with the API server's optimistic concurrency
// (resourceVersion conflicts), on fake timers: the local monotonic clock (performance.now) is the
// fake clock, while renewTime values written by "other machines" are arbitrary.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiException, CoordinationV1Api, HttpMethod, KubeConfig, RequestContext, V1MicroTime, type ConfigurationOptions, type V1Lease } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JITTER_FACTOR, LeaderElector, type LeaderElectionOptions, type LeaseApi } from '../../../src/kube/leader.js';

const NS = 'default';
const NAME = 'lock';
const LEASE = 5000;
const RENEW = 3000;
const RETRY = 500;
/** Worst acquire wait: retryPeriod * (1 + JitterFactor). */
const ACQUIRE_WAIT = RETRY * (1 + JITTER_FACTOR);

type Op = 'read' | 'create' | 'replace';
/** What the fake does with one request: answer, fail with a status, or never answer (ignoring the abort). */
type Fault = { status: number } | 'hang' | undefined;

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
const apiError = (code: number, message: string) => new ApiException(code, message, { message }, {});

/** One Lease behind the API server's rules: 404 when absent, 409 on create of an existing one or on a stale resourceVersion. */
class FakeLeases {
  lease: V1Lease | undefined;
  private rv = 0;
  conflicts = 0;
  /** Per-client fault injection and latency. */
  fault: (client: string, op: Op) => Fault = () => undefined;
  latency: (client: string, op: Op) => number = () => 0;
  /** Abort signals the client-node middleware in each request's options set. */
  readonly signals: { client: string; op: Op; signal: AbortSignal | undefined }[] = [];
  /** Local time of each successful write, by client. */
  readonly writes: { client: string; at: number; holder: string }[] = [];

  /** A write by a process that is not an elector under test (another machine, another clock). */
  put(spec: V1Lease['spec']): void {
    this.lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: NAME, namespace: NS, resourceVersion: String(++this.rv) }, spec: clone(spec) };
  }

  api(client: string): LeaseApi {
    const call = async <T>(op: Op, options: ConfigurationOptions | undefined, f: () => T): Promise<T> => {
      // Run the request through the options' middleware as client-node would, to see the signal.
      const ctx = new RequestContext(`https://fake/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${NAME}`, op === 'read' ? HttpMethod.GET : op === 'create' ? HttpMethod.POST : HttpMethod.PUT);
      for (const m of options?.middleware ?? []) await m.pre(ctx).toPromise();
      this.signals.push({ client, op, signal: ctx.getSignal() });
      const fault = this.fault(client, op);
      if (fault === 'hang') return new Promise<T>(() => undefined);
      const latency = this.latency(client, op);
      if (latency > 0) await new Promise((r) => setTimeout(r, latency));
      if (fault) throw apiError(fault.status, 'injected');
      return f();
    };
    const api = {
      readNamespacedLease: (_p: unknown, options?: ConfigurationOptions) =>
        call('read', options, () => {
          if (!this.lease) throw apiError(404, 'not found');
          return clone(this.lease);
        }),
      createNamespacedLease: (p: { body: V1Lease }, options?: ConfigurationOptions) =>
        call('create', options, () => {
          if (this.lease) {
            this.conflicts++;
            throw apiError(409, 'already exists');
          }
          const body = clone(p.body);
          this.lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(++this.rv) } };
          this.writes.push({ client, at: performance.now(), holder: body.spec?.holderIdentity ?? '' });
          return clone(this.lease);
        }),
      replaceNamespacedLease: (p: { body: V1Lease }, options?: ConfigurationOptions) =>
        call('replace', options, () => {
          if (!this.lease) throw apiError(404, 'not found');
          if (p.body.metadata?.resourceVersion !== this.lease.metadata?.resourceVersion) {
            this.conflicts++;
            throw apiError(409, 'the object has been modified');
          }
          const body = clone(p.body);
          this.lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(++this.rv) } };
          this.writes.push({ client, at: performance.now(), holder: body.spec?.holderIdentity ?? '' });
          return clone(this.lease);
        }),
    };
    return api as unknown as LeaseApi;
  }
}

const silent = pino({ level: 'silent' });

interface Candidate {
  elector: LeaderElector;
  started: number[];
  stopped: number[];
}

function candidate(leases: FakeLeases, identity: string, extra: Partial<LeaderElectionOptions> = {}): Candidate {
  const c: Candidate = { started: [], stopped: [], elector: undefined as unknown as LeaderElector };
  c.elector = new LeaderElector({
    api: leases.api(identity),
    namespace: NS,
    name: NAME,
    identity,
    leaseDurationMs: LEASE,
    renewDeadlineMs: RENEW,
    retryPeriodMs: RETRY,
    log: silent,
    onStartedLeading: () => c.started.push(performance.now()),
    onStoppedLeading: () => c.stopped.push(performance.now()),
    ...extra,
  });
  return c;
}

/** Advances the fake clock in small steps until `until` holds; returns the local time it held at. */
async function advanceUntil(until: () => boolean, maxMs: number, step = 10): Promise<number> {
  const end = performance.now() + maxMs;
  while (!until()) {
    if (performance.now() >= end) throw new Error(`condition not reached within ${maxMs} ms`);
    await vi.advanceTimersByTimeAsync(step);
  }
  return performance.now();
}

const HOUR = 3600_000;
/** Steps of 50 ms in the randomized run. */
const STEPS = 6000;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('LeaderElector', () => {
  it('runs on the fake monotonic clock', async () => {
    const t0 = performance.now();
    await vi.advanceTimersByTimeAsync(1234);
    expect(performance.now() - t0).toBe(1234);
  });

  it('creates a missing lease and leads at once', async () => {
    const leases = new FakeLeases();
    const a = candidate(leases, 'a');
    a.elector.start();
    await advanceUntil(() => a.elector.isLeader, 100);
    expect(a.started).toHaveLength(1);
    expect(leases.lease?.spec).toMatchObject({ holderIdentity: 'a', leaseDurationSeconds: 5, leaseTransitions: 0 });
    // renews every retry period
    const before = leases.writes.length;
    await vi.advanceTimersByTimeAsync(RETRY * 4 + 50);
    expect(leases.writes.length - before).toBe(4);
    await a.elector.stop();
  });

  it.each([
    ['an hour in the future', +HOUR],
    ['an hour in the past', -HOUR],
    ['now', 0],
  ])('takes over an unrenewed lease after its duration of local observation, whatever its renewTime (%s)', async (_what, skew) => {
    const leases = new FakeLeases();
    const t = new V1MicroTime(Date.now() + skew);
    leases.put({ holderIdentity: 'skewed', leaseDurationSeconds: 5, acquireTime: t, renewTime: t, leaseTransitions: 3 });
    const a = candidate(leases, 'a');
    const t0 = performance.now();
    a.elector.start();
    const at = await advanceUntil(() => a.elector.isLeader, 2 * HOUR);
    // Not before the holder's lease duration has passed here without a change; not an hour late.
    expect(at - t0).toBeGreaterThanOrEqual(LEASE);
    expect(at - t0).toBeLessThanOrEqual(LEASE + ACQUIRE_WAIT + 50);
    expect(leases.lease?.spec).toMatchObject({ holderIdentity: 'a', leaseTransitions: 4 });
    await a.elector.stop();
  });

  it('waits for the holder’s leaseDurationSeconds, not its own lease duration', async () => {
    const leases = new FakeLeases();
    const t = new V1MicroTime(Date.now());
    leases.put({ holderIdentity: 'slow', leaseDurationSeconds: 12, acquireTime: t, renewTime: t });
    const a = candidate(leases, 'a');
    const t0 = performance.now();
    a.elector.start();
    const at = await advanceUntil(() => a.elector.isLeader, 60_000);
    expect(at - t0).toBeGreaterThanOrEqual(12_000);
    expect(at - t0).toBeLessThanOrEqual(12_000 + ACQUIRE_WAIT + 50);
    await a.elector.stop();
  });

  it('never takes over a holder whose record keeps changing, even with a renewTime an hour in the past; takes over after it stops', async () => {
    const leases = new FakeLeases();
    let renewing = true;
    let n = 0;
    const renewSkewed = (): void => {
      if (!renewing) return;
      const t = new V1MicroTime(Date.now() - HOUR + n++);
      leases.put({ holderIdentity: 'skewed', leaseDurationSeconds: 5, acquireTime: t, renewTime: t });
      setTimeout(renewSkewed, 2000);
    };
    renewSkewed();
    const a = candidate(leases, 'a');
    a.elector.start();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(a.started).toHaveLength(0);
    expect(a.elector.observedHolder).toBe('skewed');
    renewing = false;
    const lastChange = performance.now() - ((performance.now() % 2000) || 0);
    const at = await advanceUntil(() => a.elector.isLeader, 30_000);
    expect(at - lastChange).toBeGreaterThanOrEqual(LEASE);
    expect(at - lastChange).toBeLessThanOrEqual(LEASE + ACQUIRE_WAIT + 2000);
    await a.elector.stop();
  });

  it('takes a released lease (holderIdentity empty) at its next attempt', async () => {
    const leases = new FakeLeases();
    const t = new V1MicroTime(Date.now() + HOUR);
    leases.put({ holderIdentity: '', leaseDurationSeconds: 1, acquireTime: t, renewTime: t });
    const a = candidate(leases, 'a');
    a.elector.start();
    await advanceUntil(() => a.elector.isLeader, 50);
    await a.elector.stop();
  });

  it('gives every request a deadline: a hanging read fails the attempt at requestTimeout and its signal is aborted', async () => {
    const leases = new FakeLeases();
    let hang = true;
    leases.fault = (_c, op) => (hang && op === 'read' ? 'hang' : undefined);
    const a = candidate(leases, 'a', { requestTimeoutMs: 1000 });
    const t0 = performance.now();
    a.elector.start();
    await vi.advanceTimersByTimeAsync(10);
    expect(leases.signals).toHaveLength(1);
    const first = leases.signals[0]!.signal!;
    expect(first).toBeDefined();
    expect(first.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1000);
    expect(first.aborted).toBe(true);
    // The next attempt comes after a jittered retry period, not never.
    const second = await advanceUntil(() => leases.signals.length >= 2, ACQUIRE_WAIT + 20);
    expect(second - t0).toBeGreaterThanOrEqual(1000 + RETRY);
    hang = false;
    await advanceUntil(() => a.elector.isLeader, 2 * (1000 + ACQUIRE_WAIT));
    await a.elector.stop();
  });

  it.each([
    ['fail with 500', { status: 500 } as Fault],
    ['hang', 'hang' as Fault],
  ])('stops leading when it could not renew within renewDeadline (requests %s)', async (_what, fault) => {
    const leases = new FakeLeases();
    let broken = false;
    leases.fault = () => (broken ? fault : undefined);
    const a = candidate(leases, 'a', { requestTimeoutMs: 2000 });
    a.elector.start();
    await advanceUntil(() => a.elector.isLeader, 100);
    await vi.advanceTimersByTimeAsync(3 * RETRY + 100);
    broken = true;
    const lastSuccess = leases.writes.at(-1)!.at;
    const at = await advanceUntil(() => !a.elector.isLeader, 2 * RENEW);
    expect(a.stopped).toHaveLength(1);
    // Measured locally from the start of the last successful renew (at most the request's own time before its write).
    expect(at - lastSuccess).toBeLessThanOrEqual(RENEW + 10);
    expect(at - lastSuccess).toBeGreaterThanOrEqual(RENEW - 20);
    // A lost elector stops campaigning: nothing more happens, and onStoppedLeading is not repeated.
    broken = false;
    await vi.advanceTimersByTimeAsync(10 * LEASE);
    expect(a.started).toHaveLength(1);
    expect(a.stopped).toHaveLength(1);
    await a.elector.stop();
  });

  it('stops leading at once when it reads another holder', async () => {
    const leases = new FakeLeases();
    const a = candidate(leases, 'a');
    a.elector.start();
    await advanceUntil(() => a.elector.isLeader, 100);
    // Someone else writes the lease behind a's back (a's optimistic write now conflicts; its read shows b).
    const t = new V1MicroTime(Date.now());
    leases.put({ holderIdentity: 'b', leaseDurationSeconds: 5, acquireTime: t, renewTime: t });
    const at0 = performance.now();
    const at = await advanceUntil(() => !a.elector.isLeader, RENEW);
    expect(at - at0).toBeLessThanOrEqual(RETRY + 20);
    expect(a.stopped).toHaveLength(1);
    // stop() then leaves b's lease alone.
    await a.elector.stop();
    expect(leases.lease?.spec?.holderIdentity).toBe('b');
  });

  it('stop() releases a held lease as client-go does, and the other candidate takes over at its next attempt', async () => {
    const leases = new FakeLeases();
    const a = candidate(leases, 'a');
    const b = candidate(leases, 'b');
    a.elector.start();
    await advanceUntil(() => a.elector.isLeader, 100);
    b.elector.start();
    await vi.advanceTimersByTimeAsync(3 * LEASE);
    expect(b.elector.isLeader).toBe(false);
    const writesBefore = leases.writes.filter((w) => w.client === 'b').length;
    await b.elector.stop(); // a candidate's stop writes nothing
    expect(leases.writes.filter((w) => w.client === 'b').length).toBe(writesBefore);
    b.elector.start();
    await vi.advanceTimersByTimeAsync(100);
    await a.elector.stop();
    expect(a.stopped).toHaveLength(0); // stop() is not a loss
    expect(a.elector.isLeader).toBe(false);
    expect(leases.lease?.spec).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
    const t0 = performance.now();
    const at = await advanceUntil(() => b.elector.isLeader, LEASE);
    expect(at - t0).toBeLessThanOrEqual(ACQUIRE_WAIT + 20);
    expect(leases.lease?.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    await b.elector.stop();
  });

  it('two candidates started together: exactly one wins (the other create conflicts)', async () => {
    const leases = new FakeLeases();
    const a = candidate(leases, 'a');
    const b = candidate(leases, 'b');
    a.elector.start();
    b.elector.start();
    await vi.advanceTimersByTimeAsync(4 * LEASE);
    expect(leases.conflicts).toBeGreaterThanOrEqual(1);
    expect([a.elector.isLeader, b.elector.isLeader].filter(Boolean)).toHaveLength(1);
    expect(a.started.length + b.started.length).toBe(1);
    await a.elector.stop();
    await b.elector.stop();
  });

  it('two candidates never both lead, with random latency, errors, hangs and partitions', async () => {
    // A seeded PRNG: the run is reproducible.
    let seed = 42;
    const rnd = (): number => {
      // mulberry32
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    const leases = new FakeLeases();
    const partitioned = new Map<string, number>(); // client → local time its partition ends
    leases.latency = () => Math.floor(rnd() * 400);
    leases.fault = (client) => {
      if ((partitioned.get(client) ?? 0) > performance.now()) return 'hang';
      const r = rnd();
      if (r < 0.05) return { status: 500 };
      if (r < 0.08) return 'hang';
      return undefined;
    };
    const cs = ['a', 'b'].map((id) => candidate(leases, id, { random: rnd }));
    for (const c of cs) {
      c.elector.start();
      // A process that lost its lease exits and is restarted.
      const restart = (): void => void setTimeout(() => c.elector.start(), 1000);
      const orig = c.stopped.push.bind(c.stopped);
      c.stopped.push = (...xs: number[]) => {
        restart();
        return orig(...xs);
      };
    }
    let both = 0;
    let leaderless = 0;
    for (let step = 0; step < STEPS; step++) {
      if (step % 500 === 0) {
        // now and then one client is cut off from the API server for a while
        const victim = rnd() < 0.5 ? 'a' : 'b';
        partitioned.set(victim, performance.now() + 2000 + rnd() * 8000);
      }
      await vi.advanceTimersByTimeAsync(50);
      const leaders = cs.filter((c) => c.elector.isLeader).length;
      if (leaders > 1) both++;
      if (leaders === 0) leaderless++;
    }
    expect(both).toBe(0);
    // The run exercised what it claims to: takeovers and conflicts happened, and someone led most of the time.
    expect(cs.reduce((n, c) => n + c.started.length, 0)).toBeGreaterThanOrEqual(3);
    expect(leases.lease?.spec?.leaseTransitions ?? 0).toBeGreaterThanOrEqual(2);
    expect(leaderless).toBeLessThan(STEPS / 2);
    // (stop() releases with real requests: heal the network first, the fake clock stands still here)
    leases.fault = () => undefined;
    leases.latency = () => 0;
    for (const c of cs) await c.elector.stop();
    expect(leases.lease?.spec?.holderIdentity).toBe('');
  });

  it('aborts a hanging request of the real client-node API (the connection closes at the deadline)', async () => {
    vi.useRealTimers();
    const requests: { req: IncomingMessage; at: number; closedAt?: number }[] = [];
    const server = createServer((req) => {
      // never answers
      const r: (typeof requests)[number] = { req, at: performance.now() };
      requests.push(r);
      req.socket.once('close', () => (r.closedAt = performance.now()));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const e = new LeaderElector({
      api: kc.makeApiClient(CoordinationV1Api),
      namespace: NS,
      name: NAME,
      identity: 'a',
      leaseDurationMs: 5000,
      renewDeadlineMs: 3000,
      retryPeriodMs: 2000,
      requestTimeoutMs: 300,
      log: silent,
      onStartedLeading: () => undefined,
      onStoppedLeading: () => undefined,
    });
    try {
      e.start();
      const end = performance.now() + 5000;
      while (requests[0]?.closedAt === undefined && performance.now() < end) await new Promise((r) => setTimeout(r, 20));
      const first = requests[0]!;
      expect(first.req.url).toBe(`/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${NAME}`);
      expect(first.closedAt).toBeDefined();
      expect(first.closedAt! - first.at).toBeGreaterThanOrEqual(250);
      expect(first.closedAt! - first.at).toBeLessThan(1500);
      expect(e.isLeader).toBe(false);
    } finally {
      await e.stop();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('refuses timings that cannot work (as client-go)', () => {
    const leases = new FakeLeases();
    expect(() => candidate(leases, 'a', { leaseDurationMs: 3000, renewDeadlineMs: 3000 })).toThrow(/leaseDuration must be greater than renewDeadline/);
    expect(() => candidate(leases, 'a', { renewDeadlineMs: 600, retryPeriodMs: 500 })).toThrow(/renewDeadline must be greater than retryPeriod/);
    expect(() => candidate(leases, 'a', { retryPeriodMs: 0 })).toThrow(/retryPeriod must be greater than zero/);
    expect(() => candidate(leases, '')).toThrow(/identity/);
  });
});
