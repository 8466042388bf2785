import { describe, expect, it } from 'vitest';
import { Backoff, backoffDelay, sleep } from '../../../src/runtime/backoff.js';

const lowest = () => 0; // no reduction: the full exponential delay
const highest = () => 0.999_999_999; // the largest reduction Math.random can give

describe('backoffDelay', () => {
  it('doubles from baseMs per attempt and stops at maxMs', () => {
    const policy = { baseMs: 100, maxMs: 1000, jitter: 0 };
    expect([1, 2, 3, 4, 5, 6, 50].map((a) => backoffDelay(policy, a))).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it('treats attempt 0 (and below) as the first retry', () => {
    expect(backoffDelay({ baseMs: 100, maxMs: 1000, jitter: 0 }, 0)).toBe(100);
    expect(backoffDelay({ baseMs: 100, maxMs: 1000, jitter: 0 }, -3)).toBe(100);
  });

  it('draws the delay from [d * (1 - jitter), d], by default the upper half', () => {
    const policy = { baseMs: 100, maxMs: 1000 };
    expect(backoffDelay(policy, 3, lowest)).toBe(400);
    expect(backoffDelay(policy, 3, () => 0.5)).toBe(300);
    expect(backoffDelay(policy, 3, highest)).toBe(200);
    expect(backoffDelay({ ...policy, jitter: 0.2 }, 3, highest)).toBe(320);
    expect(backoffDelay({ ...policy, jitter: 1 }, 3, highest)).toBe(0);
    // jitter is clamped to [0, 1]
    expect(backoffDelay({ ...policy, jitter: 7 }, 3, () => 0.5)).toBe(200);
    expect(backoffDelay({ ...policy, jitter: -1 }, 3, () => 0.5)).toBe(400);
  });

  it('stays within its bounds with the real random source', () => {
    const policy = { baseMs: 50, maxMs: 3000 };
    const seen = new Set<number>();
    for (let attempt = 1; attempt <= 12; attempt++) {
      const d = Math.min(3000, 50 * 2 ** (attempt - 1));
      for (let i = 0; i < 200; i++) {
        const v = backoffDelay(policy, attempt);
        expect(v).toBeGreaterThanOrEqual(Math.floor(d / 2));
        expect(v).toBeLessThanOrEqual(d);
        if (attempt === 12) seen.add(v);
      }
    }
    // Jittered: 200 draws at the cap are not all the same delay.
    expect(seen.size).toBeGreaterThan(10);
  });

  it('stays a finite number after any number of attempts, also with baseMs 0', () => {
    for (const attempt of [1023, 1024, 1025, 10_000, Number.MAX_SAFE_INTEGER, Infinity, NaN]) {
      expect(backoffDelay({ baseMs: 250, maxMs: 10_000, jitter: 0 }, attempt)).toBe(10_000);
      expect(backoffDelay({ baseMs: 0, maxMs: 10_000, jitter: 0 }, attempt)).toBe(0);
    }
  });
});

describe('Backoff', () => {
  it('counts attempts, follows the policy and starts over after reset()', () => {
    const b = new Backoff({ baseMs: 10, maxMs: 50, jitter: 0.5 }, lowest);
    expect(b.attempts).toBe(0);
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([10, 20, 40, 50, 50]);
    expect(b.attempts).toBe(5);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(10);
  });

  it('uses the injected random source for every delay', () => {
    const draws = [0, 0.5, 0.999];
    const b = new Backoff({ baseMs: 100, maxMs: 100_000 }, () => draws.shift() ?? 0);
    expect([b.next(), b.next(), b.next()]).toEqual([100, 150, 200]);
  });
});

describe('sleep', () => {
  it('resolves true after the delay', async () => {
    const t0 = performance.now();
    expect(await sleep(20)).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(18);
  });

  it('resolves false at once when the signal aborts, or was aborted already', async () => {
    const ac = new AbortController();
    const t0 = performance.now();
    const p = sleep(10_000, ac.signal);
    setTimeout(() => ac.abort(), 10);
    expect(await p).toBe(false);
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(await sleep(10_000, ac.signal)).toBe(false);
  });
});
