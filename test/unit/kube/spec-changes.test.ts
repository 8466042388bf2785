import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { onSpecChange, type ResilientInformer } from '../../../src/kube/index.js';

function fakeInformer() {
  const handlers: Record<string, ((o: KubernetesObject) => void)[]> = { add: [], update: [], delete: [] };
  return {
    informer: { on: (e: string, h: (o: KubernetesObject) => void) => handlers[e]!.push(h) } as unknown as ResilientInformer<KubernetesObject>,
    emit: (e: 'add' | 'update' | 'delete', name: string, generation: number, status?: unknown) => handlers[e]!.forEach((h) => h({ metadata: { name, generation }, ...(status ? { status } : {}) } as KubernetesObject)),
  };
}

describe('onSpecChange', () => {
  it('reports additions, new generations and deletions, not status-only updates', () => {
    const { informer, emit } = fakeInformer();
    const seen: string[] = [];
    onSpecChange(informer, (o, change) => seen.push(`${o.metadata!.name}:${change}`));
    emit('add', 'a', 1);
    emit('update', 'a', 1, { vms: 3 });
    emit('update', 'a', 1, { vms: 4 });
    emit('update', 'a', 2);
    emit('delete', 'a', 2);
    emit('update', 'b', 5); // first sight through an update (a relist) counts as an addition
    emit('add', 'a', 1); // recreated
    expect(seen).toEqual(['a:added', 'a:changed', 'a:deleted', 'b:added', 'a:added']);
  });
});
