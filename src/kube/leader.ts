import { Observable, V1MicroTime, type ConfigurationOptions, type CoordinationV1Api, type V1Lease, type V1LeaseSpec } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { sleep } from '../runtime/backoff.js';
import { statusCodeOf } from './client.js';

/** The Lease calls the elector makes (a CoordinationV1Api, or a fake in tests). */
export type LeaseApi = Pick<CoordinationV1Api, 'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'>;

export interface LeaderElectionOptions {
  api: LeaseApi;
  namespace: string;
  name: string;
  identity: string;
  /** How long a candidate waits without observing a change of the lease before it takes it over. */
  leaseDurationMs: number;
  /** How long the leader keeps trying to renew (since its last successful renew) before it gives up. */
  renewDeadlineMs: number;
  /** Pause between attempts (jittered by up to JITTER_FACTOR while acquiring). */
  retryPeriodMs: number;
  /**
   * Bound of each API request (default: retryPeriodMs, never longer than what is left of the renew
   * deadline). A request that takes longer is aborted and the attempt counts as failed.
   */
  requestTimeoutMs?: number;
  log: Logger;
  onStartedLeading: () => void;
  /**
   * Called when leadership is lost (not on stop()); the process should stop its controllers
   * (client-go exits).
   */
  onStoppedLeading: () => void;
  /** Random source of the acquire jitter, [0, 1) (tests). */
  random?: () => number;
}

/** client-go's leaderelection.JitterFactor: candidates wait retryPeriod * [1, 2.2) between attempts. */
export const JITTER_FACTOR = 1.2;

// Lease times are MicroTime: the API server rejects a plain Date's millisecond ISO string. They are
// written for people and other tools; this elector never reads them as times (see below).
const micro = (): V1MicroTime => new V1MicroTime(Date.now());

/** The local monotonic clock, in ms. Never Date: wall-clock steps must not expire or extend a lease. */
const now = (): number => performance.now();

/** A lease request that did not answer within its deadline (it was aborted). */
export class LeaseRequestTimeout extends Error {
  constructor(readonly timeoutMs: number) {
    super(`lease request timed out after ${Math.round(timeoutMs)} ms`);
    this.name = 'LeaseRequestTimeout';
  }
}

/** Per-request options of client-node 1.x that make fetch abort with `signal`. */
function abortOptions(signal: AbortSignal): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx) => {
          ctx.setSignal(signal);
          return new Observable(Promise.resolve(ctx));
        },
        post: (rsp) => new Observable(Promise.resolve(rsp)),
      },
    ],
    // Keep the API client's own middleware (none by default; authentication is not middleware).
    middlewareMergeStrategy: 'append',
  };
}

/**
 * Runs `call` with a deadline of `ms`: the request is aborted through its AbortSignal, and the
 * result is raced against the timer as well, so a client that ignores the signal cannot hang the
 * elector. Also rejects at once when `stop` aborts.
 */
function withDeadline<T>(ms: number, stop: AbortSignal, call: (options: ConfigurationOptions) => Promise<T>): Promise<T> {
  const request = new AbortController();
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onStop = (): void => {
      done();
      request.abort(stop.reason);
      reject(new Error('leader election stopped'));
    };
    const done = (): void => {
      clearTimeout(timer);
      stop.removeEventListener('abort', onStop);
    };
    if (stop.aborted) return onStop();
    if (!(ms > 0)) return reject(new LeaseRequestTimeout(0));
    timer = setTimeout(() => {
      done();
      const err = new LeaseRequestTimeout(ms);
      request.abort(err);
      reject(err);
    }, ms);
    stop.addEventListener('abort', onStop, { once: true });
    let pending: Promise<T>;
    try {
      pending = call(abortOptions(request.signal));
    } catch (err) {
      done();
      return reject(err);
    }
    pending.then(
      (v) => {
        done();
        resolve(v);
      },
      (err: unknown) => {
        done();
        reject(err);
      },
    );
  });
}

