// An in-memory stand-in for the Kubernetes side of the agent (PolicySource + status sink), for
// unit and model-based tests. Objects are stored raw, like an informer cache: a test can store an
// object that today's schema refuses (as a tightened CRD leaves behind). Change notifications are
// delivered asynchronously, like watch events.
import type { KubernetesObject } from '@kubernetes/client-node';
import { randomUUID } from 'node:crypto';
import type { AddressGroup, DepartmentPolicy, ServicePolicy } from '../../src/api/index.js';
import type { PolicySource } from '../../src/agent/policy-source.js';
import type { StatusSink } from '../../src/agent/status-reporter.js';
import { parseObject } from '../../src/kube/index.js';

type Kind = 'ServicePolicy' | 'DepartmentPolicy' | 'VMFilter' | 'AddressGroup';
type Obj = KubernetesObject & { spec?: unknown; status?: Record<string, unknown> };

export class MemoryPolicySource implements PolicySource {
  readonly objects: Record<Kind, Map<string, Obj>> = { ServicePolicy: new Map(), DepartmentPolicy: new Map(), VMFilter: new Map(), AddressGroup: new Map() };
  private readonly vmHandlers: ((name: string, obj: KubernetesObject, prev: KubernetesObject | undefined) => void)[] = [];
  private readonly policyHandlers: ((kind: 'ServicePolicy' | 'DepartmentPolicy', obj: KubernetesObject) => void)[] = [];
  private readonly groupHandlers: ((obj: KubernetesObject, change: 'added' | 'changed' | 'deleted') => void)[] = [];
  private clock = Date.parse('2026-01-01T00:00:00Z');
  statusWrites = 0;
  /** Statuses written per VMFilter name, in order (for flip-flop checks). */
  readonly statusLog: { name: string; node: unknown; reason: unknown }[] = [];

  private notify(kind: Kind, obj: Obj, prev?: Obj): void {
    const name = obj.metadata!.name!;
    queueMicrotask(() => {
      if (kind === 'VMFilter') this.vmHandlers.forEach((h) => h(name, obj, prev));
      else if (kind === 'AddressGroup') {
        const change = !this.objects.AddressGroup.has(name) ? 'deleted' : prev ? 'changed' : 'added';
        this.groupHandlers.forEach((h) => h(obj, change));
      } else this.policyHandlers.forEach((h) => h(kind, obj));
    });
  }

  /** Creates or replaces the spec (and annotations) of an object; bumps generation on a spec change. */
  put(kind: Kind, obj: { metadata: { name: string; annotations?: Record<string, string> }; spec: unknown }): Obj {
    const prev = this.objects[kind].get(obj.metadata.name);
    const specChanged = !prev || JSON.stringify(prev.spec) !== JSON.stringify(obj.spec);
    this.clock += 1000;
    const next: Obj = {
      apiVersion: 'nwfilter.infinibay.io/v1alpha1',
      kind,
      metadata: {
        ...(prev?.metadata ?? { uid: randomUUID(), creationTimestamp: new Date(this.clock) }),
        name: obj.metadata.name,
        ...(obj.metadata.annotations ? { annotations: obj.metadata.annotations } : {}),
        generation: (prev?.metadata?.generation ?? 0) + (specChanged ? 1 : 0),
        resourceVersion: String(this.clock),
      },
      spec: structuredClone(obj.spec),
      ...(prev?.status ? { status: prev.status } : {}),
    };
    // Informer caches hold creationTimestamp as a string after JSON decoding.
    next.metadata!.creationTimestamp = String((next.metadata!.creationTimestamp as unknown as Date).toISOString?.() ?? next.metadata!.creationTimestamp) as never;
    this.objects[kind].set(obj.metadata.name, next);
    this.notify(kind, next, prev);
    return next;
  }

  delete(kind: Kind, name: string): void {
    const prev = this.objects[kind].get(name);
    if (!prev) return;
    this.objects[kind].delete(name);
    this.notify(kind, prev, prev);
  }

