import type { KubernetesObject } from '@kubernetes/client-node';
import type { ResilientInformer } from '../kube/index.js';

/**
 * The field selectors of one node's agent (docs/architecture.md, "What an agent watches"): the
 * VMFilters pinned to its node, the unpinned ones (whichever node has the domain takes them) and
 * the ones it holds (its name in status.nodeName: a VM whose spec.nodeName was changed while its
 * domain is still here, until the domain leaves). A VMFilter pinned to another node and held by
 * another agent is never sent to this one, so 10,000 VMs elsewhere cost it nothing.
 */
export function nodeSelectors(nodeName: string): Record<'pinned' | 'unpinned' | 'held', string> {
  return { pinned: `spec.nodeName=${nodeName}`, unpinned: 'spec.nodeName=', held: `status.nodeName=${nodeName}` };
}

type Handler = (name: string, obj: KubernetesObject) => void;

/** True when `a` is a later version than `b` (etcd revisions are decimal; otherwise the latest event wins). */
function newer(a: KubernetesObject, b: KubernetesObject): boolean {
  const ra = a.metadata?.resourceVersion ?? '';
  const rb = b.metadata?.resourceVersion ?? '';
  if (/^\d+$/.test(ra) && /^\d+$/.test(rb)) return BigInt(ra) >= BigInt(rb);
  return true;
}

/**
 * One cache over several informers of the same kind with different selectors: an object is in the
 * view while at least one selector matches it. Leaving every selector is reported like a deletion
 * (the handler gets the last known object and `get` returns undefined); the agent then asks the
 * API server whether the object still exists, because an object that merely moved out of the view
 * must not be mistaken for a deleted one (its domain may still be here).
 */
export class MergedView {
  private readonly members = new Map<string, { obj: KubernetesObject; selectors: Set<string> }>();
  private readonly handlers: Handler[] = [];

  constructor(private readonly informers: ReadonlyMap<string, ResilientInformer<KubernetesObject>>) {
    for (const [selector, informer] of informers) {
      informer.on('add', (o) => this.upsert(selector, o));
      informer.on('update', (o) => this.upsert(selector, o));
      informer.on('delete', (o) => this.remove(selector, o));
    }
  }

  private upsert(selector: string, obj: KubernetesObject): void {
    const name = obj.metadata!.name!;
    const entry = this.members.get(name);
    if (!entry) this.members.set(name, { obj, selectors: new Set([selector]) });
    else {
      entry.selectors.add(selector);
      // A lagging watch may deliver an older version than another selector's.
      if (!newer(obj, entry.obj)) return;
      entry.obj = obj;
    }
    this.handlers.forEach((h) => h(name, obj));
  }

  private remove(selector: string, obj: KubernetesObject): void {
    const name = obj.metadata!.name!;
    const entry = this.members.get(name);
    if (!entry) return;
    entry.selectors.delete(selector);
    if (entry.selectors.size > 0) return;
    this.members.delete(name);
    this.handlers.forEach((h) => h(name, obj));
  }

  onChange(handler: Handler): void {
    this.handlers.push(handler);
  }

  get(name: string): KubernetesObject | undefined {
    return this.members.get(name)?.obj;
  }

  list(): KubernetesObject[] {
    return [...this.members.values()].map((e) => e.obj);
  }

  get size(): number {
    return this.members.size;
  }

  get synced(): boolean {
    return [...this.informers.values()].every((i) => i.synced);
  }

  async start(): Promise<void> {
    await Promise.all([...this.informers.values()].map((i) => i.start()));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.informers.values()].map((i) => i.stop()));
  }
}
