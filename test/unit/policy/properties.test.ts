import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chainOf, cidrContains, compilePolicy, evaluate, explainConnection, flatten, instantiateTree, type NwRule, type Packet } from '../../../src/policy/index.js';
import { packet, policyInput } from '../../helpers/arbitraries.js';
import { filtersOf } from '../../helpers/decide.js';

const RUNS = Number(process.env.FC_RUNS ?? 300);

/**
 * The documented meaning of a compiled rule for the first packet of an IPv4 connection, written
 * independently of libvirt's instantiation: same direction (inout: both), protocol, destination
 * port, addresses (source = remote for "in", the VM for "out"). Base rules (RELATED, ND) never
 * match a new connection.
 */
function ruleMeansConnection(rule: NwRule, p: Packet): boolean {
  if (rule.origin.kind === 'base') return false;
  if (rule.direction !== 'inout' && rule.direction !== p.direction) return false;
  if (rule.protocol !== 'all' && rule.protocol !== p.protocol) return false;
  if (rule.dstPortStart !== undefined && (p.port === undefined || p.port < rule.dstPortStart || p.port > (rule.dstPortEnd ?? rule.dstPortStart))) return false;
  const local = p.local ?? '192.0.2.254';
  const [src, dst] = p.direction === 'in' ? [p.remote!, local] : [local, p.remote!];
  if (rule.src && !cidrContains(rule.src, src)) return false;
  if (rule.dst && !cidrContains(rule.dst, dst)) return false;
  return true;
}

/** Every VM of `input` that compiles, with its root filter's name and the filters by name. */
function compiledVms(input: Parameters<typeof compilePolicy>[0]): { root: string; filters: ReturnType<typeof filtersOf> }[] {
  const compiled = compilePolicy(input);
  const filters = filtersOf(compiled);
  return [...compiled.vms.values()].flatMap((r) => (r.ok ? [{ root: r.filter.filter.name, filters }] : []));
}

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

  it('fails closed: the chains of every VM end in catch-all drops of all IPv4 and IPv6 in every chain', () => {
    fc.assert(
      fc.property(policyInput, fc.array(packet, { minLength: 1, maxLength: 10 }), (input, packets) => {
        for (const { root, filters } of compiledVms(input)) {
          const { rules } = flatten(root, filters);
          const tail = rules.slice(-2).map((l) => l.rule);
          expect(tail.map((t) => `${t.action} ${t.direction} ${t.protocol} ${t.state ?? ''}`)).toEqual(['drop inout all ', 'drop inout all-ipv6 ']);
          const { instances } = instantiateTree(root, filters);
          for (const family of [4, 6] as const) {
            for (const chain of ['FI', 'FO', 'HI'] as const) {
              const last = chainOf(instances, family, chain).at(-1)!;
              expect(last).toMatchObject({ protocol: 'all', target: 'DROP' });
              expect(last.ctstate ?? last.ctdir ?? last.source ?? last.destination).toBeUndefined();
            }
          }
          for (const p of packets) expect(evaluate(root, filters, p).rule).toBeDefined();
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('the kernel model decides a new connection exactly as the first policy rule that means it (documented semantics)', () => {
    fc.assert(
      fc.property(policyInput, fc.array(packet, { minLength: 1, maxLength: 10 }), (input, packets) => {
        for (const { root, filters } of compiledVms(input)) {
          const { rules } = flatten(root, filters);
          for (const p of packets) {
            const meant = rules.find(({ rule }) => ruleMeansConnection(rule, p));
            const d = evaluate(root, filters, p);
            expect(d.verdict).toBe(meant?.rule.action);
            expect(d.rule).toBe(meant?.rule);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('replies pass, and nothing but the first packet decides: open/refused/dropped follows the first verdict', () => {
    fc.assert(
      fc.property(policyInput, fc.array(packet, { minLength: 1, maxLength: 10 }), fc.boolean(), fc.boolean(), (input, packets, listening, host) => {
        for (const { root, filters } of compiledVms(input)) {
          for (const p of packets) {
            const remoteIsHost = host && p.direction === 'out';
            const first = evaluate(root, filters, { ...p, local: '10.1.1.1', remoteIsHost });
            const c = explainConnection(root, filters, {
              direction: p.direction,
              protocol: p.protocol,
              family: 4,
              ...(p.protocol === 'icmp' ? {} : { port: p.port }),
              vmAddress: '10.1.1.1',
              remoteAddress: p.remote,
              remoteIsHost,
              listening,
            });
            const expected = first.verdict === 'drop' ? 'dropped' : first.verdict === 'reject' ? 'refused' : listening || p.protocol === 'icmp' ? 'open' : 'refused';
            expect(c.outcome, JSON.stringify(c.steps.map((s) => [s.what, s.decision?.verdict]))).toBe(expected);
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
