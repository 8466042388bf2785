import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { backoffDelay, type BackoffPolicy } from '../runtime/backoff.js';
import type { Metrics } from '../runtime/metrics.js';

/**
 * The longest stretch of queue work before timers and I/O get a turn. Handlers that resolve
 * without I/O (a restart that finds 10,000 statuses right, cached compiles) chain as microtasks,
 * and without a yield health probes, watch events and libvirt replies would wait for all of them.
 */
export const SLICE_MS = 10;

export interface WorkQueueOptions {
  name: string;
  /** Keys processed at the same time (distinct keys only). */
  concurrency?: number;
  /** Overall rate limit: at most `rate.count` handler starts per `rate.intervalMs`. */
  rate?: { count: number; intervalMs: number };
  /**
   * Per-key exponential backoff after failures: base * 2^(failures-1), capped, jittered by the
   * project's one helper (src/runtime/backoff.ts; `jitter` 0 for exact delays).
   */
  backoff?: BackoffPolicy;
  log?: Logger;
  onDepth?: (depth: number) => void;
  onRetry?: (key: string, delayMs: number, err: unknown) => void;
  /** Collect keys without processing them until start() (controller-runtime starts workers once caches synced). */
  paused?: boolean;
}

/** What a handler may ask for besides success or a thrown error. */
export type HandlerResult = void | {
  requeueAfterMs: number;
  /** Counted as a failed reconcile although retried on the handler's own schedule (e.g. libvirtd unreachable). */
  failed?: boolean;
};

/**
 * A keyed work queue with controller-runtime's semantics, scheduled by p-queue:
 * - one key is never processed twice at the same time;
 * - adding a key that is waiting is a no-op (adds coalesce); adding a key that is being processed
 *   marks it dirty, and it runs once more afterwards with the then-current state;
 * - a handler that throws is retried with per-key jittered exponential backoff up to a cap; success
 *   resets it;
 * - overall concurrency and rate are bounded.
 * p-queue provides concurrency and rate; the per-key bookkeeping is what it lacks.
 */
export class WorkQueue {
  private readonly queue: PQueue;
  private readonly waiting = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly backoff: BackoffPolicy;
  private closed = false;
  private sliceStart = performance.now();

  constructor(private readonly handler: (key: string) => Promise<HandlerResult>, private readonly options: WorkQueueOptions) {
    this.queue = new PQueue({
      concurrency: options.concurrency ?? 4,
      autoStart: !options.paused,
      ...(options.rate ? { intervalCap: options.rate.count, interval: options.rate.intervalMs } : {}),
    });
    this.backoff = options.backoff ?? { baseMs: 200, maxMs: 300_000 };
  }

  /** Starts processing a queue created paused (a no-op otherwise). */
  start(): void {
    this.queue.start();
  }

  get depth(): number {
    return this.waiting.size + this.dirty.size;
  }

  /** Keys waiting, being processed, or scheduled for later. */
  get pending(): number {
    return this.waiting.size + this.processing.size + this.dirty.size + this.timers.size;
  }

  add(key: string): void {
    if (this.closed) return;
    const timer = this.timers.get(key);
    if (timer) {
      clearTimeout(timer);
      this.timers.delete(key);
    }
    if (this.processing.has(key)) {
      this.dirty.add(key);
    } else if (!this.waiting.has(key)) {
      this.waiting.add(key);
      void this.queue.add(() => this.run(key));
    }
    this.reportDepth();
  }

  /**
   * Adds the key after a delay. A key already scheduled keeps its earlier time (as controller-runtime's
   * AddAfter), so a stream of calls coalesces into one run per delay instead of postponing it forever.
   */
  addAfter(key: string, delayMs: number): void {
    if (this.closed || this.waiting.has(key) || this.timers.has(key)) return;
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        this.add(key);
      }, delayMs),
    );
  }

  /** Forgets the failure history of a key (its next failure starts at the base delay). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  failuresOf(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** The delay before the retry after `failures` consecutive failures (jittered: a range, not a value). */
  backoffFor(failures: number): number {
    return backoffDelay(this.backoff, failures);
  }

  /** Yields to the event loop (timers, I/O) once the queue has worked SLICE_MS without a break. */
  private async yieldIfDue(): Promise<void> {
    if (performance.now() - this.sliceStart < SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.sliceStart = performance.now();
  }

  private async run(key: string): Promise<void> {
    this.waiting.delete(key);
    if (this.closed) return;
    this.processing.add(key);
    this.reportDepth();
    try {
      const result = await this.handler(key);
      this.forget(key);
      if (result && result.requeueAfterMs > 0) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      const delay = this.backoffFor(n);
      this.options.log?.warn({ err, key, queue: this.options.name, failures: n, retryInMs: delay }, 'reconcile failed; retrying with backoff');
      this.options.onRetry?.(key, delay, err);
      if (!this.dirty.has(key)) this.addAfter(key, delay);
    } finally {
      this.processing.delete(key);
      if (this.dirty.delete(key)) this.add(key);
      this.reportDepth();
    }
    // Still holding p-queue's slot: the next key starts after the event loop had its turn.
    await this.yieldIfDue();
  }

  private reportDepth(): void {
    this.options.onDepth?.(this.depth);
  }

  /** Resolves when nothing is waiting or running (scheduled retries do not count). */
  async drain(): Promise<void> {
    while (this.waiting.size + this.processing.size + this.dirty.size > 0) await this.queue.onIdle();
  }

  /** Stops accepting keys, cancels scheduled retries, and waits for running handlers. */
  async shutdown(): Promise<void> {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.queue.clear();
    this.waiting.clear();
    this.dirty.clear();
    await this.queue.onIdle();
  }
}

/**
 * The one reconcile wrapper of both processes: a WorkQueue that times every handler run
 * (`reconcile_duration_seconds{kind}`), counts it (`reconcile_total{kind,result}`) and reports
 * depth and retries, labelled with the queue's name. `kindOf` names what a key reconciles.
 */
export function instrumentedQueue(
  name: string,
  handler: (key: string) => Promise<HandlerResult>,
  concurrency: number,
  log: Logger,
  metrics: Metrics,
  options: { paused?: boolean; kindOf?: (key: string) => string } = {},
): WorkQueue {
  const { kindOf = () => name, ...queueOptions } = options;
  const measured = async (key: string): Promise<HandlerResult> => {
    const kind = kindOf(key);
    const end = metrics.reconcileDuration.startTimer({ kind });
    try {
      const result = await handler(key);
      metrics.reconcileTotal.inc({ kind, result: result && result.failed ? 'error' : 'success' });
      return result;
    } catch (err) {
      metrics.reconcileTotal.inc({ kind, result: 'error' });
      throw err;
    } finally {
      end();
    }
  };
  return new WorkQueue(measured, {
    ...queueOptions,
    name,
    concurrency,
    log,
    onDepth: (d) => metrics.queueDepth.set({ queue: name }, d),
    onRetry: () => metrics.queueRetries.inc({ queue: name }),
  });
}
