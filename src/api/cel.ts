import type { z } from 'zod';

/**
 * A validation rule stated twice, side by side: as a CEL expression that the API server enforces
 * (x-kubernetes-validations in the generated CRD) and as a TypeScript predicate that zod enforces
 * for `render`, `explain` and the controller. Keeping both in one object is what stops them from
 * drifting apart; test/unit/api tests them against the same table of manifests.
 */
export interface CelRule<T> {
  /** CEL expression evaluated by kube-apiserver with `self` bound to the object. */
  rule: string;
  message: string;
  /** Path of the offending field relative to the object, used for both zod and CEL's fieldPath. */
  path?: readonly string[];
  /** The same rule in TypeScript. */
  holds: (value: T) => boolean;
}

export function withCel<S extends z.ZodType>(schema: S, rules: CelRule<z.output<S>>[]): S {
  let refined = schema;
  for (const r of rules) {
    refined = refined.refine((v) => r.holds(v as z.output<S>), {
      message: r.message,
      ...(r.path ? { path: [...r.path] } : {}),
    }) as S;
  }
  return refined.meta({
    'x-kubernetes-validations': rules.map((r) => ({
      rule: r.rule,
      message: r.message,
      ...(r.path ? { fieldPath: '.' + r.path.join('.') } : {}),
    })),
  }) as S;
}
