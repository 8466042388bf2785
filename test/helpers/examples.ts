import { parseManifests, type AddressGroup, type CustomRule, type DepartmentPolicy, type ServicePolicy, type VMFilter } from '../../src/api/index.js';
import { readManifestFiles } from '../../src/cli/files.js';

export interface PrefixedExamples {
  services: ServicePolicy[];
  departments: DepartmentPolicy[];
  vms: VMFilter[];
  addressGroups: AddressGroup[];
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
  // Labels of the examples stay (a vmSelector peer matches them); the test label is added.
  const meta = (m: { name: string; labels?: Record<string, string> | undefined }) => ({ name: name(m.name), labels: { ...m.labels, test: prefix } });
  // Rules name groups and departments: those references get the prefix too.
  const rules = <R extends CustomRule>(list: R[]): R[] =>
    list.map((r) => ({
      ...r,
      ...(r.sourceGroup ? { sourceGroup: name(r.sourceGroup) } : {}),
      ...(r.destinationGroup ? { destinationGroup: name(r.destinationGroup) } : {}),
      ...(r.sourcePeers?.department ? { sourcePeers: { department: name(r.sourcePeers.department) } } : {}),
      ...(r.destinationPeers?.department ? { destinationPeers: { department: name(r.destinationPeers.department) } } : {}),
    }));
  return {
    name,
    addressGroups: parsed.addressGroups.map((g) => ({ ...g, metadata: meta(g.metadata) })),
    services: parsed.services.map((s) => ({ ...s, metadata: meta(s.metadata) })),
    departments: parsed.departments.map((d) => ({
      ...d,
      metadata: meta(d.metadata),
      spec: { ...d.spec, services: d.spec.services.map((o) => ({ ...o, name: name(o.name) })), rules: rules(d.spec.rules) },
    })),
    vms: parsed.vms.map((v) => ({
      ...v,
      metadata: meta(v.metadata),
      spec: {
        ...v.spec,
        domain: { name: name(v.spec.domain.name!) },
        ...(v.spec.department ? { department: name(v.spec.department) } : {}),
        services: v.spec.services.map((o) => ({ ...o, name: name(o.name) })),
        rules: rules(v.spec.rules),
      },
    })),
  };
}
