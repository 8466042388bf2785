import type { KubernetesObject } from '@kubernetes/client-node';
import { DepartmentPolicy, ServicePolicy, VMFilter, formatPath } from '../api/index.js';
import type { z } from 'zod';

const SCHEMAS = { ServicePolicy, DepartmentPolicy, VMFilter } as const;

export type Parsed<T> = { ok: true; value: T } | { ok: false; field: string; message: string };

/**
 * Objects from the API server passed the CRD schema already; zod gives them types and defaults and
 * catches what a stale CRD might let through. A failure is reported in status, never thrown.
 */
export function parseObject<K extends keyof typeof SCHEMAS>(kind: K, raw: KubernetesObject): Parsed<z.infer<(typeof SCHEMAS)[K]>> {
  const result = (SCHEMAS[kind] as z.ZodType).safeParse({ ...raw, kind });
  if (result.success) return { ok: true, value: result.data as z.infer<(typeof SCHEMAS)[K]> };
  const issue = result.error.issues[0]!;
  return { ok: false, field: formatPath(issue.path), message: issue.message };
}
