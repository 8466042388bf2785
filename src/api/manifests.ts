import { parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import type { AddressGroup } from './address-group.js';
import { API_VERSION } from './common.js';
import type { DepartmentPolicy } from './department-policy.js';
import { KIND_NAMES, KIND_SCHEMAS, isKindName, type KindName } from './kinds.js';
import type { ServicePolicy } from './service-policy.js';
import type { VMFilter } from './vm-filter.js';

export interface ManifestError {
  source: string;
  kind?: string;
  name?: string;
  /** Dotted path of the offending field, e.g. spec.ports[0].endPort. */
  field?: string;
  message: string;
}

export interface ParsedManifests {
  services: ServicePolicy[];
  departments: DepartmentPolicy[];
  vms: VMFilter[];
  addressGroups: AddressGroup[];
  errors: ManifestError[];
}

type Kind = KindName;

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

/** Validates one object of our kinds; the error names the resource and the field. */
export function parseResource(source: string, raw: unknown): { kind: Kind; value: unknown } | ManifestError {
  const obj = (raw ?? {}) as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } };
  const kind = typeof obj.kind === 'string' ? obj.kind : undefined;
  const name = typeof obj.metadata?.name === 'string' ? obj.metadata.name : undefined;
  if (!isKindName(kind)) {
    const expected = `${KIND_NAMES.slice(0, -1).join(', ')} or ${KIND_NAMES.at(-1)}`;
    return { source, ...(kind ? { kind } : {}), ...(name ? { name } : {}), message: `unsupported kind "${kind ?? '(none)'}": expected ${expected}` };
  }
  if (obj.apiVersion !== API_VERSION) {
    return { source, kind, ...(name ? { name } : {}), field: 'apiVersion', message: `apiVersion must be ${API_VERSION}` };
  }
  const result = (KIND_SCHEMAS[kind] as z.ZodType).safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    return { source, kind, ...(name ? { name } : {}), field: formatPath(issue.path), message: issue.message };
  }
  return { kind, value: result.data };
}

/** Parses multi-document YAML; every document must be one of our kinds. */
export function parseManifests(files: readonly { source: string; text: string }[]): ParsedManifests {
  const out: ParsedManifests = { services: [], departments: [], vms: [], addressGroups: [], errors: [] };
  const seen = new Set<string>();
  for (const file of files) {
    for (const doc of parseAllDocuments(file.text)) {
      if (doc.errors.length > 0) {
        out.errors.push({ source: file.source, message: `YAML: ${doc.errors[0]!.message}` });
        continue;
      }
      const raw: unknown = doc.toJS();
      if (raw === null || raw === undefined) continue;
      const parsed = parseResource(file.source, raw);
      if ('message' in parsed) {
        out.errors.push(parsed);
        continue;
      }
      const value = parsed.value as { metadata: { name: string } };
      const key = `${parsed.kind}/${value.metadata.name}`;
      if (seen.has(key)) {
        out.errors.push({ source: file.source, kind: parsed.kind, name: value.metadata.name, message: `duplicate ${key}` });
        continue;
      }
      seen.add(key);
      if (parsed.kind === 'ServicePolicy') out.services.push(value as ServicePolicy);
      else if (parsed.kind === 'DepartmentPolicy') out.departments.push(value as DepartmentPolicy);
      else if (parsed.kind === 'VMFilter') out.vms.push(value as VMFilter);
      else out.addressGroups.push(value as AddressGroup);
    }
  }
  return out;
}

export function formatManifestError(e: ManifestError): string {
  const what = e.kind ? `${e.kind}${e.name ? `/${e.name}` : ''}` : 'document';
  return `${e.source}: ${what}${e.field ? ` ${e.field}` : ''}: ${e.message}`;
}
