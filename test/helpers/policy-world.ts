// Random valid policies over a small world of ports and CIDRs, so that rules overlap, nest, touch
// and shadow each other often. Shared by the optimizer's model test and the packet suite's
// differential test, which differ only in the world (the lab's addresses and listening ports).
import fc from 'fast-check';
import type { PolicyInput } from '../../src/policy/index.js';
import { department, service, vm } from './builders.js';

export interface PolicyWorld {
  /** Ports rules and services use (ranges stay inside the last one). */
  ports: readonly number[];
  cidrs: readonly string[];
  serviceProtocols: readonly ('tcp' | 'udp' | 'sctp')[];
  /** Custom rule priorities are 0..maxPriority. */
  maxPriority: number;
  max: { services: number; servicePorts: number; rulePorts: number; departmentRules: number; vmRules: number };
  /** spec.parameters of the VM (e.g. its address on the lab). */
  vmParameters?: Record<string, string[]>;
}

const override = fc.constantFrom('allow', 'deny', 'inherit') as fc.Arbitrary<'allow' | 'deny' | 'inherit'>;

function portRange(w: PolicyWorld): fc.Arbitrary<{ port: number; endPort?: number }> {
  const port = fc.constantFrom(...w.ports);
  return fc.oneof(
    port.map((p) => ({ port: p })),
    fc.tuple(port, fc.integer({ min: 1, max: 4 })).map(([p, span]) => ({ port: p, endPort: Math.min(w.ports.at(-1)!, p + span) })),
  );
}

function servicePort(w: PolicyWorld) {
  return fc.oneof(
    {
      weight: 5,
      arbitrary: fc
        .record({ protocol: fc.constantFrom(...w.serviceProtocols), r: portRange(w), side: fc.constantFrom('server', 'client') as fc.Arbitrary<'server' | 'client'> })
        .map(({ protocol, r, side }) => ({ protocol, ...r, side })),
    },
    { weight: 1, arbitrary: fc.constant({ protocol: 'icmp' as const }) },
  );
}

function customRule(w: PolicyWorld) {
  return fc
    .record({
      action: fc.constantFrom('accept', 'drop', 'reject') as fc.Arbitrary<'accept' | 'drop' | 'reject'>,
      direction: fc.constantFrom('in', 'out', 'inout') as fc.Arbitrary<'in' | 'out' | 'inout'>,
      protocol: fc.constantFrom('tcp', 'udp', 'icmp', 'all') as fc.Arbitrary<'tcp' | 'udp' | 'icmp' | 'all'>,
      ports: fc.option(fc.array(portRange(w), { minLength: 1, maxLength: w.max.rulePorts }), { nil: undefined }),
      source: fc.option(fc.constantFrom(...w.cidrs), { nil: undefined, freq: 3 }),
      destination: fc.option(fc.constantFrom(...w.cidrs), { nil: undefined, freq: 3 }),
      priority: fc.integer({ min: 0, max: w.maxPriority }),
    })
    .map((r) => ({
      action: r.action,
      direction: r.direction,
      protocol: r.protocol,
      priority: r.priority,
      ...(r.ports && (r.protocol === 'tcp' || r.protocol === 'udp') ? { ports: r.ports } : {}),
      ...(r.source ? { source: r.source } : {}),
      ...(r.destination ? { destination: r.destination } : {}),
    }));
}

/** Services s0..sN, an optional department `d` (overrides, enforced rules, default) and VM `v1` in it. */
export function randomPolicy(w: PolicyWorld): fc.Arbitrary<PolicyInput> {
  const rule = customRule(w);
  return fc.integer({ min: 0, max: w.max.services }).chain((serviceCount) => {
    const names = Array.from({ length: serviceCount }, (_, i) => `s${i}`);
    const overrides = (enforced: boolean) =>
      fc.subarray(names).chain((picked) =>
        fc.tuple(
          ...picked.map((name) =>
            fc
              .record({ use: override, provide: override, enforced: fc.boolean() })
              .map((o) => ({ name, use: o.use, provide: o.provide, ...(enforced ? { enforced: o.enforced } : {}) })),
          ),
        ),
      );
    return fc
      .record({
        services: fc.tuple(
          ...names.map((name) =>
            fc
              .record({ ports: fc.array(servicePort(w), { minLength: 1, maxLength: w.max.servicePorts }), use: fc.boolean(), provide: fc.boolean() })
              .map((spec) => service(name, spec)),
          ),
        ),
        dept: fc.option(
          fc.record({
            services: overrides(true),
            rules: fc.array(fc.tuple(rule, fc.boolean()).map(([r, enforced]) => ({ ...r, enforced })), { maxLength: w.max.departmentRules }),
            defaultAction: fc.constantFrom('drop', 'reject') as fc.Arbitrary<'drop' | 'reject'>,
          }),
          { nil: undefined },
        ),
        vmServices: overrides(false),
        vmRules: fc.array(rule, { maxLength: w.max.vmRules }),
      })
      .map(({ services, dept, vmServices, vmRules }): PolicyInput => ({
        services: [...services],
        departments: dept ? [department('d', { services: [...dept.services], rules: dept.rules, defaultAction: dept.defaultAction })] : [],
        vms: [
          vm('v1', {
            ...(dept ? { department: 'd' } : {}),
            services: [...vmServices],
            rules: vmRules,
            ...(w.vmParameters ? { parameters: w.vmParameters } : {}),
          }),
        ],
      }));
  });
}
