import type { KubernetesObject } from '@kubernetes/client-node';
import type { z } from 'zod';
import { KIND_SCHEMAS, formatPath, type KindName, type ObjectOf } from '../api/index.js';

export type Parsed<T> = { ok: true; value: T } | { ok: false; field: string; message: string };

/**
 * Parse results by object identity. An informer replaces an object on every update, so each version
 * is parsed once, however many reconciles and aggregates read it, and an entry goes with its object
 * (a WeakMap: nothing to forget by hand when 10,000 VMs come and go).
 */
const parsedOnce = new WeakMap<object, Parsed<unknown>>();

/**
 * Objects from the API server passed the CRD schema already; zod gives them types and defaults and
 * catches what a stale CRD might let through. A failure is reported in status, never thrown.
 */
export function parseObject<K extends KindName>(kind: K, raw: KubernetesObject): Parsed<ObjectOf<K>> {
  const hit = parsedOnce.get(raw);
  if (hit) return hit as Parsed<ObjectOf<K>>;
  const result = (KIND_SCHEMAS[kind] as z.ZodType).safeParse({ ...raw, kind });
  let parsed: Parsed<ObjectOf<K>>;
  if (result.success) parsed = { ok: true, value: result.data as ObjectOf<K> };
  else {
    const issue = result.error.issues[0]!;
    parsed = { ok: false, field: formatPath(issue.path), message: issue.message };
  }
  parsedOnce.set(raw, parsed);
  return parsed;
}
