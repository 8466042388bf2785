import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { GROUP, VERSION, type ObjectOf } from '../api/index.js';
import type { Metrics } from '../runtime/metrics.js';
import type { KubeClients } from './client.js';
import { ResilientInformer } from './informer.js';
import { collectionPath, kindInfo, type KindName } from './resources.js';
import { parseObject } from './typed.js';

export type PolicyInformers = { [K in KindName]: ResilientInformer<KubernetesObject> };

/** One informer per kind of ours, as both the controller and the agent watch them. */
export function createPolicyInformers(clients: KubeClients, log: Logger, metrics: Metrics, resyncMs = 0): PolicyInformers {
  return {
    ServicePolicy: kindInformer(clients, 'ServicePolicy', log, metrics, { resyncMs }),
    DepartmentPolicy: kindInformer(clients, 'DepartmentPolicy', log, metrics, { resyncMs }),
    VMFilter: kindInformer(clients, 'VMFilter', log, metrics, { resyncMs }),
    AddressGroup: kindInformer(clients, 'AddressGroup', log, metrics, { resyncMs }),
  };
}

/** Objects per list request (client-go's default page size). */
export const LIST_PAGE_SIZE = 500;

/** managedFields is the largest part of an object we never read: 10,000 VMFilters carry it for nothing. */
export function dropManagedFields(obj: KubernetesObject): void {
  if (obj.metadata?.managedFields) delete obj.metadata.managedFields;
}

/** A resilient informer over one of our kinds, optionally restricted by a field selector. */
export function kindInformer(
  clients: KubeClients,
  kind: KindName,
  log: Logger,
  metrics: Metrics,
  options: { resyncMs?: number; fieldSelector?: string; name?: string } = {},
): ResilientInformer<KubernetesObject> {
  const { fieldSelector } = options;
  // Paged like client-go's pager (500 per page, one consistent snapshot through `continue`): one
  // response with 10,000 objects is tens of MB of JSON held at once, the process's peak memory.
  const list = async (): Promise<KubernetesListObject<KubernetesObject>> => {
    const items: KubernetesObject[] = [];
    let resourceVersion: string | undefined;
    let next: string | undefined;
    do {
      const page = (await clients.custom.listClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: kindInfo(kind).plural,
        limit: LIST_PAGE_SIZE,
        ...(next ? { _continue: next } : {}),
        ...(fieldSelector !== undefined ? { fieldSelector } : {}),
      })) as KubernetesListObject<KubernetesObject>;
      for (const item of page.items) {
        dropManagedFields(item);
        items.push(item);
      }
      resourceVersion ??= page.metadata?.resourceVersion;
      // Custom objects come back as the server's JSON, where the token is `continue`.
      const meta = page.metadata as { continue?: string; _continue?: string } | undefined;
      next = meta?.continue || meta?._continue || undefined;
    } while (next);
    return { apiVersion: 'v1', kind: 'List', metadata: { ...(resourceVersion ? { resourceVersion } : {}) }, items };
  };
  return new ResilientInformer<KubernetesObject>({
    name: options.name ?? kind,
    kc: clients.kc,
    path: collectionPath(kind),
    list,
    ...(fieldSelector !== undefined ? { fieldSelector } : {}),
    transform: dropManagedFields,
    log,
    resyncMs: options.resyncMs ?? 0,
    onRestart: () => metrics.informerRestarts.inc({ kind }),
  });
}

/** The cached objects of a kind that pass our schema (the others are reported in their status). */
export function typedList<K extends KindName>(informers: PolicyInformers, kind: K): ObjectOf<K>[] {
  const out: ObjectOf<K>[] = [];
  for (const raw of informers[kind].list()) {
    const p = parseObject(kind, raw);
    if (p.ok) out.push(p.value as ObjectOf<K>);
  }
  return out;
}

export function allSynced(informers: PolicyInformers): boolean {
  return Object.values(informers).every((i) => i.synced);
}
