// The production path on a real node: the operator's image (built from the Dockerfile by
// hack/image-build.sh, Node.js LTS inside) installed with Helm on the one-node Kubernetes of
// hack/node-up.sh (kubelet, containerd, kube-proxy, a pod network), into a namespace with Pod Security
// enforced. The agent runs as a DaemonSet pod and opens the host's libvirtd through the mounted socket
// directory; it filters an LXC container on the packet lab's bridge, and the kernel judges the result
// with real packets from a peer namespace (the same lab and container as test/integration/e2e).
// Then `helm upgrade` rolls the agent while the container's interface is watched for a moment
// without its filter, and `helm uninstall` must leave nothing stuck and the VM still filtered.
//
//   pods (10.244.0.0/24, bridge nwfcni0) --service 10.0.0.1--> kube-apiserver 10.250.0.1:26443
//   agent pod --/var/run/libvirt (read-only hostPath)--> host libvirtd (lxc:///system)
//   container nwfnd-<run>-ct 198.18.0.210 on the lab bridge <-- probes -- peer 198.18.0.211
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { vmFilterName } from '../../src/policy/index.js';
import { cleanupSteps } from '../helpers/cleanup.js';
import { prefixedExamples } from '../helpers/examples.js';
import { applyObjects, getJson, kubectl, kubectlOk, waitFor } from '../helpers/kubectl.js';
import {
  containerDomainXml,
  containerEndpoint,
  containerVmFilter,
  filterrefs,
  forgetFlows,
  labDepartment,
  probeAll,
  removeDomain,
  removeLeftoverDomains,
  undefineFilters,
  virsh,
  virshOk,
  waitVerdict,
  type ContainerSpec,
  type ProbeSet,
} from '../helpers/lxc-container.js';
import { metricValue } from '../helpers/processes.js';
import { LAB, Lab, type Endpoint } from '../packet/lab.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const CACHE = process.env.NWF_CACHE ?? join(process.env.HOME ?? '/root', '.cache/nwfilter-operator');
const NODE_STATE = process.env.NWF_NODE_STATE ?? '/tmp/nwfilter-operator-node';
const NODE_NAME = process.env.NWF_NODE_NAME ?? 'nwf-node';
const HELM = join(CACHE, 'bin/helm');
const CHART = join(REPO, 'charts/nwfilter-operator');
// This file talks to the node's cluster only (its own process: vitest isolates test files).
process.env.KUBECONFIG = join(NODE_STATE, 'kubeconfig');

const RUN = Date.now().toString(36).slice(-6);
const P = `nwfnd-${RUN}`;
const LEFTOVER = /^nwfnd-[0-9a-z]{6}-/;
// The documented namespace and release: the CRDs a previous install kept (resource-policy keep) carry
// their release's name and namespace, and Helm adopts them only into the same release.
const NS = 'nwfilter-system';
const RELEASE = 'nwfilter-operator';
const DOMAIN = `${P}-ct`;
const DEPT = `${P}-lab`;
const HYPERVISOR_LABEL = 'nwfilter.infinibay.io/hypervisor';
const SPEC: ContainerSpec = {
  domain: DOMAIN,
  hostVeth: `nwfl-k${RUN}`,
  ipv4: `${LAB.net4}.210`,
  ipv6: `${LAB.net6}::210`,
  mac: '52:54:00:6e:00:d2',
  tcpPorts: [22, 80],
  udpPorts: [53],
};
const PEER = { ipv4: `${LAB.net4}.211`, ipv6: `${LAB.net6}::211`, mac: '52:54:00:6e:00:d3' };
const PROBES: ProbeSet = {
  'tcp 22': { proto: 'tcp', family: 4, port: 22 },
  'tcp 80': { proto: 'tcp', family: 4, port: 80 },
  'udp 53': { proto: 'udp', family: 4, port: 53 },
  icmp: { proto: 'icmp', family: 4 },
};
/** ssh and dns provided (the chart's catalog entries), icmp from the lab accepted, the rest dropped. */
const FILTERED = { 'tcp 22': 'open', 'tcp 80': 'dropped', 'udp 53': 'open', icmp: 'open' };

type Cond = { type: string; status: string; reason: string; message: string };
type VmObj = { metadata: { name: string; finalizers?: string[] }; status?: { appliedHash?: string; desiredHash?: string; nodeName?: string; conditions?: Cond[] } };
type Pod = { metadata: { name: string; uid: string; labels?: Record<string, string> }; spec: { containers: { args?: string[] }[] }; status: { podIP?: string; conditions?: Cond[] } };

