import {
  API_VERSION,
  DepartmentPolicy,
  ServicePolicy,
  VMFilter,
  type DepartmentPolicySpec,
  type ServicePolicySpec,
  type VMFilterSpec,
} from '../../src/api/index.js';
import type { z } from 'zod';

/** Builders that go through the zod schemas, so tests see exactly what the compiler sees (defaults applied). */
export function service(name: string, spec: z.input<typeof ServicePolicySpec>): ServicePolicy {
  return ServicePolicy.parse({ apiVersion: API_VERSION, kind: 'ServicePolicy', metadata: { name }, spec });
}
export function department(name: string, spec: z.input<typeof DepartmentPolicySpec> = {}): DepartmentPolicy {
  return DepartmentPolicy.parse({ apiVersion: API_VERSION, kind: 'DepartmentPolicy', metadata: { name }, spec });
}
export function vm(name: string, spec: Partial<z.input<typeof VMFilterSpec>> = {}): VMFilter {
  return VMFilter.parse({ apiVersion: API_VERSION, kind: 'VMFilter', metadata: { name }, spec: { domain: { name }, ...spec } });
}
export type { ServicePolicySpec, DepartmentPolicySpec, VMFilterSpec };
