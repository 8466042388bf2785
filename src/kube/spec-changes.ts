import type { KubernetesObject } from '@kubernetes/client-node';
import type { ResilientInformer } from './informer.js';

/**
 * Calls `handler` when an object is added, deleted, or its spec changed (a new
 * metadata.generation), and not for status-only updates: the controller writes the status of
 * services and departments often, and recompiling everything for each of those writes is work
 * out of proportion to the change.
 */
export function onSpecChange<T extends KubernetesObject>(informer: ResilientInformer<T>, handler: (obj: T, change: 'added' | 'changed' | 'deleted') => void): void {
  const generations = new Map<string, number | undefined>();
  const seen = (o: T, change: 'added' | 'changed'): void => {
    const name = o.metadata!.name!;
    const known = generations.has(name);
    const before = generations.get(name);
    generations.set(name, o.metadata?.generation);
    if (!known) handler(o, 'added');
    else if (before !== o.metadata?.generation) handler(o, change);
  };
  informer.on('add', (o) => seen(o, 'changed'));
  informer.on('update', (o) => seen(o, 'changed'));
  informer.on('delete', (o) => {
    generations.delete(o.metadata!.name!);
    handler(o, 'deleted');
  });
}
