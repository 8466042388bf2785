// The Helm chart against the real API server: lint, template (default and non-default values, long
// names, alerts), install, upgrade with a changed CRD, a reinstall that keeps the edited catalog,
// uninstall, and the RBAC of both service accounts.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_REASON } from '../../../src/agent/status-reporter.js';
import { createMetrics } from '../../../src/runtime/metrics.js';
import { kubectl, kubectlOk, waitFor } from '../../helpers/kubectl.js';

const CHART = 'charts/nwfilter-operator';
const NS = `nwf-chart-${Date.now().toString(36)}`;
const RELEASE = `nwf${Date.now().toString(36).slice(-5)}`;
const CRDS = ['servicepolicies', 'departmentpolicies', 'vmfilters', 'addressgroups'].map((p) => `${p}.nwfilter.infinibay.io`);

function helm(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('helm', args, { encoding: 'utf8', env: process.env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function helmOk(...args: string[]): string {
  const r = helm(...args);
  if (r.code !== 0) throw new Error(`helm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
type K8sObject = {
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
};
function renderAs(release: string, ...set: string[]): K8sObject[] {
  const out = helmOk('template', release, CHART, '--namespace', NS, ...set.flatMap((s) => ['--set', s]));
  return parseAllDocuments(out).map((d) => d.toJS() as K8sObject).filter(Boolean);
}
const render = (...set: string[]) => renderAs(RELEASE, ...set);
const ofKind = (objs: K8sObject[], kind: string) => objs.filter((o) => o.kind === kind);
const hasPromtool = spawnSync('promtool', ['--version']).status === 0;

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
    expect(deploy!.spec.template.spec.priorityClassName).toBeUndefined();
    const [ds] = ofKind(objs, 'DaemonSet');
    const pod = ds!.spec.template.spec;
    const agent = pod.containers[0];
    expect(agent.env).toEqual([{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }]);
    expect(agent.args).toEqual(expect.arrayContaining(['--quarantine=true', '--libvirt-socket=/var/run/libvirt/libvirt-sock', '--libvirt-uri=qemu:///system']));
    expect(pod.securityContext).toEqual({ runAsUser: 0, runAsGroup: 0, seccompProfile: { type: 'RuntimeDefault' } });
    // Kernel IP sets (address groups) by default: the host's network namespace and CAP_NET_ADMIN, nothing more.
    expect(agent.securityContext).toEqual({ privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] } });
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(agent.args).toContain('--kernel-sets=ipset');
    // Only labelled hypervisors, no tolerate-everything, the socket directory read-only.
    expect(pod.nodeSelector).toEqual({ 'nwfilter.infinibay.io/hypervisor': 'true' });
    expect(pod.tolerations).toBeUndefined();
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.volumes).toContainEqual({ name: 'libvirt-run', hostPath: { path: '/var/run/libvirt', type: 'Directory' } });
    expect(agent.volumeMounts).toEqual([{ name: 'libvirt-run', mountPath: '/var/run/libvirt', readOnly: true }]);
    expect(ds!.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    // `helm template` has no cluster: lookup answers empty and the whole catalog renders.
    const catalog = ofKind(objs, 'ServicePolicy');
    expect(catalog).toHaveLength(25);
    for (const c of catalog) {
      expect(c.metadata.annotations).toMatchObject({ 'helm.sh/hook': 'post-install', 'helm.sh/hook-delete-policy': 'hook-failed' });
    }
    expect(ofKind(objs, 'PodDisruptionBudget')).toHaveLength(1);
    expect(ofKind(objs, 'ServiceMonitor')).toHaveLength(0);
    expect(ofKind(objs, 'PrometheusRule')).toHaveLength(0);
    expect(ofKind(objs, 'ConfigMap')).toHaveLength(0);
  });

  it('kernelSets off: no host network and no capability at all', () => {
    const [ds] = ofKind(render('agent.kernelSets=off'), 'DaemonSet');
    const pod = ds!.spec.template.spec;
    expect(pod.hostNetwork).toBeUndefined();
    expect(pod.containers[0].securityContext.capabilities).toEqual({ drop: ['ALL'] });
    expect(pod.containers[0].args).toContain('--kernel-sets=off');
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
    expect(ds.containers[0].volumeMounts).toEqual([{ name: 'libvirt-run', mountPath: '/run/libvirt', readOnly: true }]);
  });

  it('renders the platform values: modular libvirt, SELinux, OpenShift, priorities, extra flags and environment', () => {
    const objs = render(
      'agent.libvirtSocketName=virtqemud-sock',
      'agent.libvirtUri=lxc:///system',
      'agent.securityContext.seLinuxOptions.type=spc_t',
      'agent.podSecurityContext.seLinuxOptions.level=s0',
      'agent.priorityClassName=',
      'agent.nodeSelector=null',
      'agent.extraArgs={--log-level=debug}',
      'agent.extraEnv[0].name=NWF_LOG_LEVEL',
      'agent.extraEnv[0].value=debug',
      'controller.priorityClassName=infra',
      'controller.podSecurityContext.runAsUser=null',
      'controller.podSecurityContext.runAsGroup=null',
      'controller.extraArgs={--lease-duration=30s,--renew-deadline=20s}',
      'controller.extraEnv[0].name=TZ',
      'controller.extraEnv[0].value=UTC',
    );
    const ds = ofKind(objs, 'DaemonSet')[0]!.spec.template.spec;
    const agent = ds.containers[0];
    expect(agent.args).toEqual(expect.arrayContaining(['--libvirt-socket=/var/run/libvirt/virtqemud-sock', '--libvirt-uri=lxc:///system']));
    // Appended last: a repeated flag wins (parseArgs keeps the last occurrence).
    expect(agent.args.at(-1)).toBe('--log-level=debug');
    expect(agent.env).toEqual([{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }, { name: 'NWF_LOG_LEVEL', value: 'debug' }]);
    // Merged over the chart's hardening, not instead of it.
    expect(agent.securityContext).toEqual({
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
      seLinuxOptions: { type: 'spc_t' },
    });
    expect(ds.securityContext).toEqual({ runAsUser: 0, runAsGroup: 0, seccompProfile: { type: 'RuntimeDefault' }, seLinuxOptions: { level: 's0' } });
    expect(ds.priorityClassName).toBeUndefined();
    expect(ds.nodeSelector).toBeUndefined();
    const ctl = ofKind(objs, 'Deployment')[0]!.spec.template.spec;
    expect(ctl.priorityClassName).toBe('infra');
    // OpenShift's restricted-v2 assigns the uid: null drops the chart's.
    expect(ctl.securityContext).toEqual({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(ctl.containers[0].args.slice(-2)).toEqual(['--lease-duration=30s', '--renew-deadline=20s']);
    expect(ctl.containers[0].env.at(-1)).toEqual({ name: 'TZ', value: 'UTC' });
  });

  it('keeps every name and label value within 63 characters, with the longest release name Helm accepts', () => {
    // Helm refuses release names over 53 characters; fullnameOverride has no such limit and is cut.
    expect(helm('template', 'a'.repeat(60), CHART).stderr).toContain('must not be longer than 53');
    const cases: [string, string[]][] = [
      ['r'.repeat(53), []],
      [`${'x'.repeat(35)}-nwfilter-operator`, []],
      [RELEASE, [`fullnameOverride=${'f'.repeat(43)}--${'g'.repeat(15)}`]],
    ];
    const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
    const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
    for (const [release, set] of cases) {
      const objs = renderAs(release, 'metrics.serviceMonitor.enabled=true', 'prometheusRule.enabled=true', 'dashboard.enabled=true', ...set);
      const ours = objs.filter((o) => !['CustomResourceDefinition', 'ServicePolicy'].includes(o.kind));
      expect(ours.length).toBeGreaterThanOrEqual(15);
      for (const o of ours) {
        expect(o.metadata.name, `${o.kind} ${o.metadata.name}`).toMatch(dnsLabel);
        expect(o.metadata.name.length, `${o.kind} ${o.metadata.name}`).toBeLessThanOrEqual(63);
        const labels: Record<string, string> = { ...o.metadata.labels, ...(o.spec?.template?.metadata?.labels ?? {}) };
        for (const [k, v] of Object.entries(labels)) expect(v, `${o.kind} ${o.metadata.name} label ${k}`).toMatch(labelValue);
        for (const [k, v] of Object.entries(labels)) expect(v.length, `${o.kind} ${o.metadata.name} label ${k}`).toBeLessThanOrEqual(63);
      }
      const names = ours.map((o) => `${o.kind}/${o.metadata.name}`);
      expect(new Set(names).size, 'names stay distinct after truncation').toBe(names.length);
      // The Lease the controller takes is named after the Deployment.
      const deploy = ofKind(objs, 'Deployment')[0]!;
      expect(deploy.spec.template.spec.containers[0].args).toContain(`--leader-election-id=${deploy.metadata.name}`);
    }
  });

  it('refuses values the schema does not allow', () => {
    expect(helm('template', RELEASE, CHART, '--set', 'controller.replicas=0').stderr).toContain('/controller/replicas');
    expect(helm('template', RELEASE, CHART, '--set', 'agent.resyncPeriod=soon').stderr).toContain('/agent/resyncPeriod');
    expect(helm('template', RELEASE, CHART, '--set-string', 'agent.quarantine=maybe').stderr).toContain('/agent/quarantine');
    expect(helm('template', RELEASE, CHART, '--set', 'unknown=1').stderr).toContain("additional properties 'unknown' not allowed");
    expect(helm('template', RELEASE, CHART, '--set', 'agent.libvirtSocketName=run/libvirt-sock').stderr).toContain('/agent/libvirtSocketName');
    expect(helm('template', RELEASE, CHART, '--set', 'agent.libvirtUri=system').stderr).toContain('/agent/libvirtUri');
    expect(helm('template', RELEASE, CHART, '--set', 'agent.extraArgs={debug}').stderr).toContain('/agent/extraArgs/0');
    expect(helm('template', RELEASE, CHART, '--set', 'agent.extraEnv[0].name=N', '--set', 'agent.extraEnv[0].value=8').stderr).toContain('/agent/extraEnv/0/value');
    expect(helm('template', RELEASE, CHART, '--set', 'agent.securityContext.seLinuxOptions.kind=spc_t').stderr).toContain('/agent/securityContext/seLinuxOptions');
    expect(helm('template', RELEASE, CHART, '--set', 'prometheusRule.disabledAlerts={NoSuchAlert}').stderr).toContain('/prometheusRule/disabledAlerts/0');
    expect(helm('template', RELEASE, CHART, '--set', 'fullnameOverride=Not_A_Name').stderr).toContain('/fullnameOverride');
  });
});

describe('helm chart: alerts', () => {
  type Rule = { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  const rulesOf = (objs: K8sObject[]): Rule[] => (ofKind(objs, 'PrometheusRule')[0]?.spec.groups as { rules: Rule[] }[] | undefined)?.flatMap((g) => g.rules) ?? [];

  /** Every series name each binary exports, from the metrics registry itself (histograms as their _bucket, _sum, _count). */
  async function exported(component: 'agent' | 'controller'): Promise<Set<string>> {
    const out = new Set<string>();
    for (const m of await createMetrics({ component }).registry.getMetricsAsJSON()) {
      out.add(m.name);
      const type = String(m.type);
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(m.name + s);
      if (type === 'summary') for (const s of ['_sum', '_count']) out.add(m.name + s);
    }
    return out;
  }

  it('renders the alerts on metrics the operator really exports, each on the binary that exports it', async () => {
    const objs = render('prometheusRule.enabled=true', 'prometheusRule.labels.release=kube-prometheus');
    expect(ofKind(objs, 'PrometheusRule')[0]!.metadata.labels).toMatchObject({ release: 'kube-prometheus' });
    const rules = rulesOf(objs);
    const agent = await exported('agent');
    const controller = await exported('controller');
    const used = new Set<string>();
    for (const r of rules) {
      expect(r.alert, r.expr).toMatch(/^Nwfilter[A-Za-z]+$/);
      expect(['critical', 'warning', 'info']).toContain(r.labels?.severity);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
      expect(r.annotations?.description, r.alert).toBeTruthy();
      for (const name of r.expr.match(/\bnwfilter_operator_[a-z0-9_]+/g) ?? []) {
        expect(agent.has(name) || controller.has(name), `${r.alert}: ${name} is not a metric of src/runtime/metrics.ts`).toBe(true);
        used.add(name);
      }
      // Series of other exporters: kube-state-metrics only (docs/helm.md says it is needed).
      for (const name of r.expr.match(/\b[a-z_]+_[a-z_]+(?=\{)/g) ?? []) expect(name, r.alert).toMatch(/^(nwfilter_operator_|kube_)/);
      expect(r.expr, r.alert).toContain(`namespace="${NS}"`);
    }
    // The libvirt alert reads an agent-only metric, the leader alerts a controller-only one.
    const expr = (alert: string) => rules.find((r) => r.alert === alert)!.expr;
    expect(expr('NwfilterAgentLibvirtDisconnected')).toContain('nwfilter_operator_libvirt_connected');
    expect(agent.has('nwfilter_operator_libvirt_connected') && !controller.has('nwfilter_operator_libvirt_connected')).toBe(true);
    expect(expr('NwfilterNoControllerLeader')).toContain('nwfilter_operator_leader');
    expect(controller.has('nwfilter_operator_leader') && !agent.has('nwfilter_operator_leader')).toBe(true);
    expect(used.size).toBeGreaterThanOrEqual(5);
    // The kube-state-metrics rules name the DaemonSet and the hypervisor label of agent.nodeSelector.
    expect(expr('NwfilterAgentPodsUnavailable')).toContain(`daemonset="${RELEASE}-nwfilter-operator-agent"`);
    expect(expr('NwfilterHypervisorWithoutAgent')).toContain('kube_node_labels{label_nwfilter_infinibay_io_hypervisor="true"}');
    // values.schema.json lists exactly the alerts there are (disabledAlerts refuses typos).
    const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8'));
    expect([...schema.properties.prometheusRule.properties.disabledAlerts.items.enum].sort()).toEqual(rules.map((r) => r.alert).sort());
  });

  it('classifies every Applied reason the agent reports: normal, quarantined, or alerting', () => {
    const rules = rulesOf(render('prometheusRule.enabled=true'));
    const notApplied = /reason=~"([^"]+)"/.exec(rules.find((r) => r.alert === 'NwfilterVMNotApplied')!.expr)![1]!.split('|');
    const quarantined = /reason="([^"]+)"/.exec(rules.find((r) => r.alert === 'NwfilterVMQuarantined')!.expr)![1]!;
    // Normal states (docs/status.md): applied, being rebuilt, migrating, waiting for the domain, handed over.
    const normal = [AGENT_REASON.applied, AGENT_REASON.realizing, AGENT_REASON.nodeMismatch, AGENT_REASON.domainNotFound, AGENT_REASON.removed];
    const reasons: string[] = Object.values(AGENT_REASON);
    for (const r of notApplied) expect(reasons, r).toContain(r);
    expect(quarantined).toBe(AGENT_REASON.quarantined);
    expect([...normal, quarantined, ...notApplied].sort()).toEqual([...reasons].sort());
  });

  it('follows the values: disabled alerts, extra rules, no leader alerts without leader election, no node-label rule without a selector', () => {
    const names = (...set: string[]) => rulesOf(render('prometheusRule.enabled=true', ...set)).map((r) => r.alert ?? r.record);
    expect(names('prometheusRule.disabledAlerts={NwfilterDriftRepaired,NwfilterReconcileErrors}')).not.toEqual(expect.arrayContaining(['NwfilterDriftRepaired']));
    expect(names('prometheusRule.disabledAlerts={NwfilterDriftRepaired,NwfilterReconcileErrors}')).not.toContain('NwfilterReconcileErrors');
    expect(names('prometheusRule.additionalRules[0].alert=Mine', 'prometheusRule.additionalRules[0].expr=vector(1)').at(-1)).toBe('Mine');
    expect(names('controller.leaderElection.enabled=false').filter((n) => n?.includes('Leader'))).toEqual([]);
    expect(names('agent.nodeSelector=null')).not.toContain('NwfilterHypervisorWithoutAgent');
  });

  // hack/test.sh installs promtool, so CI never skips this.
  it.skipIf(!hasPromtool && !process.env.CI)('promtool accepts the rules, and they fire on the series they are about', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nwf-rules-'));
    const spec = ofKind(render('prometheusRule.enabled=true'), 'PrometheusRule')[0]!.spec as { groups: { rules: Rule[] }[] };
    writeFileSync(join(dir, 'rules.yaml'), stringify(spec));
    const check = spawnSync('promtool', ['check', 'rules', join(dir, 'rules.yaml')], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    // The unit test compares annotations too: leave them out, promtool check validated their templates.
    const bare = { groups: spec.groups.map((g) => ({ ...g, rules: g.rules.map(({ annotations: _, ...r }) => r) })) };
    writeFileSync(join(dir, 'bare.yaml'), stringify(bare));
    const at = { namespace: NS, pod: 'agent-a', node: 'hv1' };
    const series = (name: string, labels: Record<string, string>, values: string) => ({
      series: `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`,
      values,
    });
    const test = {
      rule_files: ['bare.yaml'],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: [
            series('nwfilter_operator_libvirt_connected', at, '1 1 0x20'),
            series('nwfilter_operator_libvirt_connected', { ...at, pod: 'agent-b', node: 'hv2' }, '1x22'),
            series('nwfilter_operator_leader', { namespace: NS, pod: 'ctl-a' }, '1x3 0x20'),
            series('nwfilter_operator_leader', { namespace: NS, pod: 'ctl-b' }, '0x23'),
            series('nwfilter_operator_vm_protection', { ...at, reason: 'Quarantined' }, '2x22'),
            series('nwfilter_operator_vm_protection', { ...at, reason: 'Applied' }, '9x22'),
            series('nwfilter_operator_vm_protection', { ...at, reason: 'NodeMismatch' }, '1x22'),
            series('nwfilter_operator_vm_protection', { ...at, reason: 'NoInterfaces' }, '1x22'),
          ],
          alert_rule_test: [
            { eval_time: '10m', alertname: 'NwfilterAgentLibvirtDisconnected', exp_alerts: [{ exp_labels: { ...at, severity: 'critical' } }] },
            { eval_time: '10m', alertname: 'NwfilterNoControllerLeader', exp_alerts: [{ exp_labels: { severity: 'warning' } }] },
            { eval_time: '2m', alertname: 'NwfilterNoControllerLeader', exp_alerts: [] },
            { eval_time: '10m', alertname: 'NwfilterMultipleControllerLeaders', exp_alerts: [] },
            { eval_time: '12m', alertname: 'NwfilterVMQuarantined', exp_alerts: [{ exp_labels: { ...at, severity: 'warning' } }] },
            // NodeMismatch (a migration) and Applied are normal: only NoInterfaces alerts.
            { eval_time: '20m', alertname: 'NwfilterVMNotApplied', exp_alerts: [{ exp_labels: { ...at, reason: 'NoInterfaces', severity: 'warning' } }] },
          ],
        },
      ],
    };
    writeFileSync(join(dir, 'test.yaml'), stringify(test));
    const run = spawnSync('promtool', ['test', 'rules', join(dir, 'test.yaml')], { encoding: 'utf8', cwd: dir });
    expect(run.status, run.stdout + run.stderr).toBe(0);
  });

  it('parses as YAML with balanced PromQL when promtool is not there to check it', () => {
    const rules = rulesOf(render('prometheusRule.enabled=true'));
    expect(rules.length).toBe(9);
    for (const r of rules) {
      let depth = 0;
      for (const ch of r.expr) {
        depth += '({['.includes(ch) ? 1 : ')}]'.includes(ch) ? -1 : 0;
        expect(depth, r.expr).toBeGreaterThanOrEqual(0);
      }
      expect(depth, r.expr).toBe(0);
      expect(r.expr).not.toMatch(/\{\{|\}\}/);
      if (r.for) expect(r.for).toMatch(/^[0-9]+[smh]$/);
    }
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
    expect(catalog).toHaveLength(25);
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
    ['controller', 'watch', 'addressgroups.nwfilter.infinibay.io', true],
    ['controller', 'create', 'addressgroups.nwfilter.infinibay.io', true],
    ['controller', 'delete', 'addressgroups.nwfilter.infinibay.io', true],
    ['controller', 'patch', 'addressgroups.nwfilter.infinibay.io/status', true],
    ['controller', 'delete', 'departmentpolicies.nwfilter.infinibay.io', false],
    ['agent', 'list', 'servicepolicies.nwfilter.infinibay.io', true],
    ['agent', 'watch', 'vmfilters.nwfilter.infinibay.io', true],
    ['agent', 'patch', 'vmfilters.nwfilter.infinibay.io/status', true],
    ['agent', 'patch', 'vmfilters.nwfilter.infinibay.io', false],
    ['agent', 'patch', 'departmentpolicies.nwfilter.infinibay.io/status', false],
    ['agent', 'delete', 'vmfilters.nwfilter.infinibay.io', false],
    ['agent', 'create', 'events', false],
    ['agent', 'get', 'secrets', false],
    ['agent', 'update', 'leases.coordination.k8s.io', false],
    ['agent', 'list', 'addressgroups.nwfilter.infinibay.io', true],
    ['agent', 'watch', 'addressgroups.nwfilter.infinibay.io', true],
    ['agent', 'create', 'addressgroups.nwfilter.infinibay.io', false],
    ['agent', 'patch', 'addressgroups.nwfilter.infinibay.io/status', false],
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

describe('helm chart: the catalog on a reinstall', () => {
  // A copy of the chart under an API group of its own: its CRDs do not exist before the first install,
  // as on a new cluster (where `lookup` of a kind the API server does not serve fails), and its catalog
  // is apart from the other tests'. "z" sorts the group after the real one, so plain `kubectl get
  // servicepolicies` elsewhere keeps meaning nwfilter.infinibay.io.
  const id = Date.now().toString(36);
  const GROUP = `z${id}.chart-test.nwfilter.infinibay.io`;
  const NS2 = `nwf-catalog-${id}`;
  const REL2 = `nwfc${id.slice(-5)}`;
  const SP = `servicepolicies.${GROUP}`;
  let chart = '';
  beforeAll(() => {
    const dir = mkdtempSync(join(tmpdir(), 'nwf-catalog-'));
    chart = join(dir, 'chart');
    cpSync(CHART, chart, { recursive: true });
    for (const sub of ['templates/crds', 'templates/catalog']) {
      for (const f of readdirSync(join(chart, sub))) {
        const file = join(chart, sub, f);
        let text = readFileSync(file, 'utf8').replaceAll('nwfilter.infinibay.io', GROUP);
        // No short names and no `nwfilter` category: `kubectl get nwfilter` and `kubectl get vmf` in the
        // other tests must keep meaning the real kinds, also while these CRDs are being deleted.
        if (sub === 'templates/crds') text = text.replace(/\n\s*shortNames:\n(\s*- \S+\n)+/, '\n').replace(/\n\s*categories:\n(\s*- \S+\n)+/, '\n');
        writeFileSync(file, text);
      }
    }
    kubectlOk(['create', 'namespace', NS2]);
  });
  afterAll(() => {
    helm('uninstall', REL2, '-n', NS2);
    // Waits for the CRDs to go (with their objects), so that no test after this one sees them in discovery.
    kubectl(['delete', 'crd', ...CRDS.map((c) => c.replace('nwfilter.infinibay.io', GROUP)), '--timeout=120s']);
    kubectl(['delete', 'namespace', NS2, '--wait=false']);
  });
  const catalog = () => kubectlOk(['get', SP, '-o', 'name']).trim().split('\n').filter(Boolean);
  const description = (name: string) => kubectlOk(['get', SP, name, '-o', 'jsonpath={.spec.description}']);

  it('first install, CRDs not served yet: every entry is created', () => {
    expect(kubectl(['get', 'crd', SP]).code).not.toBe(0);
    helmOk('install', REL2, chart, '-n', NS2, '--wait=false');
    expect(catalog()).toHaveLength(25);
    expect(description('ssh')).toBe('Secure shell remote administration.');
  });

  it('a reinstall keeps an edited entry and creates only the missing ones', () => {
    kubectlOk(['patch', SP, 'ssh', '--type=merge', '-p', JSON.stringify({ spec: { description: 'edited by the chart test' } })]);
    kubectlOk(['delete', SP, 'ftp']);
    helmOk('uninstall', REL2, '-n', NS2, '--wait', '--timeout', '60s');
    // The CRDs (resource-policy keep) and the hooks' objects outlive the release.
    expect(catalog()).toHaveLength(24);
    helmOk('install', REL2, chart, '-n', NS2, '--wait=false');
    expect(description('ssh')).toBe('edited by the chart test');
    expect(catalog()).toHaveLength(25);
    expect(description('ftp')).toBe('File transfer, control channel and passive data ports.');
    // Only ftp was missing: it is the only hook of this release.
    const hooks = parseAllDocuments(helmOk('get', 'hooks', REL2, '-n', NS2)).map((d) => d.toJS() as K8sObject).filter(Boolean);
    expect(hooks.map((h) => h.metadata.name)).toEqual(['ftp']);
  });
});
