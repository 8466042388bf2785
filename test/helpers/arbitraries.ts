import fc from 'fast-check';
import type { DepartmentPolicy, ServicePolicy, VMFilter } from '../../src/api/index.js';
import type { PolicyInput } from '../../src/policy/index.js';
import { department, service, vm } from './builders.js';

const override = fc.constantFrom('allow', 'deny', 'inherit') as fc.Arbitrary<'allow' | 'deny' | 'inherit'>;
const port = fc.integer({ min: 1, max: 65535 });
const cidr = fc
  .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 32 }))
  .map(([a, b, p]) => `10.${a}.${b}.0/${p}`);

const portRange = fc.tuple(port, fc.option(fc.integer({ min: 0, max: 2000 }), { nil: undefined })).map(([p, span]) =>
  span === undefined ? { port: p } : { port: p, endPort: Math.min(65535, p + span) },
);

const side = fc.constantFrom('server', 'client') as fc.Arbitrary<'server' | 'client'>;
const servicePort = fc.oneof(
  fc
    .record({ protocol: fc.constantFrom('tcp', 'udp', 'sctp') as fc.Arbitrary<'tcp' | 'udp' | 'sctp'>, range: portRange, side })
    .map(({ protocol, range, side }) => ({ protocol, ...range, side })),
  side.map((s) => ({ protocol: 'icmp' as const, side: s })),
);

export const customRule = fc
  .record({
    action: fc.constantFrom('accept', 'drop', 'reject') as fc.Arbitrary<'accept' | 'drop' | 'reject'>,
    direction: fc.constantFrom('in', 'out', 'inout') as fc.Arbitrary<'in' | 'out' | 'inout'>,
    protocol: fc.constantFrom('tcp', 'udp', 'sctp', 'icmp', 'all') as fc.Arbitrary<'tcp' | 'udp' | 'sctp' | 'icmp' | 'all'>,
    ports: fc.option(fc.array(portRange, { minLength: 1, maxLength: 3 }), { nil: undefined }),
    source: fc.option(cidr, { nil: undefined }),
    destination: fc.option(cidr, { nil: undefined }),
    priority: fc.integer({ min: 0, max: 99 }),
    comment: fc.option(fc.string({ maxLength: 200 }), { nil: undefined }),
  })
  .map((r) => {
    const out: Record<string, unknown> = { action: r.action, direction: r.direction, protocol: r.protocol, priority: r.priority };
    if (r.ports && ['tcp', 'udp', 'sctp'].includes(r.protocol)) out.ports = r.ports;
    if (r.source) out.source = r.source;
    if (r.destination) out.destination = r.destination;
    if (r.comment !== undefined) out.comment = r.comment;
    return out;
  });

/** A schema-valid set of policies whose references all resolve. */
export const policyInput: fc.Arbitrary<PolicyInput> = fc
  .record({
    serviceCount: fc.integer({ min: 0, max: 6 }),
    deptCount: fc.integer({ min: 0, max: 3 }),
    vmCount: fc.integer({ min: 1, max: 4 }),
  })
  .chain(({ serviceCount, deptCount, vmCount }) => {
    const serviceNames = Array.from({ length: serviceCount }, (_, i) => `svc-${i}`);
    const deptNames = Array.from({ length: deptCount }, (_, i) => `dept-${i}`);
    const overrides = (withEnforced: boolean) =>
      fc.subarray(serviceNames).chain((names) =>
        fc.tuple(...names.map((name) => fc.record({ use: override, provide: override, enforced: fc.boolean() }).map((o) => ({ name, use: o.use, provide: o.provide, ...(withEnforced ? { enforced: o.enforced } : {}) })))),
      );
    return fc.record({
      services: fc.tuple(
        ...serviceNames.map((name) =>
          fc.record({ ports: fc.array(servicePort, { minLength: 1, maxLength: 3 }), use: fc.boolean(), provide: fc.boolean() }).map((spec): ServicePolicy => service(name, spec)),
        ),
      ),
      departments: fc.tuple(
        ...deptNames.map((name) =>
          fc
            .record({
              services: overrides(true),
              rules: fc.array(fc.record({ rule: customRule, enforced: fc.boolean() }).map(({ rule, enforced }) => ({ ...rule, enforced })), { maxLength: 3 }),
              cleanTraffic: fc.boolean(),
              defaultAction: fc.constantFrom('drop', 'reject') as fc.Arbitrary<'drop' | 'reject'>,
            })
            .map((spec): DepartmentPolicy => department(name, spec as never)),
        ),
      ),
      vms: fc.tuple(
        ...Array.from({ length: vmCount }, (_, i) =>
          fc
            .record({
              department: fc.option(fc.constantFrom(...(deptNames.length ? deptNames : ['none'])), { nil: undefined }),
              services: overrides(false),
              rules: fc.array(customRule, { maxLength: 4 }),
            })
            .map(({ department: d, ...spec }): VMFilter => vm(`vm-${i}`, { ...(d && d !== 'none' ? { department: d } : {}), ...spec } as never)),
        ),
      ),
    });
  });

export const packet = fc.record({
  direction: fc.constantFrom('in', 'out') as fc.Arbitrary<'in' | 'out'>,
  protocol: fc.constantFrom('tcp', 'udp', 'sctp', 'icmp') as fc.Arbitrary<'tcp' | 'udp' | 'sctp' | 'icmp'>,
  port: port,
  remote: fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 })).map(([a, b]) => `10.${a}.${b}.7`),
});
