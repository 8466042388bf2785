import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PolicyIndex, compilePolicy } from '../../../src/policy/index.js';
import { policyInput } from '../../helpers/arbitraries.js';

describe('PolicyIndex (incremental compilation used by controller and agent)', () => {
  it('gives exactly what compilePolicy gives, VM by VM', () => {
    fc.assert(
      fc.property(policyInput, (input) => {
        const full = compilePolicy(input);
        const index = new PolicyIndex({ services: () => input.services, departments: () => input.departments });
        for (const vm of input.vms) {
          const a = full.vms.get(vm.metadata.name)!;
          const b = index.vm(vm);
          expect(b.ok).toBe(a.ok);
          if (a.ok && b.ok) {
            expect(b.hash).toBe(a.hash);
            expect(b.tree).toEqual(a.tree);
            expect(b.effectiveServices).toEqual(a.effectiveServices);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('recompiles after invalidate() and memoizes per uid and generation otherwise', () => {
    let services = [] as Parameters<typeof compilePolicy>[0]['services'][number][];
    const index = new PolicyIndex({ services: () => services, departments: () => [] });
    const vm = { apiVersion: 'nwfilter.infinibay.io/v1alpha1', kind: 'VMFilter' as const, metadata: { name: 'v', uid: 'u1', generation: 1 }, spec: { domain: { name: 'v' }, services: [], rules: [] } };
    const first = index.vm(vm);
    expect(index.vm(vm)).toBe(first);
    services = [{ apiVersion: 'nwfilter.infinibay.io/v1alpha1', kind: 'ServicePolicy', metadata: { name: 's' }, spec: { risk: 'low', ports: [{ protocol: 'tcp', port: 1, side: 'server' }], use: true, provide: false } }];
    expect(index.vm(vm)).toBe(first); // not invalidated yet: the cached context is used
    index.invalidate();
    const second = index.vm(vm);
    expect(second).not.toBe(first);
    expect(second.ok && first.ok && second.hash !== first.hash).toBe(true);
  });
});
