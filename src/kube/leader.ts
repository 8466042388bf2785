import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { statusCodeOf } from './client.js';

export interface LeaderElectionOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  log: Logger;
  onStartedLeading: () => void;
  /** Called when leadership is lost; the process should stop its controllers (client-go exits). */
  onStoppedLeading: () => void;
}

// Lease times are MicroTime: the API server rejects a plain Date's millisecond ISO string.
const micro = (d: Date): V1MicroTime => new V1MicroTime(d.getTime());

/**
 * Lease-based leader election in the manner of client-go: the holder renews every retry period;
 * a candidate takes the lease when `renewTime + leaseDuration` has passed. Updates use the lease's
 * resourceVersion, so two candidates can never both win. The lease is released on stop, so a
 * successor takes over at once instead of after a lease duration.
 */
export class LeaderElector {
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private lastRenew = 0;
  private stopped = false;

  constructor(private readonly o: LeaderElectionOptions) {}

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  private schedule(): void {
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.o.retryPeriodMs);
  }

  private async tick(): Promise<void> {
    try {
      const ok = await this.tryAcquireOrRenew();
      if (ok) {
        this.lastRenew = Date.now();
        if (!this.leading) {
          this.leading = true;
          this.o.log.info({ lease: this.o.name, identity: this.o.identity }, 'became leader');
          this.o.onStartedLeading();
        }
      } else if (this.leading) {
        this.lose('another replica holds the lease');
      }
    } catch (err) {
      this.o.log.warn({ err: String((err as Error)?.message ?? err), lease: this.o.name }, 'lease update failed');
      if (this.leading && Date.now() - this.lastRenew > this.o.renewDeadlineMs) this.lose('could not renew within the renew deadline');
    }
    this.schedule();
  }

  private lose(why: string): void {
    this.leading = false;
    this.o.log.warn({ lease: this.o.name, why }, 'lost leadership');
    this.o.onStoppedLeading();
  }

  private leaseBody(existing: V1Lease | undefined, now: Date): V1Lease {
    const takeover = existing?.spec?.holderIdentity !== this.o.identity;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.o.name, namespace: this.o.namespace, ...(existing?.metadata?.resourceVersion ? { resourceVersion: existing.metadata.resourceVersion } : {}) },
      spec: {
        holderIdentity: this.o.identity,
        leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
        acquireTime: takeover ? micro(now) : (existing?.spec?.acquireTime ?? micro(now)),
        renewTime: micro(now),
        leaseTransitions: (existing?.spec?.leaseTransitions ?? 0) + (takeover && existing ? 1 : 0),
      },
    };
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = new Date();
    let existing: V1Lease | undefined;
    try {
      existing = await this.o.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
    } catch (err) {
      if (statusCodeOf(err) !== 404) throw err;
    }
    if (!existing) {
      try {
        await this.o.api.createNamespacedLease({ namespace: this.o.namespace, body: this.leaseBody(undefined, now) });
        return true;
      } catch (err) {
        if (statusCodeOf(err) === 409) return false;
        throw err;
      }
    }
    const holder = existing.spec?.holderIdentity;
    const renewed = existing.spec?.renewTime ? new Date(existing.spec.renewTime as unknown as string).getTime() : 0;
    const durationMs = (existing.spec?.leaseDurationSeconds ?? 0) * 1000;
    const expired = !holder || renewed + durationMs < now.getTime();
    if (holder !== this.o.identity && !expired) return false;
    try {
      await this.o.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body: this.leaseBody(existing, now) });
      return true;
    } catch (err) {
      if (statusCodeOf(err) === 409) return false;
      throw err;
    }
  }

  /** Stops campaigning and releases the lease if held. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.leading) return;
    this.leading = false;
    try {
      const existing = await this.o.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
      if (existing.spec?.holderIdentity === this.o.identity) {
        existing.spec.holderIdentity = '';
        existing.spec.leaseDurationSeconds = 1;
        await this.o.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body: existing });
        this.o.log.info({ lease: this.o.name }, 'released lease');
      }
    } catch (err) {
      this.o.log.warn({ err: String((err as Error)?.message ?? err) }, 'could not release lease');
    }
  }
}
