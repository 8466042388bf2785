import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { VmFilterIndex } from '../../../src/agent/vm-index.js';

const vm = (name: string, spec: Record<string, unknown>): KubernetesObject => ({ metadata: { name }, spec }) as KubernetesObject;

describe('VMFilter index of the agent', () => {
  it('finds VMFilters by domain name, by UUID (any case) and by department, and forgets old keys', () => {
    const index = new VmFilterIndex();
    index.set('a', vm('a', { domain: { name: 'web' }, department: 'eng' }));
    index.set('b', vm('b', { domain: { uuid: 'AAAAAAAA-0000-0000-0000-000000000001' }, department: 'eng' }));
    index.set('c', vm('c', { domain: { name: 'db' } }));
    expect([...index.naming({ name: 'web', uuid: 'aaaaaaaa-0000-0000-0000-000000000001' })].sort()).toEqual(['a', 'b']);
    expect([...index.members('eng')].sort()).toEqual(['a', 'b']);
    index.set('a', vm('a', { domain: { name: 'db' }, department: 'fin' }));
    expect([...index.naming({ name: 'web' })]).toEqual([]);
    expect([...index.naming({ name: 'db' })].sort()).toEqual(['a', 'c']);
    expect([...index.members('eng')]).toEqual(['b']);
    index.set('b', undefined);
    expect([...index.members('eng')]).toEqual([]);
    expect(index.size).toBe(2);
  });

  it("reads objects that today's schema refuses (a department that is not a string is no key)", () => {
    const index = new VmFilterIndex();
    index.set('x', vm('x', { domain: { name: 'web', bogus: 1 }, department: 7 }));
    expect([...index.naming({ name: 'web' })]).toEqual(['x']);
    expect(index.members('7').size).toBe(0);
  });
});
