import type { z } from 'zod';
import { AddressGroup, AddressGroupSpec, AddressGroupStatus } from './address-group.js';
import { DepartmentPolicy, DepartmentPolicySpec, DepartmentPolicyStatus } from './department-policy.js';
import { ServicePolicy, ServicePolicySpec, ServicePolicyStatus } from './service-policy.js';
import { VMFilter, VMFilterSpec, VMFilterStatus } from './vm-filter.js';

/**
 * The one registry of our kinds: the object schema of each. Kind names, object types, the CRDs
 * (KINDS below), manifest parsing and the typed caches are all derived from it.
 */
export const KIND_SCHEMAS = { ServicePolicy, DepartmentPolicy, VMFilter, AddressGroup } as const;
export type KindName = keyof typeof KIND_SCHEMAS;
/** The validated object type of a kind. */
export type ObjectOf<K extends KindName> = z.infer<(typeof KIND_SCHEMAS)[K]>;
export const KIND_NAMES = Object.keys(KIND_SCHEMAS) as KindName[];

export function isKindName(kind: unknown): kind is KindName {
  return typeof kind === 'string' && Object.hasOwn(KIND_SCHEMAS, kind);
}

export interface SelectableField {
  jsonPath: string;
}

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'boolean' | 'date' | 'number';
  jsonPath: string;
  description?: string;
  priority?: number;
}

/** Everything the CRD generator and the kube clients need to know about one kind. */
export interface KindInfo {
  kind: KindName;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  spec: z.ZodType;
  status: z.ZodType;
  printerColumns: PrinterColumn[];
  /** Fields list and watch requests may select on (`fieldSelector`), besides metadata.name. */
  selectableFields?: SelectableField[];
}

export const CATEGORY = 'nwfilter';

const ready: PrinterColumn = {
  name: 'Ready',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
  description: 'Whether the policy is realized everywhere it applies.',
};
const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

export const KINDS: readonly KindInfo[] = [
  {
    kind: 'ServicePolicy',
    plural: 'servicepolicies',
    singular: 'servicepolicy',
    shortNames: ['svcpol'],
    description: 'A network service (protocols and ports) and whether VMs may use or provide it by default.',
    spec: ServicePolicySpec,
    status: ServicePolicyStatus,
    printerColumns: [
      { name: 'Use', type: 'boolean', jsonPath: '.spec.use', description: 'Global default as client.' },
      { name: 'Provide', type: 'boolean', jsonPath: '.spec.provide', description: 'Global default as server.' },
      { name: 'Risk', type: 'string', jsonPath: '.spec.risk' },
      { name: 'VMs', type: 'integer', jsonPath: '.status.vms.desired' },
      ready,
      age,
    ],
  },
  {
    kind: 'DepartmentPolicy',
    plural: 'departmentpolicies',
    singular: 'departmentpolicy',
    shortNames: ['deptpol'],
    description: 'A group of VMs with per-service overrides and custom rules.',
    spec: DepartmentPolicySpec,
    status: DepartmentPolicyStatus,
    printerColumns: [
      { name: 'VMs', type: 'integer', jsonPath: '.status.vms.desired', description: 'VMs in the department.' },
      { name: 'Applied', type: 'integer', jsonPath: '.status.vms.applied' },
      { name: 'Failed', type: 'integer', jsonPath: '.status.vms.failed' },
      { name: 'Rules', type: 'integer', jsonPath: '.status.ruleCount', priority: 1 },
      ready,
      age,
    ],
  },
  {
    kind: 'VMFilter',
    plural: 'vmfilters',
    singular: 'vmfilter',
    shortNames: ['vmf'],
    description: 'The firewall of one libvirt domain.',
    spec: VMFilterSpec,
    status: VMFilterStatus,
    printerColumns: [
      { name: 'Domain', type: 'string', jsonPath: '.spec.domain.name' },
      { name: 'Department', type: 'string', jsonPath: '.spec.department' },
      { name: 'Node', type: 'string', jsonPath: '.status.nodeName' },
      { name: 'Rules', type: 'integer', jsonPath: '.status.ruleCount' },
      ready,
      { name: 'Hash', type: 'string', jsonPath: '.status.appliedHash', priority: 1 },
      age,
    ],
    // Each node's agent watches only the VMFilters pinned to its node, the unpinned ones and the
    // ones it holds (docs/architecture.md, "What an agent watches").
    selectableFields: [{ jsonPath: '.spec.nodeName' }, { jsonPath: '.status.nodeName' }],
  },
  {
    kind: 'AddressGroup',
    plural: 'addressgroups',
    singular: 'addressgroup',
    shortNames: ['addrgrp'],
    description: 'A named set of IPv4 and IPv6 addresses (and optionally VMs) that rules reference by name.',
    spec: AddressGroupSpec,
    status: AddressGroupStatus,
    printerColumns: [
      { name: 'IPv4', type: 'integer', jsonPath: '.status.ipv4', description: 'IPv4 entries.' },
      { name: 'IPv6', type: 'integer', jsonPath: '.status.ipv6', description: 'IPv6 entries.' },
      { name: 'Peers', type: 'integer', jsonPath: '.status.peerCount', description: 'VMs selected by spec.peers.' },
      ready,
      age,
    ],
  },
];

export function kindInfo(kind: KindName): KindInfo {
  return KINDS.find((k) => k.kind === kind)!;
}
