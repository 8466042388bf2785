import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { GROUP, VERSION, kindInfo, type AddressGroup, type DepartmentPolicy, type ServicePolicy } from '../api/index.js';
import { kindInformer, onSpecChange, parseObject, statusCodeOf, type KubeClients, type ResilientInformer } from '../kube/index.js';
import type { Metrics } from '../runtime/metrics.js';
import { MergedView, nodeSelectors } from './vm-filter-view.js';

/**
 * What the agent reads from Kubernetes. VMFilters are handed over raw: an object that no longer
 * passes today's schema (stored under an older, looser CRD) must still be seen, because its
 * domain stays protected by the filter applied last. Services and departments are the valid ones.
 */
export interface PolicySource {
  /** A VMFilter in this agent's view (see vm-filter-view.ts), raw. */
  vmFilter(name: string): KubernetesObject | undefined;
  vmFilters(): readonly KubernetesObject[];
  /**
   * The object as the API server has it now (undefined when it does not exist), for a VMFilter that
   * left the view: only this tells a deleted object from one that is no longer selected for this node.
   */
  fetchVmFilter(name: string): Promise<KubernetesObject | undefined>;
  services(): readonly ServicePolicy[];
  departments(): readonly DepartmentPolicy[];
  /** The valid AddressGroups (the controller's peer groups included). */
  addressGroups(): readonly AddressGroup[];
  synced(): boolean;
  /** A VMFilter was added, changed, deleted or left the view (`obj` is its last known state). */
  onVmFilterChange(handler: (name: string, obj: KubernetesObject) => void): void;
  /** A ServicePolicy or DepartmentPolicy was added, deleted, or its spec changed (status-only updates are not reported). */
  onPolicyChange(handler: (kind: 'ServicePolicy' | 'DepartmentPolicy', obj: KubernetesObject) => void): void;
  /**
   * An AddressGroup was added, deleted or changed, status included: the members of a peer group are
   * its status.peerAddresses, which the controller writes.
   */
  onAddressGroupChange(handler: (obj: KubernetesObject, change: 'added' | 'changed' | 'deleted') => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** `node`: only the VMFilters that concern this node (needs Kubernetes >= 1.31); `cluster`: all of them. */
export type WatchScope = 'node' | 'cluster';

export interface InformerPolicySourceOptions {
  nodeName: string;
  scope: WatchScope;
}

/** The valid objects of a kind in an informer's cache (each version parsed once, src/kube/typed.ts). */
function validOf<T>(informer: ResilientInformer<KubernetesObject>, kind: 'ServicePolicy' | 'DepartmentPolicy' | 'AddressGroup'): T[] {
  const out: T[] = [];
  for (const raw of informer.list()) {
    const p = parseObject(kind, raw);
    if (p.ok) out.push(p.value as T);
  }
  return out;
}

/** The production source: resilient informers; VMFilters through a node-scoped view by default. */
export class InformerPolicySource implements PolicySource {
  private readonly services_: ResilientInformer<KubernetesObject>;
  private readonly departments_: ResilientInformer<KubernetesObject>;
  private readonly groups_: ResilientInformer<KubernetesObject>;
  private view: MergedView | undefined;
  private readonly vmHandlers: ((name: string, obj: KubernetesObject) => void)[] = [];
  private stopped = false;

  constructor(
    private readonly clients: KubeClients,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly options: InformerPolicySourceOptions,
  ) {
    this.services_ = kindInformer(clients, 'ServicePolicy', log, metrics);
    this.departments_ = kindInformer(clients, 'DepartmentPolicy', log, metrics);
    this.groups_ = kindInformer(clients, 'AddressGroup', log, metrics);
  }

  vmFilter(name: string): KubernetesObject | undefined {
    return this.view?.get(name);
  }

  vmFilters(): readonly KubernetesObject[] {
    return this.view?.list() ?? [];
  }

  async fetchVmFilter(name: string): Promise<KubernetesObject | undefined> {
    try {
      return (await this.clients.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: kindInfo('VMFilter').plural, name })) as KubernetesObject;
    } catch (err) {
      if (statusCodeOf(err) === 404) return undefined;
      throw err;
    }
  }

  services(): readonly ServicePolicy[] {
    return validOf<ServicePolicy>(this.services_, 'ServicePolicy');
  }

  departments(): readonly DepartmentPolicy[] {
    return validOf<DepartmentPolicy>(this.departments_, 'DepartmentPolicy');
  }

  addressGroups(): readonly AddressGroup[] {
    return validOf<AddressGroup>(this.groups_, 'AddressGroup');
  }

  synced(): boolean {
    return this.services_.synced && this.departments_.synced && this.groups_.synced && (this.view?.synced ?? false);
  }

  onAddressGroupChange(handler: (obj: KubernetesObject, change: 'added' | 'changed' | 'deleted') => void): void {
    this.groups_.on('add', (o) => handler(o, 'added'));
    this.groups_.on('update', (o) => handler(o, 'changed'));
    this.groups_.on('delete', (o) => handler(o, 'deleted'));
  }

  onVmFilterChange(handler: (name: string, obj: KubernetesObject) => void): void {
    this.vmHandlers.push(handler);
    this.view?.onChange(handler);
  }

  onPolicyChange(handler: (kind: 'ServicePolicy' | 'DepartmentPolicy', obj: KubernetesObject) => void): void {
    // Only a new generation, an addition or a deletion changes what the agent compiles.
    onSpecChange(this.services_, (o) => handler('ServicePolicy', o));
    onSpecChange(this.departments_, (o) => handler('DepartmentPolicy', o));
  }

  /** Node scope needs CRD selectable fields (Kubernetes 1.31+); an API server without them gets the cluster-wide watch. */
  private async effectiveScope(): Promise<WatchScope> {
    if (this.options.scope === 'cluster') return 'cluster';
    const { pinned } = nodeSelectors(this.options.nodeName);
    for (;;) {
      try {
        await this.clients.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: kindInfo('VMFilter').plural, fieldSelector: pinned, limit: 1 });
        return 'node';
      } catch (err) {
        if (statusCodeOf(err) === 400) {
          this.log.warn(
            { err: String((err as Error)?.message ?? err) },
            'the API server cannot select VMFilters by spec.nodeName (Kubernetes < 1.31, or an old CRD): watching every VMFilter of the cluster',
          );
          return 'cluster';
        }
        if (this.stopped) return 'cluster';
        // Not reachable yet: the informers would retry the same way.
        this.log.warn({ err: String((err as Error)?.message ?? err) }, 'cannot list VMFilters yet; retrying');
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  private buildView(scope: WatchScope): MergedView {
    const informers = new Map<string, ResilientInformer<KubernetesObject>>();
    if (scope === 'cluster') informers.set('all', kindInformer(this.clients, 'VMFilter', this.log, this.metrics));
    else {
      for (const [label, fieldSelector] of Object.entries(nodeSelectors(this.options.nodeName))) {
        informers.set(label, kindInformer(this.clients, 'VMFilter', this.log, this.metrics, { fieldSelector, name: `VMFilter(${fieldSelector})` }));
      }
    }
    const view = new MergedView(informers);
    for (const h of this.vmHandlers) view.onChange(h);
    return view;
  }

  async start(): Promise<void> {
    this.stopped = false;
    const scope = await this.effectiveScope();
    this.log.info({ scope, node: this.options.nodeName }, 'watching VMFilters');
    this.view ??= this.buildView(scope);
    await Promise.all([this.services_.start(), this.departments_.start(), this.groups_.start(), this.view.start()]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([this.services_.stop(), this.departments_.stop(), this.groups_.stop(), this.view?.stop()]);
  }
}