  /** The status sink for one node's agent (server-side apply reduced to "replace the agent's fields"). */
  sink(): StatusSink {
    return async (name, uid, fields) => {
      const obj = this.objects.VMFilter.get(name);
      if (!obj || (uid && obj.metadata?.uid !== uid)) return false;
      const conditions = ((obj.status?.conditions as { type: string }[] | undefined) ?? []).filter((c) => c.type !== 'Applied');
      const { conditions: applied, ...rest } = fields as { conditions: { type: string; reason: string }[] } & Record<string, unknown>;
      const status: Record<string, unknown> = { ...(obj.status ?? {}) };
      for (const k of ['nodeName', 'appliedHash', 'appliedGeneration']) delete status[k];
      const next: Obj = { ...obj, status: { ...status, ...rest, conditions: [...conditions, ...applied] } };
      this.objects.VMFilter.set(name, next);
      this.statusWrites++;
      this.statusLog.push({ name, node: rest.nodeName, reason: applied.find((c) => c.type === 'Applied')?.reason });
      this.notify('VMFilter', next, obj);
      return true;
    };
  }

  applied(name: string): { status: string; reason: string; message: string } | undefined {
    const conds = this.objects.VMFilter.get(name)?.status?.conditions as { type: string; status: string; reason: string; message: string }[] | undefined;
    return conds?.find((c) => c.type === 'Applied');
  }

  vmFilter(name: string): KubernetesObject | undefined {
    return this.objects.VMFilter.get(name);
  }
  vmFilters(): readonly KubernetesObject[] {
    return [...this.objects.VMFilter.values()];
  }
  fetches = 0;
  fetchVmFilter(name: string): Promise<KubernetesObject | undefined> {
    this.fetches++;
    return Promise.resolve(this.objects.VMFilter.get(name));
  }
  services(): readonly ServicePolicy[] {
    return this.valid('ServicePolicy') as ServicePolicy[];
  }
  departments(): readonly DepartmentPolicy[] {
    return this.valid('DepartmentPolicy') as DepartmentPolicy[];
  }
  addressGroups(): readonly AddressGroup[] {
    return this.valid('AddressGroup') as AddressGroup[];
  }
  onAddressGroupChange(handler: (obj: KubernetesObject, change: 'added' | 'changed' | 'deleted') => void): void {
    this.groupHandlers.push(handler);
  }
  private valid(kind: 'ServicePolicy' | 'DepartmentPolicy' | 'AddressGroup'): unknown[] {
    return [...this.objects[kind].values()].flatMap((o) => {
      const p = parseObject(kind, o);
      return p.ok ? [p.value] : [];
    });
  }
  synced(): boolean {
    return true;
  }
  onVmFilterChange(handler: (name: string, obj: KubernetesObject) => void): void {
    this.vmHandlers.push(handler);
  }
  onPolicyChange(handler: (kind: 'ServicePolicy' | 'DepartmentPolicy', obj: KubernetesObject) => void): void {
    this.policyHandlers.push(handler);
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  /**
   * One node's agent's view of this store (src/agent/vm-filter-view.ts): the VMFilters pinned to the
   * node, the unpinned ones and the ones it holds (status.nodeName). A change is delivered when the
   * object is in the view before or after it, as the API server's field-selected watches do (leaving
   * arrives as a deletion); fetchVmFilter reads the whole store, like a GET.
   */
  nodeView(node: string): PolicySource & { fetches: number } {
    const inView = (o: KubernetesObject | undefined): boolean => {
      if (!o) return false;
      const pinned = (o as Obj & { spec?: { nodeName?: unknown } }).spec?.nodeName;
      return pinned === node || pinned === undefined || pinned === '' || (o as Obj).status?.nodeName === node;
    };
    const store = this;
    return {
      fetches: 0,
      vmFilter: (name) => {
        const o = store.objects.VMFilter.get(name);
        return inView(o) ? o : undefined;
      },
      vmFilters: () => [...store.objects.VMFilter.values()].filter(inView),
      fetchVmFilter(name) {
        this.fetches++;
        return store.fetchVmFilter(name);
      },
      services: () => store.services(),
      departments: () => store.departments(),
      addressGroups: () => store.addressGroups(),
      onAddressGroupChange: (handler) => store.onAddressGroupChange(handler),
      synced: () => true,
      onVmFilterChange: (handler) => {
        store.vmHandlers.push((name, obj, prev) => {
          const deleted = !store.objects.VMFilter.has(name);
          if (inView(prev) || (!deleted && inView(obj))) handler(name, obj);
        });
      },
      onPolicyChange: (handler) => store.onPolicyChange(handler),
      start: async () => undefined,
      stop: async () => undefined,
    };
  }
}
