import { parseManifests, type DepartmentPolicy, type ServicePolicy, type VMFilter } from '../../src/api/index.js';
import { readManifestFiles } from '../../src/cli/files.js';

export interface PrefixedExamples {
  services: ServicePolicy[];
  departments: DepartmentPolicy[];
  vms: VMFilter[];
  name: (original: string) => string;
}

/**
 * examples/ with every name and reference prefixed, so a test run owns its objects, filters and
 * domains even on a cluster and libvirtd that other runs (or the demo) use too.
 */
export function prefixedExamples(prefix: string): PrefixedExamples {
  const parsed = parseManifests(readManifestFiles(['examples']));
  if (parsed.errors.length) throw new Error(JSON.stringify(parsed.errors));
  const name = (n: string) => `${prefix}-${n}`;
  const meta = (m: { name: string }) => ({ name: name(m.name), labels: { test: prefix } });
  return {
    name,
    services: parsed.services.map((s) => ({ ...s, metadata: meta(s.metadata) })),
    departments: parsed.departments.map((d) => ({ ...d, metadata: meta(d.metadata), spec: { ...d.spec, services: d.spec.services.map((o) => ({ ...o, name: name(o.name) })) } })),
    vms: parsed.vms.map((v) => ({
      ...v,
      metadata: meta(v.metadata),
      spec: {
        ...v.spec,
        domain: { name: name(v.spec.domain.name!) },
        ...(v.spec.department ? { department: name(v.spec.department) } : {}),
        services: v.spec.services.map((o) => ({ ...o, name: name(o.name) })),
      },
    })),
  };
}