/** What a candidate knows of the lease: the record it last saw and when (locally) it saw it change. */
interface Observation {
  /** The record, compared as a whole: any change means its holder is alive. */
  key: string;
  holder: string;
  /** The holder's lease duration (leaseDurationSeconds), which is what its successor must wait. */
  durationMs: number;
  /** Local monotonic time of the first sight of this record. */
  at: number;
}

type Attempt = 'ok' | 'held' | 'failed';

function timeKey(t: unknown): string | null {
  if (t === undefined || t === null) return null;
  return t instanceof Date ? t.toISOString() : String(t);
}

function recordKey(spec: V1LeaseSpec | undefined): string {
  return JSON.stringify([
    spec?.holderIdentity ?? '',
    spec?.leaseDurationSeconds ?? null,
    timeKey(spec?.acquireTime),
    timeKey(spec?.renewTime),
    spec?.leaseTransitions ?? 0,
    spec?.preferredHolder ?? null,
    spec?.strategy ?? null,
  ]);
}

/**
 * Lease-based leader election with client-go's semantics (tools/leaderelection):
 *
 * - Clocks of other machines are never compared with ours. A candidate remembers the lease record it
 *   last read and the local (monotonic) time at which it saw that record change; the lease has
 *   expired when it has not changed for the holder's leaseDurationSeconds of local time. The
 *   renewTime in the lease is written for people and other tools, never read as a time. A holder
 *   whose clock is an hour ahead (or behind) is treated like any other.
 * - A candidate that starts therefore waits a full lease duration before it takes over an unreleased
 *   lease, however old its renewTime looks.
 * - Every request has a deadline (requestTimeoutMs, and what is left of the renew deadline); a request
 *   that hangs is aborted and counts as a failed attempt.
 * - The leader renews every retry period; when it has not renewed successfully for renewDeadline of
 *   local time (since the start of its last successful attempt), or it reads another holder, it stops
 *   leading and calls onStoppedLeading. renewDeadline < leaseDuration makes it stop before a
 *   candidate can take over.
 * - Writes carry the resourceVersion that was read (or create), so of two candidates only one wins.
 * - stop() releases a lease it holds (holderIdentity '' and leaseDurationSeconds 1, as client-go's
 *   ReleaseOnCancel), so a successor takes over at its next attempt instead of after a lease duration.
 *   The caller must have stopped the work the lease guards before stop().
 */
export class LeaderElector {
  private leading = false;
  private observed: Observation | undefined;
  /** The lease object last read or written: its resourceVersion makes the next write conditional. */
  private lease: V1Lease | undefined;
  /** Local time at which the last successful acquire or renew attempt started. */
  private renewedAt = 0;
  private abort: AbortController | undefined;
  private running: Promise<void> | undefined;
  private readonly requestTimeoutMs: number;
  private readonly random: () => number;

