import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { WorkQueue } from '../../../src/kube/workqueue.js';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('WorkQueue', () => {
  it('never processes one key twice at once, and runs a dirty key once more afterwards', async () => {
    const gate = deferred();
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const q = new WorkQueue(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        runs++;
        if (runs === 1) await gate.promise;
        running--;
      },
      { name: 't', concurrency: 4 },
    );
    q.add('a');
    await sleep(5);
    q.add('a'); // while processing: marks dirty
    q.add('a'); // coalesces with the dirty mark
    q.add('a');
    gate.resolve();
    await q.drain();
    expect(maxRunning).toBe(1);
    expect(runs).toBe(2);
    await q.shutdown();
  });

  it('coalesces repeated adds of a waiting key', async () => {
    const seen: string[] = [];
    const gate = deferred();
    const q = new WorkQueue(
      async (k) => {
        seen.push(k);
        if (k === 'block') await gate.promise;
      },
      { name: 't', concurrency: 1 },
    );
    q.add('block'); // occupies the only slot, so x and y wait
    q.add('x');
    q.add('y');
    q.add('y');
    q.add('x');
    expect(q.depth).toBe(2);
    gate.resolve();
    await q.drain();
    expect(seen).toEqual(['block', 'x', 'y']);
    await q.shutdown();
  });

  it('processes distinct keys concurrently up to the bound', async () => {
    let running = 0;
    let maxRunning = 0;
    const q = new WorkQueue(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(20);
        running--;
      },
      { name: 't', concurrency: 3 },
    );
    for (let i = 0; i < 10; i++) q.add(`k${i}`);
    await q.drain();
    expect(maxRunning).toBe(3);
    await q.shutdown();
  });

  it('retries failures with per-key exponential backoff and resets on success', async () => {
    const times: number[] = [];
    const start = Date.now();
    const delays: number[] = [];
    let fail = 3;
    const q = new WorkQueue(
      async () => {
        times.push(Date.now() - start);
        if (fail-- > 0) throw new Error('boom');
      },
      // jitter 0: the exact exponential delays
      { name: 't', backoff: { baseMs: 20, maxMs: 50, jitter: 0 }, onRetry: (_k, d) => delays.push(d) },
    );
    q.add('k');
    while (times.length < 4) await sleep(10);
    await q.drain();
    expect(delays).toEqual([20, 40, 50]);
    expect(q.failuresOf('k')).toBe(0);
    // Each retry waited at least its backoff.
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(delays[i - 1]! - 2);
    // Success reset the history: the next failure starts at the base delay again.
    fail = 1;
    q.add('k');
    while (times.length < 6) await sleep(10);
    await q.drain();
    expect(delays).toEqual([20, 40, 50, 20]);
    await q.shutdown();
  });

  it('jitters the retry delays (by default into the upper half of the exponential delay)', async () => {
    const delays: number[] = [];
    const q = new WorkQueue(
      async () => {
        throw new Error('boom');
      },
      { name: 't', concurrency: 20, backoff: { baseMs: 1000, maxMs: 4000 }, onRetry: (_k, d) => delays.push(d) },
    );
    for (let i = 0; i < 20; i++) q.add(`k${i}`);
    await q.drain();
    await q.shutdown(); // cancels the scheduled retries
    // 20 keys that failed together do not all come back together.
    expect(delays).toHaveLength(20);
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(500);
      expect(d).toBeLessThanOrEqual(1000);
    }
    expect(new Set(delays).size).toBeGreaterThan(1);
    // Later failures: within [d/2, d] of the capped exponential delay.
    for (const [failures, d] of [[2, 2000], [3, 4000], [9, 4000]] as const) {
      for (let i = 0; i < 50; i++) {
        const v = q.backoffFor(failures);
        expect(v).toBeGreaterThanOrEqual(d / 2);
        expect(v).toBeLessThanOrEqual(d);
      }
    }
  });

  it('honours requeueAfter and cancels scheduled work on shutdown', async () => {
    let runs = 0;
    const q = new WorkQueue(async () => {
      runs++;
      return { requeueAfterMs: 30 };
    }, { name: 't' });
    q.add('k');
    await sleep(80);
    expect(runs).toBeGreaterThanOrEqual(2);
    await q.shutdown();
    const after = runs;
    await sleep(80);
    expect(runs).toBe(after);
    expect(q.pending).toBe(0);
  });

  it('coalesces a stream of delayed adds into one run per delay (never postponed forever)', async () => {
    let runs = 0;
    const q = new WorkQueue(async () => void runs++, { name: 't' });
    const until = Date.now() + 250;
    while (Date.now() < until) {
      q.addAfter('agg', 100);
      await sleep(10);
    }
    expect(runs).toBeGreaterThanOrEqual(2);
    expect(runs).toBeLessThanOrEqual(3);
    await q.shutdown();
  });
});

describe('WorkQueue and the event loop', () => {
  it('lets timers and I/O in while thousands of keys finish without waiting on anything', async () => {
    // Handlers that resolve without I/O (a restart that finds every status right) chain as
    // microtasks: without a yield, a health probe would wait for the whole queue.
    let processed = 0;
    const q = new WorkQueue(
      async () => {
        const until = performance.now() + 0.02;
        while (performance.now() < until);
        processed++;
      },
      { name: 't', concurrency: 4, paused: true },
    );
    const N = 20_000;
    for (let i = 0; i < N; i++) q.add(`k${i}`);
    const timerSaw: number[] = [];
    const probe = setInterval(() => timerSaw.push(processed), 5);
    q.start();
    await q.drain();
    clearInterval(probe);
    await q.shutdown();
    expect(processed).toBe(N);
    // The timer ran many times while keys were still waiting.
    expect(timerSaw.filter((n) => n < N).length).toBeGreaterThan(5);
  });
});