const ex = prefixedExamples(P);
let lab: Lab | undefined;
let peer: Endpoint;
const ct = containerEndpoint(SPEC);
let dir: string | undefined;
const timings: string[] = [];
let stepStart = performance.now();
const mark = (what: string) => {
  timings.push(`${what}: ${((performance.now() - stepStart) / 1000).toFixed(1)} s`);
  stepStart = performance.now();
};

// ---- helpers ---------------------------------------------------------------------------------------

function helm(...args: string[]): string {
  const r = spawnSync(HELM, [...args, '--namespace', NS], { encoding: 'utf8', timeout: 600_000, env: process.env });
  if (r.status !== 0) throw new Error(`helm ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/**
 * A command that runs while the event loop goes on (the protection watch and the prober must keep
 * sampling during a roll; spawnSync would stop them for the whole `helm upgrade --wait`).
 */
async function runAsync(file: string, args: string[]): Promise<string> {
  try {
    return (await promisify(execFile)(file, args, { encoding: 'utf8', timeout: 600_000, env: process.env })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${file} ${args.join(' ')}: ${e.stderr || e.message}`);
  }
}

const image = () => {
  const name = inject('nodeImage');
  const i = name.lastIndexOf(':');
  return { repository: name.slice(0, i), tag: name.slice(i + 1) };
};

/** The values of this install: the local image (never pulled), the LXC driver of the host's libvirtd. */
const installArgs = () => [
  '--set', `image.repository=${image().repository}`,
  '--set', `image.tag=${image().tag}`,
  '--set', 'image.pullPolicy=Never',
  '--set', 'agent.libvirtUri=lxc:///system',
  '--wait', '--timeout', '5m',
];

const pods = (component: string) =>
  getJson<{ items: Pod[] }>(['pods', '-n', NS, '-l', `app.kubernetes.io/component=${component}`]).items;
const ready = (p: Pod) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

/** A pod's metrics, scraped from the host over the pod network (as Prometheus would). */
async function podMetrics(pod: Pod, port: number): Promise<string> {
  const res = await fetch(`http://${pod.status.podIP}:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  return res.text();
}

const vmObj = (name: string) => getJson<VmObj>(['vmfilter', name]);
const cond = (o: VmObj, type: string) => o.status?.conditions?.find((c) => c.type === type);
const applied = (o: VmObj) => !!o.status?.appliedHash && o.status.appliedHash === o.status.desiredHash && cond(o, 'Ready')?.status === 'True';

function agentLogs(): string {
  return kubectl(['logs', '-n', NS, '-l', 'app.kubernetes.io/component=agent', '--tail', '40']).stdout;
}

async function waitApplied(name: string, timeoutMs = 120_000): Promise<VmObj> {
  let last: VmObj | undefined;
  try {
    return await waitFor(`${name} applied by the agent pod`, () => ((last = vmObj(name)), applied(last) ? last : undefined), timeoutMs);
  } catch (err) {
    throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last?.status)}; agent log:\n${agentLogs()}`);
  }
}

/** The kernel filters the container's traffic: the chain libvirt made for its interface (FO: to the VM) exists. */
function chainsNow(): { ok: boolean; why: string } {
  const chains = spawnSync('iptables', ['-w', '-S', `FO-${SPEC.hostVeth}`], { encoding: 'utf8' });
  return chains.status === 0 ? { ok: true, why: '' } : { ok: false, why: `no chain FO-${SPEC.hostVeth}: ${chains.stderr.trim()}` };
}

/** The container's interface carries our filter: libvirt's binding names it and its chains exist. */
function protectedNow(): { ok: boolean; why: string } {
  const binding = virsh('nwfilter-binding-dumpxml', SPEC.hostVeth);
  if (binding.code !== 0) return { ok: false, why: `no binding: ${binding.stderr.trim()}` };
  if (!binding.stdout.includes(`<filterref filter='${vmFilterName(DOMAIN)}'>`)) return { ok: false, why: `binding without ${vmFilterName(DOMAIN)}` };
  return chainsNow();
}

/**
 * Watches the interface until stopped and returns every moment it was unprotected: the kernel's chain
 * every 100 ms (cheap), libvirt's binding every 10th time (a virsh call takes a good part of a second).
 */
