import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { VMFILTER_INPUTS } from '../../../src/controller/status.js';
import { ChangeFilter } from '../../../src/kube/change-filter.js';

type Over = { generation?: number; finalizers?: string[]; status?: Record<string, unknown>; annotations?: Record<string, string>; deletionTimestamp?: string };
// Objects as they come from the API server (JSON: timestamps are strings).
const vm = (over: Over): KubernetesObject =>
  ({
    metadata: { name: 'a', uid: 'u1', generation: over.generation ?? 1, finalizers: over.finalizers, annotations: over.annotations, deletionTimestamp: over.deletionTimestamp },
    status: over.status,
  }) as unknown as KubernetesObject;
const controllerStatus = { observedGeneration: 1, desiredHash: 'h1', conditions: [{ type: 'Accepted', status: 'True' }, { type: 'Ready', status: 'False' }] };

describe('ChangeFilter', () => {
  it("ignores the controller's own status; sees spec, deletion, annotations, the agent's fields and (for the controller) finalizers", () => {
    const agent = new ChangeFilter({ ...VMFILTER_INPUTS, finalizers: false });
    const controller = new ChangeFilter({ ...VMFILTER_INPUTS, finalizers: true });
    const both = (o: KubernetesObject | undefined) => [agent.changed('a', o), controller.changed('a', o)];
    expect(both(vm({}))).toEqual([true, true]);
    expect(both(vm({ status: controllerStatus }))).toEqual([false, false]);
    expect(both(vm({ status: { ...controllerStatus, desiredHash: 'h2' } }))).toEqual([false, false]);
    expect(both(vm({ finalizers: ['f'], status: controllerStatus }))).toEqual([false, true]);
    const applied = { ...controllerStatus, nodeName: 'n', conditions: [...controllerStatus.conditions, { type: 'Applied', status: 'True' }] };
    expect(both(vm({ finalizers: ['f'], status: applied }))).toEqual([true, true]);
    expect(both(vm({ finalizers: ['f'], status: { ...applied, nodeName: 'm' } }))).toEqual([true, true]);
    expect(both(vm({ generation: 2, finalizers: ['f'], status: { ...applied, nodeName: 'm' } }))).toEqual([true, true]);
    expect(both(vm({ generation: 2, finalizers: ['f'], annotations: { x: 'y' }, status: { ...applied, nodeName: 'm' } }))).toEqual([true, true]);
    expect(both(vm({ generation: 2, finalizers: ['f'], annotations: { x: 'y' }, deletionTimestamp: 't', status: { ...applied, nodeName: 'm' } }))).toEqual([true, true]);
    // Gone: always a change, and the name is forgotten.
    expect(both(undefined)).toEqual([true, true]);
    expect(agent.size + controller.size).toBe(0);
  });
});
