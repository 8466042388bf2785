import { describe, expect, it } from 'vitest';
import { formatPath, parseManifests, parseResource } from '../../../src/api/index.js';
import { readManifestFiles } from '../../../src/cli/files.js';
import { INVALID_CASES } from '../../fixtures/invalid-manifests.js';

describe('zod schemas', () => {
  it('accept every example manifest', () => {
    const parsed = parseManifests(readManifestFiles(['examples']));
    expect(parsed.errors).toEqual([]);
    expect(parsed.services.length).toBeGreaterThanOrEqual(21);
    expect(parsed.departments.length).toBeGreaterThanOrEqual(2);
    expect(parsed.vms.length).toBeGreaterThanOrEqual(3);
  });

  it('has at least 25 invalid cases', () => expect(INVALID_CASES.length).toBeGreaterThanOrEqual(25));

  it.each(INVALID_CASES)('rejects $name, naming the field', ({ manifest, field }) => {
    const result = parseResource('test', manifest);
    expect('message' in result, 'should be rejected').toBe(true);
    if (!('message' in result)) return;
    expect(`${result.field ?? ''} ${result.message}`).toContain(field);
    expect(result.kind).toBe(manifest.kind);
  });

  it('applies defaults the way the API server does', () => {
    const r = parseResource('t', {
      apiVersion: 'nwfilter.infinibay.io/v1alpha1',
      kind: 'DepartmentPolicy',
      metadata: { name: 'd' },
      spec: { rules: [{ action: 'accept', direction: 'in', protocol: 'all' }] },
    });
    expect(r).toMatchObject({
      value: { spec: { services: [], cleanTraffic: false, defaultAction: 'drop', rules: [{ priority: 50, enforced: false }] } },
    });
  });

  it('reports duplicate resources and unknown kinds with their source', () => {
    const text = [
      'apiVersion: nwfilter.infinibay.io/v1alpha1\nkind: VMFilter\nmetadata: {name: a}\nspec: {domain: {name: a}}',
      'apiVersion: nwfilter.infinibay.io/v1alpha1\nkind: VMFilter\nmetadata: {name: a}\nspec: {domain: {name: a}}',
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}',
    ].join('\n---\n');
    const parsed = parseManifests([{ source: 'f.yaml', text }]);
    expect(parsed.errors.map((e) => e.message)).toEqual(['duplicate VMFilter/a', expect.stringContaining('unsupported kind "ConfigMap"')]);
  });

  it('formats paths like kubectl', () => {
    expect(formatPath(['spec', 'rules', 3, 'ports', 0, 'endPort'])).toBe('spec.rules[3].ports[0].endPort');
  });
});
