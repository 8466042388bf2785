// Leader election on a real kube-apiserver: two electors in one process on one Lease, a release on
// stop(), and a holder whose clock is an hour ahead.
import { V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { JITTER_FACTOR, LeaderElector, loadKubeConfig, makeClients, statusCodeOf } from '../../../src/kube/index.js';

const NS = 'default';
const P = `le${Date.now().toString(36)}`;
const LEASE = 6000;
const RENEW = 4000;
const RETRY = 500;
/** Worst wait between two acquire attempts: retryPeriod * (1 + JitterFactor). */
const ACQUIRE_WAIT = RETRY * (1 + JITTER_FACTOR);
/** Slack for a loaded machine: requests, event loop, polling here. */
const SLACK = 1500;

const clients = makeClients(loadKubeConfig(process.env.KUBECONFIG));
const api = clients.coordination;
const log = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const electors: LeaderElector[] = [];
const leaseNames: string[] = [];

function elector(name: string, identity: string, counts: { started: number; stopped: number }): LeaderElector {
  const e = new LeaderElector({
    api,
    namespace: NS,
    name,
    identity,
    leaseDurationMs: LEASE,
    renewDeadlineMs: RENEW,
    retryPeriodMs: RETRY,
    requestTimeoutMs: 2000,
    log,
    onStartedLeading: () => counts.started++,
    onStoppedLeading: () => counts.stopped++,
  });
  electors.push(e);
  return e;
}

const readLease = (name: string): Promise<V1Lease> => api.readNamespacedLease({ name, namespace: NS });

/** Polls every 20 ms; returns the local (monotonic) time at which `cond` held. */
async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<number> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
  return performance.now();
}

afterEach(async () => {
  await Promise.all(electors.splice(0).map((e) => e.stop()));
});

afterAll(async () => {
  for (const name of leaseNames) {
    await api.deleteNamespacedLease({ name, namespace: NS }).catch((err: unknown) => {
      if (statusCodeOf(err) !== 404) throw err;
    });
  }
});

describe('LeaderElector on a real API server', () => {
  it('of two electors on one Lease exactly one leads; stop() releases and the other takes over within a retry period', async () => {
    const name = `${P}-pair`;
    leaseNames.push(name);
    const ca = { started: 0, stopped: 0 };
    const cb = { started: 0, stopped: 0 };
    const a = elector(name, `${P}-a`, ca);
    const b = elector(name, `${P}-b`, cb);
    a.start();
    b.start();
    await until('a leader', () => a.isLeader || b.isLeader, 10_000);
    // For a few lease renewals: exactly one leads, and the Lease names it.
    const end = performance.now() + 3000;
    while (performance.now() < end) {
      expect([a.isLeader, b.isLeader].filter(Boolean)).toHaveLength(1);
      const lease = await readLease(name);
      const leader = a.isLeader ? a : b;
      expect(lease.spec?.holderIdentity).toBe(leader === a ? `${P}-a` : `${P}-b`);
      await sleep(150);
    }
    expect(ca.started + cb.started).toBe(1);
    const [leader, other, otherId] = a.isLeader ? [a, b, `${P}-b`] : [b, a, `${P}-a`];
    const transitions = (await readLease(name)).spec?.leaseTransitions ?? 0;

    await leader.stop();
    const released = performance.now();
    expect(leader.isLeader).toBe(false);
    expect(ca.stopped + cb.stopped).toBe(0); // stop() is not a loss
    // The other candidate takes over at its next attempt, not after a lease duration.
    const at = await until('the other elector leads', () => other.isLeader, LEASE + ACQUIRE_WAIT + SLACK);
    expect(at - released).toBeLessThan(ACQUIRE_WAIT + SLACK);
    expect(at - released).toBeLessThan(LEASE);
    const lease = await readLease(name);
    expect(lease.spec?.holderIdentity).toBe(otherId);
    expect(lease.spec?.leaseTransitions).toBe(transitions + 1);
    expect(lease.spec?.leaseDurationSeconds).toBe(LEASE / 1000);
  });

  it('takes over a lease whose holder wrote renewTime an hour ahead and then stopped after a lease duration of local observation, not an hour', async () => {
    const name = `${P}-skew`;
    leaseNames.push(name);
    const hourAhead = (extraMs = 0) => new V1MicroTime(Date.now() + 3600_000 + extraMs);
    const spec = (i: number) => ({ holderIdentity: `${P}-skewed`, leaseDurationSeconds: 3, acquireTime: hourAhead(), renewTime: hourAhead(i * 1000), leaseTransitions: 0 });
    let lease = await api.createNamespacedLease({ namespace: NS, body: { metadata: { name, namespace: NS }, spec: spec(0) } });
    const counts = { started: 0, stopped: 0 };
    const c = elector(name, `${P}-c`, counts);
    c.start();
    // The skewed holder renews a few times (a record that changes is alive, whatever its times say).
    for (let i = 1; i <= 4; i++) {
      await sleep(1000);
      expect(c.isLeader).toBe(false);
      lease = await api.replaceNamespacedLease({ name, namespace: NS, body: { ...lease, spec: spec(i) } });
    }
    const lastWrite = performance.now();
    expect(c.observedHolder).toBe(`${P}-skewed`);
    // ...and then stops. c must wait the holder's 3 s lease duration from when it saw the last change.
    const at = await until('takeover', () => c.isLeader, 3000 + ACQUIRE_WAIT + RETRY + SLACK + 5000);
    expect(at - lastWrite).toBeGreaterThanOrEqual(3000);
    expect(at - lastWrite).toBeLessThan(3000 + ACQUIRE_WAIT + RETRY + SLACK);
    expect(counts.started).toBe(1);
    const now = await readLease(name);
    expect(now.spec?.holderIdentity).toBe(`${P}-c`);
    expect(now.spec?.leaseTransitions).toBe(1);
  });
});
