// The Helm chart against the real API server: lint, template (default and non-default values),
// install, upgrade with a changed CRD, uninstall, and the RBAC of both service accounts.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubectl, kubectlOk, waitFor } from '../../helpers/kubectl.js';

const CHART = 'charts/nwfilter-operator';
const NS = `nwf-chart-${Date.now().toString(36)}`;
const RELEASE = `nwf${Date.now().toString(36).slice(-5)}`;
const CRDS = ['servicepolicies', 'departmentpolicies', 'vmfilters'].map((p) => `${p}.nwfilter.infinibay.io`);

function helm(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('helm', args, { encoding: 'utf8', env: process.env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function helmOk(...args: string[]): string {
  const r = helm(...args);
  if (r.code !== 0) throw new Error(`helm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
type K8sObject = { kind: string; metadata: { name: string; annotations?: Record<string, string> }; spec?: any; data?: Record<string, string> };
function render(...set: string[]): K8sObject[] {
  const out = helmOk('template', RELEASE, CHART, '--namespace', NS, ...set.flatMap((s) => ['--set', s]));
  return parseAllDocuments(out).map((d) => d.toJS() as K8sObject).filter(Boolean);
}
const ofKind = (objs: K8sObject[], kind: string) => objs.filter((o) => o.kind === kind);

describe('helm chart: lint and template', () => {
  it('lints clean', () => {
    expect(helmOk('lint', CHART)).toContain('0 chart(s) failed');
  });

  it('renders the defaults: CRDs kept on uninstall, 2 leader-elected controllers, a hardened agent, the catalog', () => {
    const objs = render();
    const crds = ofKind(objs, 'CustomResourceDefinition');
    expect(crds.map((c) => c.metadata.name).sort()).toEqual([...CRDS].sort());
    for (const c of crds) expect(c.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    const [deploy] = ofKind(objs, 'Deployment');
    expect(deploy!.spec.replicas).toBe(2);
    const ctl = deploy!.spec.template.spec.containers[0];
    expect(ctl.args).toEqual(expect.arrayContaining(['controller', '--leader-elect=true']));
    expect(deploy!.spec.template.spec.securityContext).toMatchObject({ runAsNonRoot: true });
    expect(ctl.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(ctl.livenessProbe.httpGet.path).toBe('/healthz');
    expect(ctl.readinessProbe.httpGet.path).toBe('/readyz');
    const [ds] = ofKind(objs, 'DaemonSet');
    const agent = ds!.spec.template.spec.containers[0];
    expect(agent.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
    expect(agent.args).toContain('--quarantine=true');
    expect(agent.securityContext).toMatchObject({ privileged: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(ds!.spec.template.spec.volumes).toContainEqual({ name: 'libvirt-run', hostPath: { path: '/var/run/libvirt', type: 'Directory' } });
    expect(ds!.spec.template.spec.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(ds!.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    expect(ofKind(objs, 'ServicePolicy')).toHaveLength(22);
    expect(ofKind(objs, 'PodDisruptionBudget')).toHaveLength(1);
    expect(ofKind(objs, 'ServiceMonitor')).toHaveLength(0);
    expect(ofKind(objs, 'ConfigMap')).toHaveLength(0);
  });

  it('renders non-default values', () => {
    const objs = render('catalog.enabled=false', 'crds.install=false', 'metrics.serviceMonitor.enabled=true', 'dashboard.enabled=true',
      'controller.replicas=3', 'agent.tolerations[0].key=vm-host', 'agent.tolerations[0].operator=Exists', 'agent.libvirtSocketDir=/run/libvirt', 'image.tag=1.2.3', 'agent.quarantine=false');
    expect(ofKind(objs, 'ServicePolicy')).toHaveLength(0);
    expect(ofKind(objs, 'CustomResourceDefinition')).toHaveLength(0);
    expect(ofKind(objs, 'ServiceMonitor')).toHaveLength(1);
    const [cm] = ofKind(objs, 'ConfigMap');
    const dashboard = JSON.parse(cm!.data!['nwfilter-operator.json']!) as { panels: { targets: { expr: string }[] }[] };
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(8);
    expect(dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)).join(' ')).toContain('nwfilter_operator_libvirt_call_duration_seconds_bucket');
    expect(ofKind(objs, 'Deployment')[0]!.spec.replicas).toBe(3);
    const ds = ofKind(objs, 'DaemonSet')[0]!.spec.template.spec;
    expect(ds.tolerations).toEqual([{ key: 'vm-host', operator: 'Exists' }]);
    expect(ds.containers[0].args).toContain('--libvirt-socket=/run/libvirt/libvirt-sock');
    expect(ds.containers[0].args).toContain('--quarantine=false');
    expect(ds.containers[0].image).toBe('ghcr.io/infinibay/nwfilter-operator:1.2.3');
  });

  it('refuses values the schema does not allow', () => {
    expect(helm('template', RELEASE, CHART, '--set', 'controller.replicas=0').stderr).toContain('/controller/replicas');
    expect(helm('template', RELEASE, CHART, '--set', 'agent.resyncPeriod=soon').stderr).toContain('/agent/resyncPeriod');
    expect(helm('template', RELEASE, CHART, '--set-string', 'agent.quarantine=maybe').stderr).toContain('/agent/quarantine');
    expect(helm('template', RELEASE, CHART, '--set', 'unknown=1').stderr).toContain("additional properties 'unknown' not allowed");
  });
});

describe('helm chart on the API server', () => {
  beforeAll(() => {
    kubectlOk(['create', 'namespace', NS]);
    // Other tests install the CRDs with kubectl: let this release adopt them (Helm's adoption labels).
    for (const crd of CRDS) {
      if (kubectl(['get', 'crd', crd]).code !== 0) continue;
      kubectlOk(['label', 'crd', crd, 'app.kubernetes.io/managed-by=Helm', '--overwrite']);
      kubectlOk(['annotate', 'crd', crd, `meta.helm.sh/release-name=${RELEASE}`, `meta.helm.sh/release-namespace=${NS}`, '--overwrite']);
    }
  });
  afterAll(() => {
    helm('uninstall', RELEASE, '-n', NS);
    // The catalog is a post-install hook: uninstall keeps it (by design). This run created it.
    kubectl(['delete', 'servicepolicies', '-l', 'nwfilter.infinibay.io/catalog=default']);
    kubectl(['delete', 'namespace', NS, '--wait=false']);
  });

  it('installs: objects created, CRDs established, the default catalog present', () => {
    helmOk('install', RELEASE, CHART, '-n', NS, '--wait=false');
    kubectlOk(['wait', '--for=condition=Established', ...CRDS.map((c) => `crd/${c}`), '--timeout=60s']);
    for (const kind of ['deployment', 'daemonset']) expect(kubectl(['get', kind, '-n', NS, '-o', 'name']).stdout).toContain('nwfilter-operator');
    for (const sa of ['controller', 'agent']) expect(kubectl(['get', 'sa', '-n', NS, `${RELEASE}-nwfilter-operator-${sa}`]).code).toBe(0);
    const catalog = kubectlOk(['get', 'servicepolicies', '-l', 'nwfilter.infinibay.io/catalog=default', '-o', 'name']).trim().split('\n');
    expect(catalog).toHaveLength(22);
    expect(catalog).toContain('servicepolicy.nwfilter.infinibay.io/ssh');
  });

  it.each([
    // [service account, verb, resource, allowed]
    ['controller', 'list', 'vmfilters.nwfilter.infinibay.io', true],
    ['controller', 'watch', 'departmentpolicies.nwfilter.infinibay.io', true],
    ['controller', 'patch', 'vmfilters.nwfilter.infinibay.io/status', true],
    ['controller', 'patch', 'vmfilters.nwfilter.infinibay.io', true],
    ['controller', 'create', 'events.events.k8s.io', true],
    ['controller', 'update', 'leases.coordination.k8s.io', true],
    ['controller', 'get', 'secrets', false],
    ['controller', 'list', 'secrets', false],
    ['controller', 'delete', 'vmfilters.nwfilter.infinibay.io', false],
    ['controller', 'create', 'pods', false],
    ['agent', 'list', 'servicepolicies.nwfilter.infinibay.io', true],
    ['agent', 'watch', 'vmfilters.nwfilter.infinibay.io', true],
    ['agent', 'patch', 'vmfilters.nwfilter.infinibay.io/status', true],
    ['agent', 'patch', 'vmfilters.nwfilter.infinibay.io', false],
    ['agent', 'patch', 'departmentpolicies.nwfilter.infinibay.io/status', false],
    ['agent', 'delete', 'vmfilters.nwfilter.infinibay.io', false],
    ['agent', 'create', 'events', false],
    ['agent', 'get', 'secrets', false],
    ['agent', 'update', 'leases.coordination.k8s.io', false],
  ] as const)('RBAC: %s may %s %s: %s', (sa, verb, resource, allowed) => {
    const [res, sub] = resource.split('/');
    const args = ['auth', 'can-i', verb, res!, ...(sub ? [`--subresource=${sub}`] : []), `--as=system:serviceaccount:${NS}:${RELEASE}-nwfilter-operator-${sa}`, '-n', NS];
    const r = kubectl(args);
    expect(r.stdout.trim()).toBe(allowed ? 'yes' : 'no');
  });

  it('upgrades a changed CRD', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nwf-chart-'));
    cpSync(CHART, join(dir, 'chart'), { recursive: true });
    const file = join(dir, 'chart/templates/crds/vmfilters.yaml');
    const changed = readFileSync(file, 'utf8').replace('      additionalPrinterColumns:\n', '      additionalPrinterColumns:\n        - name: UpgradeProbe\n          type: string\n          jsonPath: .spec.nodeName\n');
    expect(changed).toContain('UpgradeProbe');
    writeFileSync(file, changed);
    helmOk('upgrade', RELEASE, join(dir, 'chart'), '-n', NS);
    await waitFor('new printer column served', () => (kubectlOk(['get', 'crd', 'vmfilters.nwfilter.infinibay.io', '-o', 'jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}']).includes('UpgradeProbe') ? true : undefined), 30_000);
    // and back to the repository's version
    helmOk('upgrade', RELEASE, CHART, '-n', NS);
    expect(kubectlOk(['get', 'crd', 'vmfilters.nwfilter.infinibay.io', '-o', 'jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}'])).not.toContain('UpgradeProbe');
  });

  it('uninstalls: release objects gone, nothing stuck, CRDs kept', async () => {
    helmOk('uninstall', RELEASE, '-n', NS, '--wait', '--timeout', '60s');
    for (const kind of ['deployment', 'daemonset', 'serviceaccount', 'service', 'role', 'rolebinding', 'poddisruptionbudget']) {
      expect(kubectlOk(['get', kind, '-n', NS, '-l', `app.kubernetes.io/instance=${RELEASE}`, '-o', 'name']).trim(), kind).toBe('');
    }
    expect(kubectlOk(['get', 'clusterrole', '-l', `app.kubernetes.io/instance=${RELEASE}`, '-o', 'name']).trim()).toBe('');
    for (const crd of CRDS) expect(kubectl(['get', 'crd', crd]).code).toBe(0);
    const terminating = kubectlOk(['get', 'servicepolicies,departmentpolicies,vmfilters', '-o', 'jsonpath={.items[?(@.metadata.deletionTimestamp)].metadata.name}']).trim();
    expect(terminating).toBe('');
  });
});