  constructor(private readonly o: LeaderElectionOptions) {
    const positive = (name: string, v: number): void => {
      if (!(v > 0) || !Number.isFinite(v)) throw new Error(`leader election: ${name} must be greater than zero`);
    };
    positive('leaseDuration', o.leaseDurationMs);
    positive('renewDeadline', o.renewDeadlineMs);
    positive('retryPeriod', o.retryPeriodMs);
    if (o.leaseDurationMs <= o.renewDeadlineMs) throw new Error('leader election: leaseDuration must be greater than renewDeadline');
    if (o.renewDeadlineMs <= JITTER_FACTOR * o.retryPeriodMs) throw new Error(`leader election: renewDeadline must be greater than retryPeriod * ${JITTER_FACTOR}`);
    if (!o.identity) throw new Error('leader election: identity must not be empty');
    this.requestTimeoutMs = o.requestTimeoutMs ?? o.retryPeriodMs;
    positive('requestTimeout', this.requestTimeoutMs);
    this.random = o.random ?? Math.random;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** The holder of the lease as last observed ('' when released, undefined before the first read). */
  get observedHolder(): string | undefined {
    return this.observed?.holder;
  }

  /** Starts campaigning (again, after stop() or a loss); a no-op while running. */
  start(): void {
    if (this.running) return;
    const abort = new AbortController();
    this.abort = abort;
    this.running = this.run(abort.signal)
      .catch((err: unknown) => this.o.log.error({ err, lease: this.o.name }, 'leader election failed'))
      .finally(() => {
        if (this.abort === abort) {
          this.abort = undefined;
          this.running = undefined;
        }
      });
  }

  private get fields(): Record<string, string> {
    return { lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity };
  }

  private async run(signal: AbortSignal): Promise<void> {
    this.o.log.info(this.fields, 'attempting to acquire the leader lease');
    // Acquire: every retryPeriod * [1, 2.2) (client-go's wait.JitterUntil with JitterFactor).
    for (;;) {
      if (signal.aborted) return;
      const r = await this.tryAcquireOrRenew(signal, now() + this.o.renewDeadlineMs);
      if (r === 'ok') break;
      if (!(await sleep(this.o.retryPeriodMs * (1 + JITTER_FACTOR * this.random()), signal))) return;
    }
    if (signal.aborted) return; // stop() releases what the last attempt acquired
    this.leading = true;
    this.o.log.info(this.fields, 'became leader');
    this.callback(this.o.onStartedLeading);
    // Renew: a round every retry period; a round retries until the renew deadline.
    for (;;) {
      if (!(await sleep(this.o.retryPeriodMs, signal))) return;
      const lost = await this.renewRound(signal);
      if (signal.aborted) return;
      if (lost) {
        this.leading = false;
        this.o.log.warn({ ...this.fields, why: lost }, 'lost leadership');
        this.callback(this.o.onStoppedLeading);
        return;
      }
    }
  }

  /** Undefined when renewed, else why leadership is lost. */
  private async renewRound(signal: AbortSignal): Promise<string | undefined> {
    const deadline = this.renewedAt + this.o.renewDeadlineMs;
    for (;;) {
      if (now() >= deadline) return `could not renew within the renew deadline (${this.o.renewDeadlineMs} ms)`;
      const r = await this.tryAcquireOrRenew(signal, deadline);
      if (signal.aborted || r === 'ok') return undefined;
      if (r === 'held') return `the lease is held by ${this.observed?.holder ?? 'another candidate'}`;
      const wait = Math.min(this.o.retryPeriodMs, deadline - now());
      if (wait > 0 && !(await sleep(wait, signal))) return undefined;
    }
  }

  private callback(f: () => void): void {
    try {
      f();
    } catch (err) {
      this.o.log.error({ err, ...this.fields }, 'leader election callback failed');
    }
  }

  /** One request, bounded by requestTimeoutMs and by `deadline` (local monotonic ms). */
  private request<T>(signal: AbortSignal, deadline: number, call: (options: ConfigurationOptions) => Promise<T>): Promise<T> {
    return withDeadline(Math.min(this.requestTimeoutMs, deadline - now()), signal, call);
  }

  /** Records what was read; the observation time moves only when the record changed. */
  private observe(spec: V1LeaseSpec | undefined, at: number): void {
    const key = recordKey(spec);
    if (this.observed?.key === key) return;
    this.observed = { key, holder: spec?.holderIdentity ?? '', durationMs: (spec?.leaseDurationSeconds ?? 0) * 1000, at };
  }

  private observedValid(at: number): boolean {
    return !!this.observed && this.observed.at + this.observed.durationMs > at;
  }

  /**
   * The spec this candidate writes (a whole new record, as client-go's): a renewal keeps acquireTime,
   * transitions and strategy; a takeover counts one transition.
   */
  private spec(previous: V1LeaseSpec | undefined): V1LeaseSpec {
    const renewal = !!previous && previous.holderIdentity === this.o.identity;
    const t = micro();
    return {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
      acquireTime: renewal ? (previous.acquireTime ?? t) : t,
      renewTime: t,
      leaseTransitions: (previous?.leaseTransitions ?? 0) + (previous && !renewal ? 1 : 0),
      ...(renewal && previous.strategy ? { strategy: previous.strategy } : {}),
    };
  }

  private async tryAcquireOrRenew(signal: AbortSignal, deadline: number): Promise<Attempt> {
    // Our own writes count from the start of the attempt: the server may have applied the write at
    // any moment after it, and the leader must give up before any candidate can see it as expired.
    const started = now();
    const { namespace, name } = this.o;
    const succeeded = (lease: V1Lease): Attempt => {
      this.lease = lease;
      this.observed = undefined;
      this.observe(lease.spec, started);
      this.renewedAt = started;
      return 'ok';
    };
    try {
      // 1. The leader first updates optimistically with the lease it wrote last (one request).
      if (this.leading && this.lease && this.observed?.holder === this.o.identity && this.observedValid(started)) {
        try {
          const body: V1Lease = { ...this.lease, spec: this.spec(this.lease.spec) };
          return succeeded(await this.request(signal, deadline, (opts) => this.o.api.replaceNamespacedLease({ name, namespace, body }, opts)));
        } catch (err) {
          if (signal.aborted) return 'failed';
          this.o.log.debug({ ...this.fields, err: String((err as Error)?.message ?? err) }, 'optimistic lease renew failed; reading the lease');
        }
      }
      // 2. Read the lease, or create it.
      let existing: V1Lease;
      try {
        existing = await this.request(signal, deadline, (opts) => this.o.api.readNamespacedLease({ name, namespace }, opts));
      } catch (err) {
        if (statusCodeOf(err) !== 404) throw err;
        const body: V1Lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: this.spec(undefined) };
        return succeeded(await this.request(signal, deadline, (opts) => this.o.api.createNamespacedLease({ namespace, body }, opts)));
      }
      this.lease = existing;
      this.observe(existing.spec, now());
      // 3. Held by another candidate whose record changed within its lease duration: not ours.
      const holder = this.observed!.holder;
      if (holder !== '' && holder !== this.o.identity && this.observedValid(now())) {
        this.o.log.debug({ ...this.fields, holder }, 'the lease is held and has not expired');
        return 'held';
      }
      // 4. Renew our own, or take over a released or expired one, conditional on the resourceVersion read.
      const body: V1Lease = { ...existing, spec: this.spec(existing.spec) };
      return succeeded(await this.request(signal, deadline, (opts) => this.o.api.replaceNamespacedLease({ name, namespace, body }, opts)));
    } catch (err) {
      if (signal.aborted) return 'failed';
      const code = statusCodeOf(err);
      // A conflict is another candidate's write between our read and our write: the next read shows it.
      this.o.log[code === 409 ? 'debug' : 'warn']({ ...this.fields, err: String((err as Error)?.message ?? err), code }, 'lease update failed');
      return 'failed';
    }
  }

