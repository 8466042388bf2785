// The generated CRDs on a real kube-apiserver: examples accepted, invalid manifests rejected with
// the field named, printer columns, the `nwfilter` category, and `kubectl explain`.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { INVALID_CASES } from '../../fixtures/invalid-manifests.js';
import { kubectl, kubectlOk } from '../../helpers/kubectl.js';

const CRDS = ['servicepolicies', 'departmentpolicies', 'vmfilters'].map((p) => `${p}.nwfilter.infinibay.io`);

/** `kind.group/name` of every document under examples/, as kubectl prints them. */
function exampleObjects(): string[] {
  const out: string[] = [];
  for (const sub of readdirSync('examples', { withFileTypes: true })) {
    if (!sub.isDirectory()) continue;
    for (const file of readdirSync(join('examples', sub.name)).filter((f) => /\.ya?ml$/.test(f))) {
      for (const doc of parseAllDocuments(readFileSync(join('examples', sub.name, file), 'utf8'))) {
        const o = doc.toJS() as { apiVersion?: string; kind?: string; metadata?: { name?: string } } | null;
        if (!o?.kind) continue;
        out.push(`${o.kind.toLowerCase()}.${(o.apiVersion ?? '').split('/')[0]}/${o.metadata?.name ?? ''}`);
      }
    }
  }
  return out;
}

beforeAll(() => {
  kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', 'crds/']);
  kubectlOk(['wait', '--for=condition=Established', ...CRDS.map((c) => `crd/${c}`), '--timeout=60s']);
});

describe('CRDs on the API server', () => {
  it('accept every example (server-side dry run)', () => {
    const expected = exampleObjects();
    // the catalog of issue 2 alone is 21 services; a broken parse must not pass with nothing to check
    expect(expected.length).toBeGreaterThanOrEqual(25);
    const out = kubectlOk(['apply', '--server-side', '--dry-run=server', '--validate=strict', '-R', '-f', 'examples/']);
    const applied = out.split('\n').filter((l) => l.includes('serverside-applied')).map((l) => l.split(' ')[0]);
    expect(applied.sort()).toEqual([...expected].sort());
  });

  it.each(INVALID_CASES)('rejects $name, naming the field', ({ manifest, field }) => {
    // --validate=strict makes unknown fields an error instead of pruning them silently. JSON with
    // \u escapes: YAML cannot carry U+FFFF at all, so kubectl would refuse it before the API server.
    const json = JSON.stringify(manifest).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
    const r = kubectl(['create', '--dry-run=server', '--validate=strict', '-f', '-'], json);
    expect(r.code, r.stdout).not.toBe(0);
    expect(r.stderr).toContain(field);
  });

  it('accepts comments in any script, emoji included (only what XML 1.0 forbids is refused)', () => {
    const manifest = { apiVersion: 'nwfilter.infinibay.io/v1alpha1', kind: 'VMFilter', metadata: { name: 'good-vm' }, spec: { domain: { name: 'd1' }, rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', comment: 'ünïcödé ✓ 日本語 😀' }] } };
    const r = kubectl(['create', '--dry-run=server', '--validate=strict', '-f', '-'], JSON.stringify(manifest));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('shows printer columns per kind and lists all three kinds under `kubectl get nwfilter`', () => {
    const name = `crdcols-${Date.now().toString(36)}`;
    kubectlOk(['apply', '--server-side', '-f', '-'], stringify({ apiVersion: 'nwfilter.infinibay.io/v1alpha1', kind: 'ServicePolicy', metadata: { name }, spec: { ports: [{ protocol: 'tcp', port: 22 }] } }) + '---\n' +
      stringify({ apiVersion: 'nwfilter.infinibay.io/v1alpha1', kind: 'DepartmentPolicy', metadata: { name }, spec: {} }) + '---\n' +
      stringify({ apiVersion: 'nwfilter.infinibay.io/v1alpha1', kind: 'VMFilter', metadata: { name }, spec: { domain: { name } } }));
    try {
      expect(kubectlOk(['get', 'servicepolicies', name]).split('\n')[0]).toMatch(/^NAME\s+USE\s+PROVIDE\s+RISK\s+VMS\s+READY\s+AGE/);
      expect(kubectlOk(['get', 'departmentpolicies', name]).split('\n')[0]).toMatch(/^NAME\s+VMS\s+APPLIED\s+FAILED\s+READY\s+AGE/);
      expect(kubectlOk(['get', 'vmfilters', name]).split('\n')[0]).toMatch(/^NAME\s+DOMAIN\s+DEPARTMENT\s+NODE\s+RULES\s+READY\s+AGE/);
      expect(kubectlOk(['get', 'vmf', name])).toContain(name);
      const all = kubectlOk(['get', 'nwfilter']);
      for (const kind of ['servicepolicy', 'departmentpolicy', 'vmfilter']) expect(all).toContain(`${kind}.nwfilter.infinibay.io/${name}`);
      // defaults applied by the API server from the schema
      const svc = JSON.parse(kubectlOk(['get', 'servicepolicy', name, '-o', 'json'])) as { spec: Record<string, unknown> };
      expect(svc.spec).toMatchObject({ use: false, provide: false, risk: 'medium' });
    } finally {
      kubectl(['delete', 'servicepolicy,departmentpolicy,vmfilter', name, '--wait=false']);
      // no controller runs here: drop the finalizer it would have handled, if any
      kubectl(['patch', 'vmfilter', name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
    }
  });

  it('explains fields with their descriptions', () => {
    expect(kubectlOk(['explain', 'vmfilter.spec.domain'])).toContain('The libvirt domain this filter protects.');
    expect(kubectlOk(['explain', 'servicepolicy.spec.use'])).toContain('VMs may use the service as clients');
    expect(kubectlOk(['explain', 'departmentpolicy.spec.rules.priority'])).toContain("Order within the level's priority band");
  });
});
