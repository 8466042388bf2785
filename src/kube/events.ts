import { V1MicroTime, type EventsV1Api } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_VERSION } from '../api/index.js';

export interface EventTarget {
  kind: string;
  name: string;
  uid?: string;
}

/**
 * Records events.k8s.io/v1 Events for noteworthy transitions. Events about our cluster-scoped
 * objects live in the `default` namespace (as for Nodes). The same (object, reason, note) is sent
 * at most once per `dedupeMs`; failures are logged, never thrown: an event is not worth a retry.
 */
export class EventRecorder {
  private readonly recent = new Map<string, number>();

  constructor(
    private readonly api: EventsV1Api,
    private readonly controller: string,
    private readonly instance: string,
    private readonly log: Logger,
    private readonly namespace = 'default',
    private readonly dedupeMs = 300_000,
  ) {}

  async emit(target: EventTarget, type: 'Normal' | 'Warning', reason: string, note: string, action = reason): Promise<void> {
    const key = `${target.kind}/${target.name}/${reason}/${note}`;
    const now = Date.now();
    const last = this.recent.get(key);
    if (last !== undefined && now - last < this.dedupeMs) return;
    this.recent.set(key, now);
    if (this.recent.size > 10_000) this.recent.clear();
    try {
      await this.api.createNamespacedEvent({
        namespace: this.namespace,
        body: {
          // Named like client-go's events: <object>.<unique hex>.
          metadata: { name: `${target.name.slice(0, 200)}.${now.toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}` },
          eventTime: new V1MicroTime(),
          reportingController: this.controller,
          reportingInstance: this.instance.slice(0, 128),
          action: action.slice(0, 128),
          reason: reason.slice(0, 128),
          note: note.slice(0, 1024),
          type,
          regarding: { apiVersion: API_VERSION, kind: target.kind, name: target.name, ...(target.uid ? { uid: target.uid } : {}) },
        },
      });
    } catch (err) {
      this.log.warn({ err: String((err as Error)?.message ?? err), reason, object: `${target.kind}/${target.name}` }, 'could not record event');
    }
  }
}
