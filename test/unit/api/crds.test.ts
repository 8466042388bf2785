import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderChartFiles } from '../../../hack/chart-files.js';
import { renderCrdFiles } from '../../../hack/crd-files.js';

type Node = Record<string, unknown>;

/** Kubernetes' structural-schema rules that matter for generated schemas. */
function structuralProblems(node: Node, path: string): string[] {
  const out: string[] = [];
  if (node['x-kubernetes-int-or-string'] !== true && node['x-kubernetes-preserve-unknown-fields'] !== true && typeof node.type !== 'string') {
    out.push(`${path}: no type`);
  }
  if (node.properties && node.additionalProperties !== undefined) out.push(`${path}: properties and additionalProperties`);
  for (const key of ['anyOf', 'oneOf', 'allOf', '$ref', '$schema']) if (key in node) out.push(`${path}: ${key}`);
  for (const [k, v] of Object.entries((node.properties ?? {}) as Record<string, Node>)) out.push(...structuralProblems(v, `${path}.${k}`));
  if (node.items) out.push(...structuralProblems(node.items as Node, `${path}[]`));
  if (node.additionalProperties && typeof node.additionalProperties === 'object') {
    out.push(...structuralProblems(node.additionalProperties as Node, `${path}{}`));
  }
  return out;
}

describe('generated CRDs', () => {
  const files = renderCrdFiles();

  it('crds/ is up to date with src/api (run `npm run gen:crds`)', () => {
    for (const { fileName, text } of files) {
      expect(readFileSync(join('crds', fileName), 'utf8'), `crds/${fileName} is stale`).toBe(text);
    }
  });

  it("the chart's copies of the CRDs and of the catalog are up to date (run `npm run gen:crds`)", () => {
    for (const { path, text } of renderChartFiles()) expect(readFileSync(path, 'utf8'), `${path} is stale`).toBe(text);
  });

  it('are structural, with status subresource, printer columns, category and short names', async () => {
    const { parse } = await import('yaml');
    for (const { fileName, text } of files) {
      const crd = parse(text) as { spec: { names: { categories: string[]; shortNames: string[] }; versions: Node[] } };
      expect(crd.spec.names.categories, fileName).toEqual(['nwfilter']);
      expect(crd.spec.names.shortNames.length, fileName).toBeGreaterThan(0);
      const version = crd.spec.versions[0]!;
      expect(version.subresources).toEqual({ status: {} });
      const columns = (version.additionalPrinterColumns as { name: string }[]).map((c) => c.name);
      expect(columns).toEqual(expect.arrayContaining(['Ready', 'Age']));
      const schema = (version.schema as { openAPIV3Schema: Node }).openAPIV3Schema;
      expect(structuralProblems(schema, fileName)).toEqual([]);
    }
  });

  it('VMFilter shows Node and Rules; DepartmentPolicy shows the VM count', async () => {
    const { parse } = await import('yaml');
    const columns = (f: string) =>
      ((parse(files.find((x) => x.fileName === f)!.text) as { spec: { versions: { additionalPrinterColumns: { name: string }[] }[] } }).spec.versions[0]!.additionalPrinterColumns).map((c) => c.name);
    expect(columns('vmfilters.yaml')).toEqual(expect.arrayContaining(['Node', 'Rules']));
    expect(columns('departmentpolicies.yaml')).toEqual(expect.arrayContaining(['VMs']));
  });

  it('carries CEL rules and field descriptions', () => {
    const vm = files.find((x) => x.fileName === 'vmfilters.yaml')!.text;
    expect(vm).toContain('rule: has(self.name) != has(self.uuid)');
    expect(vm).toContain('description: libvirt domain name.');
    const svc = files.find((x) => x.fileName === 'servicepolicies.yaml')!.text;
    expect(svc).toMatch(/self.endPort >= self.port/);
  });
});
