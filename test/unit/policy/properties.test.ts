import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compilePolicy, evaluate, flatten, ruleMatches } from '../../../src/policy/index.js';
import { packet, policyInput } from '../../helpers/arbitraries.js';
import { filtersOf } from '../../helpers/decide.js';

const RUNS = Number(process.env.FC_RUNS ?? 300);

function snapshot(input: Parameters<typeof compilePolicy>[0]) {
  const c = compilePolicy(input);
  return {
    filters: [...c.filters].map(([n, f]) => [n, f.xml]).sort(),
    vms: [...c.vms].map(([n, v]) => [n, v.ok ? v.hash : v.diagnostics]).sort(),
  };
}

describe('compiler properties (fast-check)', () => {
  it('is total: never throws on schema-valid input, and every VM with resolvable references compiles', () => {
    fc.assert(
      fc.property(policyInput, (input) => {
        const compiled = compilePolicy(input);
        for (const vm of input.vms) {
          const r = compiled.vms.get(vm.metadata.name)!;
          expect(r.ok, JSON.stringify(r.ok ? '' : r.diagnostics)).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('is deterministic, and independent of the order resources arrive in', () => {
    fc.assert(
      fc.property(policyInput, (input) => {
        const a = snapshot(input);
        const b = snapshot(input);
        const c = snapshot({ services: [...input.services].reverse(), departments: [...input.departments].reverse(), vms: [...input.vms].reverse() });
        expect(b).toEqual(a);
        expect(c).toEqual(a);
      }),
      { numRuns: RUNS },
    );
  });

  it('fails closed: a packet that no accept/return rule matches is dropped or rejected', () => {
    fc.assert(
      fc.property(policyInput, fc.array(packet, { minLength: 1, maxLength: 10 }), (input, packets) => {
        const compiled = compilePolicy(input);
        const filters = filtersOf(compiled);
        for (const r of compiled.vms.values()) {
          if (!r.ok) continue;
          const { rules } = flatten(r.filter.filter.name, filters);
          // The flattened chain of every VM ends in catch-all drops/rejects of all IPv4 and all IPv6.
          const tail = rules.slice(-2).map((l) => l.rule);
          for (const last of tail) expect(['drop', 'reject']).toContain(last.action);
          expect(tail.map((r) => `${r.direction} ${r.protocol}`)).toEqual(['inout all', 'inout all-ipv6']);
          for (const p of packets) {
            const d = evaluate(r.filter.filter.name, filters, p);
            const permitted = rules.some(({ rule }) => (rule.action === 'accept' || rule.action === 'return') && ruleMatches(rule, p));
            if (!permitted) expect(['drop', 'reject']).toContain(d.verdict);
            expect(d.rule).toBeDefined();
          }
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('keeps every priority inside libvirt\'s range and every filter valid', () => {
    fc.assert(
      fc.property(policyInput, (input) => {
        const compiled = compilePolicy(input);
        expect(compiled.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
        for (const f of compiled.filters.values()) {
          for (const r of f.filter.rules) {
            expect(r.priority).toBeGreaterThanOrEqual(-1000);
            expect(r.priority).toBeLessThanOrEqual(1000);
            expect(r.comment.length).toBeLessThanOrEqual(256);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });
});
