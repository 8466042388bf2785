import { z } from 'zod';
import { withCel } from './cel.js';
import {
  Conditions,
  CustomRule,
  Ipv4Address,
  Ipv6Address,
  MAX_CUSTOM_RULES,
  MacAddress,
  ObjectMeta,
  ObjectName,
  Override,
} from './common.js';

const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** The libvirt domain, by exactly one of name or UUID. */
export const DomainRef = withCel(
  z
    .object({
      name: z.string().min(1).max(200).optional().describe('libvirt domain name.'),
      uuid: z.string().regex(UUID_PATTERN, 'must be a UUID').optional().describe('libvirt domain UUID.'),
    })
    .strict(),
  [
    {
      rule: 'has(self.name) != has(self.uuid)',
      message: 'exactly one of name or uuid must be set',
      holds: (v) => (v.name === undefined) !== (v.uuid === undefined),
    },
  ],
);
export type DomainRef = z.infer<typeof DomainRef>;

export const VMServiceOverride = z
  .object({
    name: ObjectName.describe('Name of the ServicePolicy.'),
    use: Override.default('inherit').describe('allow, deny, or inherit (department, then global) as client.'),
    provide: Override.default('inherit').describe('allow, deny, or inherit (department, then global) as server.'),
  })
  .strict();
export type VMServiceOverride = z.infer<typeof VMServiceOverride>;

/** Values passed to the filter as libvirt filter parameters ($IP, $MAC). */
export const FilterParameters = z
  .object({
    ip: z
      .array(Ipv4Address)
      .max(16)
      .optional()
      .describe('IPv4 addresses of the VM (libvirt parameter IP, used by clean-traffic; peer selectors resolve to them).'),
    ipv6: z
      .array(Ipv6Address)
      .max(16)
      .optional()
      .describe(
        'IPv6 addresses of the VM (libvirt parameter IPV6; peer selectors resolve to them). With cleanTraffic, the only IPv6 sources ' +
          'the VM may send from: list its link-local address (fe80::...) too, or neighbour discovery fails.',
      ),
    mac: MacAddress.optional().describe('MAC address (libvirt parameter MAC); default: the interface\'s own.'),
  })
  .strict();
export type FilterParameters = z.infer<typeof FilterParameters>;

export const VMFilterSpec = z
  .object({
    domain: DomainRef.describe('The libvirt domain this filter protects.'),
    nodeName: z
      .string()
      .max(253)
      .optional()
      .describe('Node that runs the domain; when empty, the agent whose libvirtd has the domain takes it.'),
    department: ObjectName.optional().describe('Name of the DepartmentPolicy the VM belongs to.'),
    services: z
      .array(VMServiceOverride)
      .max(256)
      .default([])
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
      .describe('Per-service overrides; they beat the department unless the department enforces.'),
    rules: z.array(CustomRule).max(MAX_CUSTOM_RULES).default([]).describe('Custom rules of this VM.'),
    parameters: FilterParameters.optional().describe('libvirt filter parameters for the interfaces.'),
    interfaces: z
      .array(MacAddress)
      .max(16)
      .optional()
      .describe('MAC addresses of the interfaces to protect; default: every interface of the domain.'),
  })
  .strict()
  .describe('The firewall of one libvirt domain.');
export type VMFilterSpec = z.infer<typeof VMFilterSpec>;

export const EffectiveSource = z.enum(['vm', 'department', 'department-enforced', 'global']);
export type EffectiveSource = z.infer<typeof EffectiveSource>;

export const EffectiveService = z.object({
  name: z.string(),
  use: z.boolean(),
  useSource: EffectiveSource,
  provide: z.boolean(),
  provideSource: EffectiveSource,
});
export type EffectiveService = z.infer<typeof EffectiveService>;

export const VMFilterStatus = z.object({
  observedGeneration: z.number().int().min(0).optional(),
  conditions: Conditions.optional(),
  nodeName: z.string().optional().describe('Node whose agent applied the filter.'),
  filterName: z.string().optional().describe('Name of the VM\'s root libvirt nwfilter.'),
  ruleCount: z.number().int().min(0).optional().describe('Rules in the flattened filter tree of the VM.'),
  desiredHash: z.string().optional().describe('Hash of the desired filter tree (controller).'),
  appliedHash: z.string().optional().describe('Hash of the filter tree the agent applied.'),
  appliedGeneration: z.number().int().min(0).optional().describe('Generation the agent applied.'),
  effectiveServices: z
    .array(EffectiveService)
    .optional()
    .describe('Every service with its effective use/provide and the level each came from.'),
});
export type VMFilterStatus = z.infer<typeof VMFilterStatus>;

export const VMFilter = z.looseObject({
  apiVersion: z.string(),
  kind: z.literal('VMFilter'),
  metadata: ObjectMeta,
  spec: VMFilterSpec,
  status: VMFilterStatus.optional(),
});
export type VMFilter = z.infer<typeof VMFilter>;
