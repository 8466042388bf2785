/**
 * The one retry delay of the project: exponential from `baseMs`, capped at `maxMs`, with a random
 * part ("equal jitter" in the AWS architecture note: by default the delay is drawn from the upper
 * half [d/2, d]; client-go's wait.Jitter spreads retries for the same reason) so that many clients
 * that failed together do not retry together. Every retry loop (work queue, watch restarts,
 * libvirt reconnects, startup waits) takes its delays from here.
 */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  /** Fraction of the delay that is randomised: 0 = none, 0.5 (default) = delay in [d/2, d]. */
  jitter?: number;
}

/** Delay before retry number `attempt` (1 = first retry). `random` is injectable for tests. */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  // The exponent is bounded: 2 ** 1024 is Infinity, and 0 * Infinity (baseMs 0 after a long outage)
  // would be NaN, which setTimeout treats as 1 ms. Any delay past 2^62 base units is capped anyway.
  const exponent = Math.min(62, Math.max(0, Number.isFinite(attempt) ? attempt - 1 : 62));
  const exp = Math.max(0, Math.min(policy.maxMs, policy.baseMs * 2 ** exponent));
  const jitter = Math.min(1, Math.max(0, policy.jitter ?? 0.5)) || 0;
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(exp * (1 - jitter * r));
}

/** A stateful counter over a policy: `next()` gives the next delay, `reset()` after a success. */
export class Backoff {
  private attempt = 0;

  constructor(private readonly policy: BackoffPolicy, private readonly random: () => number = Math.random) {}

  next(): number {
    this.attempt++;
    return backoffDelay(this.policy, this.attempt, this.random);
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (then with false). */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