  /**
   * Stops campaigning, and releases the lease if this elector last saw itself as its holder (also after
   * a loss: the write is conditional on a fresh read that still names us). Does not call
   * onStoppedLeading.
   */
  async stop(): Promise<void> {
    const running = this.running;
    this.abort?.abort();
    await running;
    this.leading = false;
    if (this.observed?.holder === this.o.identity) await this.release();
  }

  private async release(): Promise<void> {
    const { namespace, name } = this.o;
    const deadline = now() + this.o.renewDeadlineMs;
    const never = new AbortController().signal;
    // Conflicts (an aborted renew may still have landed) are retried, as client-go's tryRelease.
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const existing = await this.request(never, deadline, (opts) => this.o.api.readNamespacedLease({ name, namespace }, opts));
        if (existing.spec?.holderIdentity !== this.o.identity) return;
        const t = micro();
        const body: V1Lease = { ...existing, spec: { ...existing.spec, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: t, renewTime: t } };
        const released = await this.request(never, deadline, (opts) => this.o.api.replaceNamespacedLease({ name, namespace, body }, opts));
        this.lease = released;
        this.observe(released.spec, now());
        this.o.log.info(this.fields, 'released the leader lease');
        return;
      } catch (err) {
        if (statusCodeOf(err) === 409) continue;
        this.o.log.warn({ ...this.fields, err: String((err as Error)?.message ?? err) }, 'could not release the leader lease');
        return;
      }
    }
  }
}
