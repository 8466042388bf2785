import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Aggregates, type Contribution } from '../../../src/controller/aggregates.js';
import { realization, type VmState } from '../../../src/controller/status.js';

const STATES: VmState[] = ['ready', 'pending', 'failed', 'invalid'];
const contribution = fc.option(
  fc.record({
    department: fc.option(fc.constantFrom('eng', 'fin'), { nil: undefined }),
    services: fc.uniqueArray(fc.constantFrom('ssh', 'rdp', 'http'), { maxLength: 3 }),
    state: fc.constantFrom(...STATES),
  }),
  { nil: undefined },
);

describe('incremental department and service counts', () => {
  it('always equal a full recount over every VM, whatever the order of changes', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('vm0', 'vm1', 'vm2', 'vm3'), contribution), { maxLength: 40 }), (changes) => {
        const agg = new Aggregates();
        const truth = new Map<string, Contribution>();
        for (const [vm, c] of changes) {
          agg.set(vm, c);
          if (c) truth.set(vm, c);
          else truth.delete(vm);
        }
        const all = [...truth.values()];
        for (const d of ['eng', 'fin']) expect(agg.department(d)).toEqual(realization(all.filter((c) => c.department === d).map((c) => c.state)));
        for (const s of ['ssh', 'rdp', 'http']) expect(agg.service(s)).toEqual(realization(all.filter((c) => c.services.includes(s)).map((c) => c.state)));
        expect(agg.vms).toBe(truth.size);
      }),
    );
  });

  it('names exactly the aggregates a change touches, and none for an unchanged contribution', () => {
    const agg = new Aggregates();
    expect(agg.set('vm', { department: 'eng', services: ['ssh'], state: 'pending' })).toEqual({ departments: ['eng'], services: ['ssh'] });
    expect(agg.set('vm', { department: 'eng', services: ['ssh'], state: 'pending' })).toEqual({ departments: [], services: [] });
    expect(agg.set('vm', { department: 'fin', services: ['ssh', 'rdp'], state: 'ready' })).toEqual({ departments: ['eng', 'fin'], services: ['ssh', 'rdp'] });
    expect(agg.set('vm', undefined)).toEqual({ departments: ['fin'], services: ['ssh', 'rdp'] });
    expect(agg.department('fin')).toEqual({ desired: 0, applied: 0, failed: 0 });
  });
});