function watchProtection(): { stop: () => Promise<{ checks: number; gaps: string[] }> } {
  let running = true;
  const gaps: string[] = [];
  let checks = 0;
  const loop = (async () => {
    while (running) {
      const p = checks % 10 === 0 ? protectedNow() : chainsNow();
      checks++;
      if (!p.ok) gaps.push(`${new Date().toISOString()} ${p.why}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { checks, gaps };
    },
  };
}

// The chart's catalog (installed by Helm): ssh tcp 22 and dns 53, provided by this department.
const department = labDepartment(DEPT, { test: P }, [
  { name: 'ssh', provide: 'allow' },
  { name: 'dns', provide: 'allow' },
]);
const vmFilter = containerVmFilter(SPEC, DEPT, { test: P }, { nodeName: NODE_NAME });

/** A shut-off LXC domain per example VM (never started), so that every example VMFilter has its domain. */
function exampleDomains(): ContainerSpec[] {
  return ex.vms.map((v, i) => ({
    ...SPEC,
    domain: v.spec.domain.name!,
    hostVeth: `nwfl-e${i}${RUN}`,
    ipv4: `${LAB.net4}.${220 + i}`,
    mac: `52:54:00:6e:00:${(0xe0 + i).toString(16)}`,
  }));
}

// ---- setup and cleanup -------------------------------------------------------------------------------

beforeAll(async () => {
  lab = await Lab.create({ name: `nd-${RUN}` });
  // Under the lab's lock, domains of ours are a killed run's.
  removeLeftoverDomains(LEFTOVER);
  peer = await lab.addEndpoint(`n${RUN}`, PEER);
  dir = mkdtempSync(join(tmpdir(), `${P}-`));
  for (const spec of [SPEC, ...exampleDomains()]) {
    writeFileSync(join(dir, `${spec.domain}.xml`), containerDomainXml(spec));
    virshOk('define', join(dir, `${spec.domain}.xml`));
  }
  // A killed run's release would hold the node's agent.
  if (kubectl(['get', 'namespace', NS]).code === 0) {
    spawnSync(HELM, ['uninstall', RELEASE, '--namespace', NS, '--wait'], { encoding: 'utf8' });
    kubectlOk(['delete', 'namespace', NS, '--timeout=120s']);
  }
  mark('lab, peer and domains defined');
}, 600_000);

afterAll(async () => {
  const { step, done } = cleanupSteps();
  await step('uninstall', () => kubectl(['get', 'namespace', NS]).code === 0 && spawnSync(HELM, ['uninstall', RELEASE, '--namespace', NS, '--wait']));
  // No agent runs any more: the finalizers go by hand, as docs/helm.md says for a removal.
  await step('delete objects', () => {
    for (const kind of ['vmfilters', 'departmentpolicies', 'servicepolicies']) {
      const names = getJson<{ items: { metadata: { name: string } }[] }>([kind, '-l', `test=${P}`]).items.map((o) => o.metadata.name);
      for (const n of names) kubectl(['patch', kind, n, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      kubectl(['delete', kind, '-l', `test=${P}`, '--ignore-not-found', '--timeout=60s']);
    }
  });
  await step('delete namespace', () => kubectl(['delete', 'namespace', NS, '--ignore-not-found', '--timeout=120s']));
  await step('remove domains', () => [SPEC, ...exampleDomains()].forEach((s) => removeDomain(s.domain)));
  await step('undefine filters', () => undefineFilters(`nwf-vm-${P}`, `nwf-dept-${P}`));
  await step('forget flows', () => forgetFlows(SPEC.ipv4));
  await step('close lab', () => lab?.close());
  await step('remove temp dir', () => dir && rmSync(dir, { recursive: true, force: true }));
  process.stdout.write(`node e2e (${P}): ${timings.join(', ')}\n`);
  done();
}, 300_000);

// ---- the test ------------------------------------------------------------------------------------------

describe('helm install on a real node: the agent pod filters a VM on the host libvirtd', () => {
  it('the agent needs the privileged Pod Security level: a baseline namespace refuses its pod', async () => {
    const baseline = `${NS}-baseline`;
    kubectlOk(['create', 'namespace', baseline]);
    try {
      kubectlOk(['label', 'namespace', baseline, 'pod-security.kubernetes.io/enforce=baseline']);
      // Admission looks the pod's ServiceAccount up before Pod Security judges it.
      await waitFor('the default ServiceAccount', () => (kubectl(['get', 'serviceaccount', 'default', '-n', baseline]).code === 0 ? true : undefined), 60_000);
      const rendered = spawnSync(HELM, ['template', RELEASE, CHART, '--namespace', baseline, '--show-only', 'templates/agent-daemonset.yaml'], { encoding: 'utf8' });
      expect(rendered.status, rendered.stderr).toBe(0);
      const ds = JSON.parse(kubectlOk(['create', '--dry-run=client', '-o', 'json', '-f', '-'], rendered.stdout)) as { spec: { template: { spec: unknown } } };
      const spec = { ...(ds.spec.template.spec as Record<string, unknown>), serviceAccountName: 'default' };
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'agent-psa-probe', namespace: baseline }, spec };
      const r = kubectl(['create', '--dry-run=server', '-f', '-'], JSON.stringify(pod));
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/violates PodSecurity "baseline:latest"/);
      expect(r.stderr).toMatch(/hostPath volumes/);
    } finally {
      kubectl(['delete', 'namespace', baseline, '--wait=false']);
    }
    mark('baseline namespace refuses the agent');
  });

  it('installs into a namespace enforcing privileged: one leader, the agent on the labelled node connected to libvirtd', async () => {
    kubectlOk(['label', 'node', NODE_NAME, `${HYPERVISOR_LABEL}=true`, '--overwrite']);
    kubectlOk(['create', 'namespace', NS]);
    kubectlOk(['label', 'namespace', NS, 'pod-security.kubernetes.io/enforce=privileged']);
    helm('install', RELEASE, CHART, ...installArgs());
    // Helm's --wait counts a DaemonSet ready with maxUnavailable (1) pods missing: on one node it does
    // not wait for the agent at all. The README says to wait for the rollout, as here.
    kubectlOk(['rollout', 'status', 'daemonset', `${RELEASE}-agent`, '-n', NS, '--timeout=180s']);
    mark('helm install --wait, agent rolled out');

    const controllers = pods('controller');
    const [agent, ...moreAgents] = pods('agent');
    expect(controllers.length).toBe(2);
    expect(controllers.every(ready)).toBe(true);
    expect(agent && ready(agent)).toBe(true);
    expect(moreAgents).toEqual([]);
    // Exactly one replica leads; only the agent exports libvirt_connected, only controllers leader.
    const leaders = await Promise.all(controllers.map(async (p) => metricValue(await podMetrics(p, 8080), 'nwfilter_operator_leader')));
    expect(leaders.sort()).toEqual([0, 1]);
    const agentMetrics = await podMetrics(agent!, 9090);
    expect(metricValue(agentMetrics, 'nwfilter_operator_libvirt_connected')).toBe(1);
    expect(agentMetrics).not.toMatch(/^nwfilter_operator_leader /m);
    // The image's Node.js is the LTS of hack/versions.sh, not the machine's.
    expect(agentMetrics).toMatch(/nwfilter_operator_nodejs_version_info\{version="v24\./);
    expect(agentLogs()).toMatch(/"uri":"lxc:\/\/\/system".*"msg":"connected to libvirtd"/);
    // The catalog came with the chart.
    expect(getJson<{ spec: { ports: { port: number }[] } }>(['servicepolicy', 'ssh']).spec.ports[0]!.port).toBe(22);
    mark('pods Ready, leader elected, agent connected');
  });

  it('the examples apply, and the agent pod defines and attaches every example VM\'s filter', async () => {
    applyObjects([...ex.addressGroups, ...ex.services, ...ex.departments, ...ex.vms]);
    for (const v of ex.vms) {
      const o = await waitApplied(v.metadata.name);
      expect(o.status?.nodeName).toBe(NODE_NAME);
      expect(filterrefs(v.spec.domain.name!, true)).toEqual([vmFilterName(v.metadata.name)]);
    }
    mark('examples applied');
  });

  it('the agent pod filters the container, and the kernel drops what the policy denies', async () => {
    virshOk('start', DOMAIN);
    await waitVerdict(lab!, peer, ct, PROBES['tcp 80']!, 'open');
    const before = await probeAll(lab!, peer, ct, PROBES);
    expect(before.verdicts, before.details).toEqual({ 'tcp 22': 'open', 'tcp 80': 'open', 'udp 53': 'open', icmp: 'open' });
    // LXC refuses live interface updates: the agent attaches to the persistent definition.
    virshOk('destroy', DOMAIN);
    applyObjects([department, vmFilter]);
    await waitApplied(DOMAIN);
    expect(filterrefs(DOMAIN, true)).toEqual([vmFilterName(DOMAIN)]);
    virshOk('start', DOMAIN);
    expect(protectedNow()).toEqual({ ok: true, why: '' });
    await waitVerdict(lab!, peer, ct, PROBES['tcp 22']!, 'open');
    const after = await probeAll(lab!, peer, ct, PROBES);
    expect(after.verdicts, after.details).toEqual(FILTERED);
    mark('container filtered, probes as compiled');
  });

  it('helm upgrade with a changed value rolls the agent, and the VM is never without its filter', async () => {
    const [old] = pods('agent');
    const watch = watchProtection();
    let probes = 0;
    const opened: string[] = [];
    let probing = true;
    // tcp 80 must stay dropped through the roll: probed over and over while it happens.
    const prober = (async () => {
      while (probing) {
        forgetFlows(SPEC.ipv4);
        const r = await lab!.probe({ from: peer, to: ct, timeoutMs: 1000, ...PROBES['tcp 80']! });
        probes++;
        if (r.verdict !== 'dropped') opened.push(`${r.verdict} (${r.detail})`);
      }
    })();
    try {
      await runAsync(HELM, ['upgrade', RELEASE, CHART, ...installArgs(), '--set', 'agent.logLevel=debug', '--namespace', NS]);
      await runAsync('kubectl', ['rollout', 'status', 'daemonset', `${RELEASE}-agent`, '-n', NS, '--timeout=180s']);
      await waitFor('the new agent pod Ready', () => {
        const now = pods('agent');
        return now.length === 1 && now[0]!.metadata.uid !== old!.metadata.uid && ready(now[0]!) ? now[0] : undefined;
      }, 120_000);
      await waitFor('the new agent connected', async () => (metricValue(await podMetrics(pods('agent')[0]!, 9090), 'nwfilter_operator_libvirt_connected') === 1 ? true : undefined), 60_000);
    } finally {
      probing = false;
      await prober;
    }
    const { checks, gaps } = await watch.stop();
    const [agent] = pods('agent');
    expect(agent!.spec.containers[0]!.args).toContain('--log-level=debug');
    expect(gaps, `moments without the filter during the roll (${checks} checks)`).toEqual([]);
    expect(checks).toBeGreaterThan(10);
    expect(opened, `tcp 80 probes during the roll (${probes})`).toEqual([]);
    expect(probes).toBeGreaterThan(0);
    await waitApplied(DOMAIN);
    const after = await probeAll(lab!, peer, ct, PROBES);
    expect(after.verdicts, after.details).toEqual(FILTERED);
    mark(`helm upgrade rolled the agent (${checks} protection checks, ${probes} probes during the roll)`);
  });

  it('helm uninstall leaves no stuck objects, keeps policies and CRDs, and the VM keeps its filter', async () => {
    helm('uninstall', RELEASE, '--wait', '--timeout', '3m');
    await waitFor('no pods of the release', () => (pods('controller').length + pods('agent').length === 0 ? true : undefined), 120_000);
    const left = kubectlOk(['get', 'all,leases,configmaps,serviceaccounts,roles,rolebindings', '-n', NS, '-o', 'name'])
      .split('\n')
      .filter((n) => n && !/^(configmap\/kube-root-ca\.crt|serviceaccount\/default)$/.test(n));
    // The leader-election Lease is the controller's, not the chart's: it stays until the namespace goes.
    // (Whether the leader managed to release it is a race: Helm deletes its RBAC while it stops.)
    expect(left).toEqual([`lease.coordination.k8s.io/${RELEASE}-controller`]);
    expect(kubectl(['get', 'clusterroles,clusterrolebindings', '-o', 'name']).stdout).not.toMatch(/nwfilter-operator/);
    // Fail closed: uninstalling the operator does not unprotect a VM. Policies and CRDs stay (keep).
    expect(kubectl(['get', 'crd', 'vmfilters.nwfilter.infinibay.io']).code).toBe(0);
    expect(vmObj(DOMAIN).metadata.finalizers?.length).toBeGreaterThan(0);
    expect(protectedNow()).toEqual({ ok: true, why: '' });
    const after = await probeAll(lab!, peer, ct, PROBES);
    expect(after.verdicts, after.details).toEqual(FILTERED);
    // The namespace goes without waiting on anything of ours.
    kubectlOk(['delete', 'namespace', NS, '--timeout=120s']);
    mark('helm uninstall, namespace deleted');
  });
});
