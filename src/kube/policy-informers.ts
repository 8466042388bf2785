import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { GROUP, VERSION, type DepartmentPolicy, type ServicePolicy, type VMFilter } from '../api/index.js';
import type { Metrics } from '../runtime/metrics.js';
import type { KubeClients } from './client.js';
import { ResilientInformer } from './informer.js';
import { collectionPath, kindInfo, type KindName } from './resources.js';
import { parseObject } from './typed.js';

export type PolicyInformers = { [K in KindName]: ResilientInformer<KubernetesObject> };

type TypeOf<K extends KindName> = K extends 'ServicePolicy' ? ServicePolicy : K extends 'DepartmentPolicy' ? DepartmentPolicy : VMFilter;

/** One informer per kind of ours, as both the controller and the agent watch them. */
export function createPolicyInformers(clients: KubeClients, log: Logger, metrics: Metrics, resyncMs = 0): PolicyInformers {
  const make = (kind: KindName) =>
    new ResilientInformer<KubernetesObject>({
      name: kind,
      kc: clients.kc,
      path: collectionPath(kind),
      list: () => clients.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: kindInfo(kind).plural }) as Promise<KubernetesListObject<KubernetesObject>>,
      log,
      resyncMs,
      onRestart: () => metrics.informerRestarts.inc({ kind }),
    });
  return { ServicePolicy: make('ServicePolicy'), DepartmentPolicy: make('DepartmentPolicy'), VMFilter: make('VMFilter') };
}

/** The cached objects of a kind that pass our schema (the others are reported in their status). */
export function typedList<K extends KindName>(informers: PolicyInformers, kind: K): TypeOf<K>[] {
  const out: TypeOf<K>[] = [];
  for (const raw of informers[kind].list()) {
    const p = parseObject(kind, raw);
    if (p.ok) out.push(p.value as TypeOf<K>);
  }
  return out;
}

export function allSynced(informers: PolicyInformers): boolean {
  return Object.values(informers).every((i) => i.synced);
}
