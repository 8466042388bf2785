import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Backoff, type BackoffPolicy } from '../runtime/backoff.js';

export interface InformerOptions<T extends KubernetesObject> {
  name: string;
  kc: KubeConfig;
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  /** Restricts list and watch (the `list` function must pass the same selector). */
  fieldSelector?: string;
  /**
   * Applied in place to every object before it is handed to handlers and kept in the cache (as
   * client-go's SetTransform): e.g. dropping metadata.managedFields, which nothing here reads.
   */
  transform?: (obj: T) => void;
  log: Logger;
  /** Periodic callback with the whole cache, so that missed work is picked up (0 = never). */
  resyncMs?: number;
  /** Delays between watch restarts (src/runtime/backoff.ts); default 500 ms doubling to 30 s, jittered. */
  backoff?: BackoffPolicy;
  onRestart?: () => void;
}

type Handler<T> = (obj: T) => void;

/**
 * client-node's ListWatch relists on 410 Gone, but on any other error it emits `error` and stops
 * for good: every watch would die silently one day. This wrapper restarts it with jittered
 * exponential backoff (resuming from the last resourceVersion, relisting when that is gone),
 * reports when the first list has synced, and calls a resync handler periodically.
 */
export class ResilientInformer<T extends KubernetesObject> {
  private readonly informer: ListWatch<T>;
  private readonly handlers = { add: [] as Handler<T>[], update: [] as Handler<T>[], delete: [] as Handler<T>[], resync: [] as ((all: readonly T[]) => void)[] };
  private readonly backoff: Backoff;
  private errorCount = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private syncedOnce = false;
  private syncWaiters: (() => void)[] = [];

  constructor(private readonly options: InformerOptions<T>) {
    this.informer = new ListWatch<T>(options.path, new Watch(options.kc), options.list, false, undefined, options.fieldSelector);
    this.backoff = new Backoff(options.backoff ?? { baseMs: 500, maxMs: 30_000 });
    // The cache holds the very object passed to these callbacks, so the transform shrinks the cache too.
    const transform = options.transform ?? (() => undefined);
    this.informer.on('add', (o) => {
      transform(o);
      this.handlers.add.forEach((h) => h(o));
    });
    this.informer.on('update', (o) => {
      transform(o);
      this.handlers.update.forEach((h) => h(o));
    });
    this.informer.on('delete', (o) => this.handlers.delete.forEach((h) => h(o)));
    this.informer.on('error', (err) => this.scheduleRestart(err));
  }

  on(event: 'add' | 'update' | 'delete', handler: Handler<T>): void {
    this.handlers[event].push(handler);
  }

  /** add, update and delete with one handler. */
  onChange(handler: Handler<T>): void {
    for (const e of ['add', 'update', 'delete'] as const) this.on(e, handler);
  }

  onResync(handler: (all: readonly T[]) => void): void {
    this.handlers.resync.push(handler);
  }

  get synced(): boolean {
    return this.syncedOnce;
  }

  list(): readonly T[] {
    return this.informer.list();
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace);
  }

  /** Starts watching; resolves once the first list has been received (retrying until then). */
  async start(): Promise<void> {
    this.stopped = false;
    void this.attempt();
    if ((this.options.resyncMs ?? 0) > 0) {
      this.resyncTimer = setInterval(() => {
        const all = this.list();
        this.handlers.resync.forEach((h) => h(all));
      }, this.options.resyncMs);
    }
    if (!this.syncedOnce) await new Promise<void>((resolve) => this.syncWaiters.push(resolve));
  }

  private async attempt(): Promise<void> {
    try {
      // ListWatch reports a failed list through its `error` callback and then resolves start().
      const errorsBefore = this.errorCount;
      await this.informer.start();
      if (this.stopped || this.errorCount !== errorsBefore) return;
      this.backoff.reset();
      if (!this.syncedOnce) {
        this.syncedOnce = true;
        this.options.log.info({ informer: this.options.name, objects: this.list().length }, 'informer synced');
        this.syncWaiters.splice(0).forEach((w) => w());
      }
    } catch (err) {
      this.scheduleRestart(err);
    }
  }

  private scheduleRestart(err: unknown): void {
    this.errorCount++;
    if (this.stopped || this.restartTimer) return;
    const delay = this.backoff.next();
    this.options.log.warn({ informer: this.options.name, err: String((err as Error)?.message ?? err), retryInMs: delay }, 'watch failed; restarting');
    this.options.onRestart?.();
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.stopped) void this.attempt();
    }, delay);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    clearInterval(this.resyncTimer);
    this.resyncTimer = undefined;
    this.syncWaiters.splice(0).forEach((w) => w());
    await this.informer.stop();
  }
}
