import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { DepartmentPolicy, ServicePolicy } from '../api/index.js';
import { allSynced, createPolicyInformers, onSpecChange, typedList, type KubeClients, type PolicyInformers } from '../kube/index.js';
import type { Metrics } from '../runtime/metrics.js';

/**
 * What the agent reads from Kubernetes. VMFilters are handed over raw: an object that no longer
 * passes today's schema (stored under an older, looser CRD) must still be seen, because its
 * domain stays protected by the filter applied last. Services and departments are the valid ones.
 */
export interface PolicySource {
  vmFilter(name: string): KubernetesObject | undefined;
  vmFilters(): readonly KubernetesObject[];
  services(): readonly ServicePolicy[];
  departments(): readonly DepartmentPolicy[];
  synced(): boolean;
  /** A VMFilter was added, changed or deleted (`obj` is its last known state). */
  onVmFilterChange(handler: (name: string, obj: KubernetesObject) => void): void;
  /** A ServicePolicy or DepartmentPolicy was added, deleted, or its spec changed (status-only updates are not reported). */
  onPolicyChange(handler: (kind: 'ServicePolicy' | 'DepartmentPolicy', obj: KubernetesObject) => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The production source: one resilient informer per kind. */
export class InformerPolicySource implements PolicySource {
  private readonly informers: PolicyInformers;

  constructor(clients: KubeClients, log: Logger, metrics: Metrics) {
    this.informers = createPolicyInformers(clients, log, metrics);
  }

  vmFilter(name: string): KubernetesObject | undefined {
    return this.informers.VMFilter.get(name);
  }

  vmFilters(): readonly KubernetesObject[] {
    return this.informers.VMFilter.list();
  }

  services(): readonly ServicePolicy[] {
    return typedList(this.informers, 'ServicePolicy');
  }

  departments(): readonly DepartmentPolicy[] {
    return typedList(this.informers, 'DepartmentPolicy');
  }

  synced(): boolean {
    return allSynced(this.informers);
  }

  onVmFilterChange(handler: (name: string, obj: KubernetesObject) => void): void {
    this.informers.VMFilter.onChange((o) => handler(o.metadata!.name!, o));
  }

  onPolicyChange(handler: (kind: 'ServicePolicy' | 'DepartmentPolicy', obj: KubernetesObject) => void): void {
    // Only a new generation, an addition or a deletion changes what the agent compiles.
    for (const kind of ['ServicePolicy', 'DepartmentPolicy'] as const) onSpecChange(this.informers[kind], (o) => handler(kind, o));
  }

  async start(): Promise<void> {
    await Promise.all(Object.values(this.informers).map((i) => i.start()));
  }

  async stop(): Promise<void> {
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
  }
}
