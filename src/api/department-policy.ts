import { z } from 'zod';
import { Conditions, DepartmentRule, MAX_CUSTOM_RULES, ObjectMeta, ObjectName, Override, Realization } from './common.js';

export const DepartmentServiceOverride = z
  .object({
    name: ObjectName.describe('Name of the ServicePolicy.'),
    use: Override.default('inherit').describe('allow, deny, or inherit the global default for VMs as clients.'),
    provide: Override.default('inherit').describe('allow, deny, or inherit the global default for VMs as servers.'),
    enforced: z
      .boolean()
      .default(false)
      .describe('When true, VMs of the department cannot override this setting.'),
  })
  .strict();
export type DepartmentServiceOverride = z.infer<typeof DepartmentServiceOverride>;

export const DepartmentPolicySpec = z
  .object({
    displayName: z.string().max(100).optional().describe('Human-readable name.'),
    description: z.string().max(1000).optional(),
    services: z
      .array(DepartmentServiceOverride)
      .max(256)
      .default([])
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
      .describe('Per-service overrides of the global defaults for every VM of the department.'),
    rules: z
      .array(DepartmentRule)
      .max(MAX_CUSTOM_RULES)
      .default([])
      .describe('Custom rules for every VM of the department.'),
    cleanTraffic: z
      .boolean()
      .default(false)
      .describe("Reference libvirt's clean-traffic filter (MAC, IP and ARP anti-spoofing) for every VM."),
    defaultAction: z
      .enum(['drop', 'reject'])
      .default('drop')
      .describe('What happens to IP traffic that nothing allowed: drop (silently) or reject.'),
  })
  .strict()
  .describe('A group of VMs with per-service overrides and custom rules.');
export type DepartmentPolicySpec = z.infer<typeof DepartmentPolicySpec>;

export const DepartmentPolicyStatus = z.object({
  observedGeneration: z.number().int().min(0).optional(),
  conditions: Conditions.optional(),
  filterName: z.string().optional().describe('Name of the department\'s libvirt nwfilter.'),
  ruleCount: z.number().int().min(0).optional().describe('Rules in the department filter.'),
  vms: Realization.optional().describe('VMFilters that belong to the department.'),
});
export type DepartmentPolicyStatus = z.infer<typeof DepartmentPolicyStatus>;

export const DepartmentPolicy = z.looseObject({
  apiVersion: z.string(),
  kind: z.literal('DepartmentPolicy'),
  metadata: ObjectMeta,
  spec: DepartmentPolicySpec,
  status: DepartmentPolicyStatus.optional(),
});
export type DepartmentPolicy = z.infer<typeof DepartmentPolicy>;
