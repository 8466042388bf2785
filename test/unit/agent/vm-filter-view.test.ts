import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { MergedView, nodeSelectors } from '../../../src/agent/vm-filter-view.js';
import type { ResilientInformer } from '../../../src/kube/index.js';

/** The part of an informer the view uses, driven by the test. */
class StubInformer {
  private readonly handlers: Record<string, ((o: KubernetesObject) => void)[]> = { add: [], update: [], delete: [] };
  synced = true;
  on(event: 'add' | 'update' | 'delete', h: (o: KubernetesObject) => void): void {
    this.handlers[event]!.push(h);
  }
  emit(event: 'add' | 'update' | 'delete', o: KubernetesObject): void {
    this.handlers[event]!.forEach((h) => h(o));
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

const obj = (name: string, rv: string): KubernetesObject => ({ metadata: { name, resourceVersion: rv } });

function view() {
  const pinned = new StubInformer();
  const held = new StubInformer();
  const v = new MergedView(new Map([['pinned', pinned], ['held', held]]) as unknown as ReadonlyMap<string, ResilientInformer<KubernetesObject>>);
  const events: string[] = [];
  v.onChange((name, o) => events.push(`${name}@${o.metadata!.resourceVersion}:${v.get(name) ? 'in' : 'out'}`));
  return { pinned, held, v, events };
}

describe("one node's view of VMFilters", () => {
  it('selects pinned-here, unpinned and held-here objects', () => {
    expect(nodeSelectors('n1')).toEqual({ pinned: 'spec.nodeName=n1', unpinned: 'spec.nodeName=', held: 'status.nodeName=n1' });
  });

  it('keeps an object while any selector matches and reports leaving the last one like a deletion', () => {
    const { pinned, held, v, events } = view();
    pinned.emit('add', obj('a', '5'));
    held.emit('add', obj('a', '6'));
    pinned.emit('delete', obj('a', '7'));
    expect(v.get('a')?.metadata?.resourceVersion).toBe('6');
    held.emit('delete', obj('a', '8'));
    expect(v.get('a')).toBeUndefined();
    expect(v.size).toBe(0);
    expect(events).toEqual(['a@5:in', 'a@6:in', 'a@8:out']);
  });

  it('ignores an older version delivered late by a lagging watch', () => {
    const { pinned, held, v, events } = view();
    pinned.emit('add', obj('a', '10'));
    held.emit('add', obj('a', '9'));
    expect(v.get('a')?.metadata?.resourceVersion).toBe('10');
    expect(events).toEqual(['a@10:in']);
  });
});
