import { z } from 'zod';
import { GROUP, VERSION } from './common.js';
import { CATEGORY, KINDS, type KindInfo } from './kinds.js';

type JsonSchema = { [key: string]: unknown };

/**
 * zod emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema. The differences are
 * few and mechanical, so they are patched here rather than by hand in YAML:
 * - `additionalProperties: false` is not allowed beside `properties` (unknown fields are pruned, or
 *   rejected with fieldValidation=Strict, by the API server instead);
 * - zod's implicit ±2^53 integer bounds are noise;
 * - `$schema` is not accepted.
 */
export function toStructural(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toStructural);
  if (node === null || typeof node !== 'object') return node;
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node as JsonSchema)) {
    if (key === '$schema') continue;
    if (key === 'additionalProperties' && value === false) continue;
    if ((key === 'minimum' || key === 'maximum') && Math.abs(value as number) >= Number.MAX_SAFE_INTEGER) continue;
    out[key] = key === 'x-kubernetes-validations' || key === 'enum' || key === 'required' || key === 'default'
      ? value
      : toStructural(value);
  }
  return out;
}

export function openApiSchemaOf(schema: z.ZodType): JsonSchema {
  // io 'input' keeps defaulted fields optional and emits their `default`, which the API server applies.
  return toStructural(z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input' })) as JsonSchema;
}

export function crdFor(info: KindInfo): Record<string, unknown> {
  const spec = openApiSchemaOf(info.spec);
  const status = openApiSchemaOf(info.status);
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${info.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'nwfilter-operator', 'app.kubernetes.io/part-of': 'nwfilter-operator' },
    },
    spec: {
      group: GROUP,
      scope: 'Cluster',
      names: {
        kind: info.kind,
        listKind: `${info.kind}List`,
        plural: info.plural,
        singular: info.singular,
        shortNames: info.shortNames,
        categories: [CATEGORY],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: info.printerColumns,
          ...(info.selectableFields ? { selectableFields: info.selectableFields } : {}),
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: info.description,
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string', description: 'APIVersion of this object.' },
                kind: { type: 'string', description: 'Kind of this object.' },
                metadata: { type: 'object' },
                spec: spec,
                status: status,
              },
            },
          },
        },
      ],
    },
  };
}

export function allCrds(): { fileName: string; crd: Record<string, unknown> }[] {
  return KINDS.map((info) => ({ fileName: `${info.plural}.yaml`, crd: crdFor(info) }));
}
