// Random valid policies over a small world of ports and CIDRs, so that rules overlap, nest, touch
// and shadow each other often. Shared by the optimizer's model test and the packet suite's
// differential test, which differ only in the world (the lab's addresses and listening ports).
import fc from 'fast-check';
import { API_VERSION, AddressGroup, IPV4_ONLY_ICMP, IPV6_ONLY_ICMP, type CustomRuleInput, type IcmpTypeName } from '../../src/api/index.js';
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
  /** IPv6 CIDRs for rules restricted to IPv6 (rules without them stay IPv4 or both families). */
  cidrs6?: readonly string[];
  /** AddressGroups rules may name (sourceGroup / destinationGroup). */
  groups?: readonly { name: string; addresses: readonly string[] }[];
  /** Rules may name the members of department `d` (sourcePeers / destinationPeers). */
  peers?: boolean;
  /** ICMP types (by name) rules and service ports may match; none: ICMP rules match every type. */
  icmpNames?: readonly IcmpTypeName[];
}

/** ICMP types a group rule may match (its set carries the type: requests only, api/common.ts). */
const GROUP_ICMP: readonly IcmpTypeName[] = ['echo-request', 'timestamp-request'];

const override = fc.constantFrom('allow', 'deny', 'inherit') as fc.Arbitrary<'allow' | 'deny' | 'inherit'>;

function portRange(w: PolicyWorld): fc.Arbitrary<{ port: number; endPort?: number }> {
  const port = fc.constantFrom(...w.ports);
  return fc.oneof(
    port.map((p) => ({ port: p })),
    fc.tuple(port, fc.integer({ min: 1, max: 4 })).map(([p, span]) => ({ port: p, endPort: Math.min(w.ports.at(-1)!, p + span) })),
  );
}

/** A named ICMP type that exists in the family (every name fits both families when none is given). */
const fitsFamily = (name: IcmpTypeName, f: 'ipv4' | 'ipv6' | undefined): boolean =>
  f === undefined || !(f === 'ipv4' ? IPV6_ONLY_ICMP : IPV4_ONLY_ICMP).includes(name);

const family = fc.option(fc.constantFrom('ipv4', 'ipv6') as fc.Arbitrary<'ipv4' | 'ipv6'>, { nil: undefined, freq: 2 });

function icmpMatch(w: PolicyWorld): fc.Arbitrary<{ name: IcmpTypeName } | undefined> {
  return w.icmpNames?.length ? fc.option(fc.constantFrom(...w.icmpNames).map((name) => ({ name })), { nil: undefined }) : fc.constant(undefined);
}

function servicePort(w: PolicyWorld) {
  const side = fc.constantFrom('server', 'client') as fc.Arbitrary<'server' | 'client'>;
  return fc.oneof(
    {
      weight: 5,
      arbitrary: fc
        .record({ protocol: fc.constantFrom(...w.serviceProtocols), r: portRange(w), side, family })
        .map(({ protocol, r, side, family: f }) => ({ protocol, ...r, side, ...(w.cidrs6 && f ? { family: f } : {}) })),
    },
    {
      weight: 1,
      arbitrary: fc.record({ icmp: icmpMatch(w), side, family }).map(({ icmp, side, family: f }) => ({
        protocol: 'icmp' as const,
        side,
        ...(w.cidrs6 && f ? { family: f } : {}),
        ...(icmp && fitsFamily(icmp.name, w.cidrs6 ? f : undefined) ? { icmp } : {}),
      })),
    },
  );
}

/**
 * A schema-valid custom rule: addresses of one family (the rule's, when it has one), at most one
 * group or peer selector, and only where a group can be matched (protocol all, ports, an ICMP request).
 */
function customRule(w: PolicyWorld) {
  const peersOrGroups = [
    ...(w.groups ?? []).map((g) => ({ group: g.name })),
    ...(w.peers ? [{ peers: { department: 'd' } }] : []),
  ];
  return fc
    .record({
      action: fc.constantFrom('accept', 'drop', 'reject') as fc.Arbitrary<'accept' | 'drop' | 'reject'>,
      direction: fc.constantFrom('in', 'out', 'inout') as fc.Arbitrary<'in' | 'out' | 'inout'>,
      protocol: fc.constantFrom('tcp', 'udp', 'icmp', 'all') as fc.Arbitrary<'tcp' | 'udp' | 'icmp' | 'all'>,
      family: w.cidrs6 ? family : fc.constant(undefined),
      icmp: icmpMatch(w),
      ports: fc.option(fc.array(portRange(w), { minLength: 1, maxLength: w.max.rulePorts }), { nil: undefined }),
      source: fc.option(fc.nat(), { nil: undefined, freq: 3 }),
      destination: fc.option(fc.nat(), { nil: undefined, freq: 3 }),
      set: peersOrGroups.length
        ? fc.option(fc.record({ which: fc.constantFrom(...peersOrGroups), side: fc.constantFrom('source', 'destination') as fc.Arbitrary<'source' | 'destination'>, icmp: fc.constantFrom(...GROUP_ICMP) }), { nil: undefined, freq: 2 })
        : fc.constant(undefined),
      priority: fc.integer({ min: 0, max: w.maxPriority }),
    })
    .map((r): CustomRuleInput => {
      const ported = r.protocol === 'tcp' || r.protocol === 'udp';
      const out: Record<string, unknown> = { action: r.action, direction: r.direction, protocol: r.protocol, priority: r.priority };
      if (r.family) out.family = r.family;
      if (r.protocol === 'icmp' && r.icmp && fitsFamily(r.icmp.name, r.family)) out.icmp = r.icmp;
      if (r.ports && ported) out.ports = r.ports;
      const pool = r.family === 'ipv6' ? (w.cidrs6 ?? []) : w.cidrs;
      if (pool.length > 0) {
        if (r.source !== undefined) out.source = pool[r.source % pool.length];
        if (r.destination !== undefined) out.destination = pool[r.destination % pool.length];
      }
      if (r.set) {
        // A group rule: protocol all, ports, or an ICMP request; the set takes one side's place.
        if (ported && !out.ports) out.ports = [{ port: w.ports[0]! }];
        if (r.protocol === 'icmp') out.icmp = { name: fitsFamily(r.set.icmp, r.family) ? r.set.icmp : 'echo-request' };
        delete out[r.set.side];
        const key = 'group' in r.set.which ? `${r.set.side}Group` : `${r.set.side}Peers`;
        out[key] = 'group' in r.set.which ? r.set.which.group : r.set.which.peers;
      }
      return out as unknown as CustomRuleInput;
    });
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
        addressGroups: (w.groups ?? []).map((g) =>
          AddressGroup.parse({ apiVersion: API_VERSION, kind: 'AddressGroup', metadata: { name: g.name }, spec: { addresses: [...g.addresses] } }),
        ),
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
