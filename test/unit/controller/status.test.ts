import { describe, expect, it } from 'vitest';
import { departmentControllerStatus, realization, vmControllerStatus, vmState } from '../../../src/controller/status.js';
import { compilePolicy } from '../../../src/policy/index.js';
import { department, service, vm } from '../../helpers/builders.js';

const now = new Date('2026-11-23T00:00:00Z');

function compiled(withDept = true) {
  const input = {
    services: [service('ssh', { ports: [{ protocol: 'tcp', port: 22 }] })],
    departments: withDept ? [department('d')] : [],
    vms: [vm('v', { department: 'd' })],
  };
  return { input, result: compilePolicy(input).vms.get('v')! };
}

describe('VMFilter status', () => {
  it('is Ready only when the agent applied the hash the controller compiled', () => {
    const { input, result } = compiled();
    const v = { ...input.vms[0]!, metadata: { ...input.vms[0]!.metadata, generation: 3 } };
    expect(vmState(result, v)).toMatchObject({ state: 'pending', reason: 'Pending' });
    const applied = (hash: string, status: 'True' | 'False' = 'True', reason = 'Applied') => ({
      ...v,
      status: { nodeName: 'n1', appliedHash: hash, conditions: [{ type: 'Applied', status, reason, message: 'm', lastTransitionTime: '2026-01-01T00:00:00Z' }] },
    });
    expect(result.ok).toBe(true);
    const hash = result.ok ? result.hash : '';
    expect(vmState(result, applied('sha256:old'))).toMatchObject({ state: 'pending', reason: 'Applying' });
    expect(vmState(result, applied(hash))).toMatchObject({ state: 'ready', reason: 'Applied' });
    expect(vmState(result, applied(hash, 'False', 'LibvirtError'))).toMatchObject({ state: 'failed', reason: 'LibvirtError' });

    const status = vmControllerStatus(applied(hash), result, now);
    expect(status).toMatchObject({ observedGeneration: 3, filterName: 'nwf-vm-v', desiredHash: hash });
    const conditions = status.conditions as { type: string; status: string; observedGeneration: number }[];
    expect(conditions.map((c) => [c.type, c.status, c.observedGeneration])).toEqual([
      ['Accepted', 'True', 3],
      ['Ready', 'True', 3],
    ]);
  });

  it('keeps the agent-owned Applied condition out of what the controller writes', () => {
    const { input, result } = compiled();
    const v = { ...input.vms[0]!, status: { conditions: [{ type: 'Applied', status: 'True' as const, reason: 'Applied', message: '', lastTransitionTime: 'x' }] } };
    const conditions = vmControllerStatus(v, result, now).conditions as { type: string }[];
    expect(conditions.map((c) => c.type)).toEqual(['Accepted', 'Ready']);
  });

  it('reports an invalid reference in Accepted and Ready, and omits the desired hash', () => {
    const { input, result } = compiled(false);
    const status = vmControllerStatus(input.vms[0]!, result, now);
    expect(status.desiredHash).toBeUndefined();
    expect(status.conditions).toEqual([
      expect.objectContaining({ type: 'Accepted', status: 'False', reason: 'DepartmentNotFound', message: expect.stringContaining('spec.department') }),
      expect.objectContaining({ type: 'Ready', status: 'False', reason: 'DepartmentNotFound', message: expect.stringContaining('last applied filter stays') }),
    ]);
  });
});

describe('aggregated status', () => {
  it('counts realization', () => {
    expect(realization(['ready', 'pending', 'failed', 'invalid', 'ready'])).toEqual({ desired: 5, applied: 2, failed: 2 });
  });

  it('department Ready follows its members', () => {
    const d = department('d');
    const result = compilePolicy({ services: [], departments: [d], vms: [] }).departments.get('d')!;
    const ready = (states: Parameters<typeof realization>[0]) =>
      (departmentControllerStatus(d, result, realization(states), now).conditions as { type: string; status: string; reason: string }[]).find((c) => c.type === 'Ready');
    expect(ready([])).toMatchObject({ status: 'True', reason: 'NoVMs' });
    expect(ready(['ready', 'ready'])).toMatchObject({ status: 'True', reason: 'AllApplied' });
    expect(ready(['ready', 'pending'])).toMatchObject({ status: 'False', reason: 'Pending' });
    expect(ready(['ready', 'failed'])).toMatchObject({ status: 'False', reason: 'SomeFailed' });
  });
});
