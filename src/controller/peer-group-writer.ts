import { PatchStrategy, setHeaderOptions, type CustomObjectsApi, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { GROUP, VERSION, kindInfo, type PeerSelector } from '../api/index.js';
import { statusCodeOf } from '../kube/index.js';
import { describeSelector } from '../policy/index.js';
import { peerGroupManifest } from './peer-groups.js';

const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
const PLURAL = kindInfo('AddressGroup').plural;
const WRITES = 'nwfilter_operator_peer_group_writes_total';

export type PeerGroupOp = 'create' | 'repair' | 'delete';

/**
 * `peer_group_writes_total{op,result}` on the controller's registry: how often managed peer groups
 * are created, repaired and deleted, and how many of those writes lost a race (`conflict`: someone
 * changed the object first; `gone`: it was deleted first) or failed. One counter per registry,
 * however many controllers share it (tests). No per-group series: group names are unbounded.
 */
export function peerGroupWrites(registry: Registry): Counter<'op' | 'result'> {
  const existing = registry.getSingleMetric(WRITES) as Counter<'op' | 'result'> | undefined;
  return (
    existing ??
    new Counter({
      name: WRITES,
      help: 'Writes of managed peer AddressGroups by operation (create, repair, delete) and result (ok, conflict, gone, error).',
      labelNames: ['op', 'result'] as const,
      registers: [registry],
    })
  );
}

const DONE: Record<PeerGroupOp, string> = { create: 'peer group created', repair: 'peer group spec restored', delete: 'peer group deleted' };

/**
 * Creates, repairs and deletes managed peer groups. Each write is conditional on what the cache
 * showed (create fails on an existing object, repair and delete on a changed resourceVersion), so
 * a stale cache never overwrites or deletes a group someone else just made or relabelled: the
 * write loses with 409 and the informer's event brings the name back to be decided again.
 */
export class PeerGroupWriter {
  constructor(
    private readonly custom: CustomObjectsApi,
    private readonly fieldManager: string,
    private readonly log: Logger,
    private readonly writes: Counter<'op' | 'result'>,
  ) {}

  /** The object as created (its uid, for the status written next), or undefined when one existed already. */
  async create(name: string, selector: PeerSelector): Promise<KubernetesObject | undefined> {
    const body = peerGroupManifest(name, selector);
    let created: KubernetesObject | undefined;
    const ok = await this.send('create', name, { selector: describeSelector(selector) }, async () => {
      created = (await this.custom.createClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, body, fieldManager: this.fieldManager })) as KubernetesObject;
    });
    return ok ? created : undefined;
  }

  repair(raw: KubernetesObject, selector: PeerSelector): Promise<boolean> {
    const name = raw.metadata!.name!;
    const ops = [
      { op: 'test', path: '/metadata/resourceVersion', value: raw.metadata?.resourceVersion },
      { op: 'replace', path: '/spec', value: peerGroupManifest(name, selector).spec },
    ];
    return this.send('repair', name, { selector: describeSelector(selector) }, () =>
      this.custom.patchClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, name, body: ops, fieldManager: this.fieldManager }, jsonPatch),
    );
  }

  delete(raw: KubernetesObject): Promise<boolean> {
    const name = raw.metadata!.name!;
    const preconditions = { ...(raw.metadata?.uid ? { uid: raw.metadata.uid } : {}), ...(raw.metadata?.resourceVersion ? { resourceVersion: raw.metadata.resourceVersion } : {}) };
    return this.send('delete', name, {}, () => this.custom.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, name, body: { preconditions } }));
  }

  /** True when the write went through; false when it lost a race (the object's next event decides again). */
  private async send(op: PeerGroupOp, name: string, fields: Record<string, unknown>, call: () => Promise<unknown>): Promise<boolean> {
    try {
      await call();
    } catch (err) {
      const code = statusCodeOf(err);
      // 422: a JSON patch whose resourceVersion test failed.
      const result = code === 409 || code === 422 ? 'conflict' : code === 404 && op !== 'create' ? 'gone' : 'error';
      this.writes.inc({ op, result });
      if (result === 'error') throw err;
      this.log.debug({ addressGroup: name, op, code }, 'peer group write lost a race; deciding again on its next event');
      return false;
    }
    this.writes.inc({ op, result: 'ok' });
    this.log.info({ addressGroup: name, ...fields }, DONE[op]);
    return true;
  }
}
