import type { KubernetesObject } from '@kubernetes/client-node';
import { z as zod } from 'zod';
import { KIND_NAMES, KIND_SCHEMAS, formatPath, type KindName, type ObjectOf } from '../api/index.js';

export type Parsed<T> = { ok: true; value: T } | { ok: false; field: string; message: string };

/**
 * Parse results by object identity. An informer replaces an object on every update, so each version
 * is parsed once, however many reconciles and aggregates read it, and an entry goes with its object
 * (a WeakMap: nothing to forget by hand when 10,000 VMs come and go).
 */
const parsedOnce = new WeakMap<object, Parsed<unknown>>();

/**
 * The schemas for objects read from the API server. Their status is kept as the server has it,
 * shared with the cached object rather than copied: it is written only through the status
 * subresource, which the CRD's schema validates, and at 10,000 VMFilters a second copy of every
 * status (effective services, conditions) was the largest part of the controller's heap.
 */
const FROM_SERVER = Object.fromEntries(
  KIND_NAMES.map((k) => [k, (KIND_SCHEMAS[k] as unknown as zod.ZodObject).extend({ status: zod.unknown().optional() })]),
) as unknown as Record<KindName, zod.ZodType>;

/**
 * Objects from the API server passed the CRD schema already; zod gives them types and defaults and
 * catches what a stale CRD might let through. A failure is reported in status, never thrown.
 */
export function parseObject<K extends KindName>(kind: K, raw: KubernetesObject): Parsed<ObjectOf<K>> {
  const hit = parsedOnce.get(raw);
  if (hit) return hit as Parsed<ObjectOf<K>>;
  const result = FROM_SERVER[kind].safeParse({ ...raw, kind });
  let parsed: Parsed<ObjectOf<K>>;
  if (result.success) parsed = { ok: true, value: result.data as ObjectOf<K> };
  else {
    const issue = result.error.issues[0]!;
    parsed = { ok: false, field: formatPath(issue.path), message: issue.message };
  }
  parsedOnce.set(raw, parsed);
  return parsed;
}
