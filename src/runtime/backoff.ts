/**
 * The one retry delay of the project: exponential from `baseMs`, capped at `maxMs`, with "full
 * jitter" in the upper half (client-go's wait.Jitter and the AWS architecture note both spread
 * retries so that many clients that failed together do not retry together). Every retry loop
 * (work queue, watch restarts, libvirt reconnects, startup waits) takes its delays from here.
 */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  /** Fraction of the delay that is randomised: 0 = none, 0.5 (default) = delay in [d/2, d]. */
  jitter?: number;
}

/** Delay before retry number `attempt` (1 = first retry). `random` is injectable for tests. */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  const jitter = Math.min(1, Math.max(0, policy.jitter ?? 0.5));
  return Math.round(exp * (1 - jitter * random()));
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
