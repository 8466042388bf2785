// The operator end to end with REAL packets: kube-apiserver + etcd, controller and agent as
// processes, libvirtd, and a libvirt LXC container whose interface is a port of the packet lab's
// bridge (test/packet/lab.ts). The container runs TCP/UDP echo servers; a lab "peer" namespace on the
// same bridge probes it with real sockets. The kernel judges what the operator wrote.
//
//   container (LXC, lxc:///system)  eth0 198.18.0.200, default via 198.18.0.1, echo on tcp 22,80 udp 53
//        | host veth nwfl-c<run> = bridge port, libvirt's nwfilter binding (FI-/FO-/HI- chains)
//   [bridge nwflab0]  198.18.0.1 (host)
//        | nwfl-p<run>
//   peer namespace  198.18.0.201  (the lab's probe agent)
//
// LXC facts this relies on (libvirt 9.0): live update-device of an interface is refused
// ("Operation not supported: Unable to modify live devices"), config updates work, and a started
// container gets the filterref of its persistent definition, bound to the host veth named by
// <target dev>. So the agent attaches while the container is shut off and the container is started
// afterwards. A change inside the filters (here: the department) then reaches the running container
// through libvirt's rebuild of the bound interface, with no device update; a change of the binding
// itself (a filter parameter) cannot, and the last test pins down what the agent reports then.
//
// Needs: hack/libvirt-up.sh (LXC driver loaded, cgroup layout LXC can use) and hack/netlab.sh up
// (bridge netfilter on); both are idempotent and run from beforeAll. The container exists only while
// this file holds the lab's machine-wide lock (Lab.create waits for a packet run to finish), so a
// container of ours found under the lock was left by a killed run and is removed.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { departmentFilterName, vmFilterName } from '../../../src/policy/index.js';
import { applyObjects, getJson, kubectl, kubectlOk, waitFor } from '../../helpers/kubectl.js';
import { metricValue, startOperator, type OperatorProcess } from '../../helpers/processes.js';
import { LAB, Lab, type Endpoint, type Probe, type Verdict } from '../../packet/lab.js';

const API = 'nwfilter.infinibay.io/v1alpha1';
const LXC_URI = 'lxc:///system';
const RUN = Date.now().toString(36).slice(-6);
/** Kubernetes objects, the domain and therefore the filters (nwf-vm-<P>-ct, nwf-dept-<P>-eng) carry it. */
const P = `nwfpk-${RUN}`;
const LEFTOVER_DOMAIN = /^nwfpk-[0-9a-z]{6}-ct$/;
const DOMAIN = `${P}-ct`;
const DEPT = `${P}-eng`;
const NODE = `node-${P}`;
/** The lab's naming (nwfl-<name>), so that `hack/netlab.sh down` also sweeps a killed run's binding. */
const HOST_VETH = `nwfl-c${RUN}`;
/** High host numbers: the packet scenarios allocate from .10 upwards. */
const CT_IP = `${LAB.net4}.200`;
const CT_MAC = '52:54:00:6e:00:c8';
const PEER = { ipv4: `${LAB.net4}.201`, ipv6: `${LAB.net6}::201`, mac: '52:54:00:6e:00:c9' };
const TCP_PORTS = [22, 80];
const UDP_PORTS = [53];
const ECHO_INIT = fileURLToPath(new URL('./echo-init.mjs', import.meta.url));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
/** Generous for `open` on a loaded 2-core machine; a `dropped` verdict costs this much. */
const PROBE_TIMEOUT_MS = 1500;

type Cond = { type: string; status: string; reason: string; message: string };
type VmObj = {
  metadata: { name: string; generation?: number };
  status?: { appliedHash?: string; desiredHash?: string; appliedGeneration?: number; nodeName?: string; conditions?: Cond[] };
};

let lab: Lab | undefined;
let peer: Endpoint;
/** The container as a probe target: only its addresses and bridge port matter to the lab. */
const ct: Endpoint = { name: 'ct', ns: `(lxc ${DOMAIN})`, port: HOST_VETH, mac: CT_MAC, ipv4: CT_IP, ipv6: `${LAB.net6}::200`, segment: 'bridge' };
let dir: string | undefined;
let controller: OperatorProcess | undefined;
let agent: OperatorProcess | undefined;
const timings: string[] = [];
const started = performance.now();
const mark = (what: string) => timings.push(`${what} at ${((performance.now() - started) / 1000).toFixed(1)} s`);

// ---- libvirt (LXC driver) and host commands ----------------------------------------------------

/** virsh on the LXC driver. nwfilter objects are the nwfilter driver's: the same over any URI. */
function virsh(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('virsh', ['-c', LXC_URI, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, LC_ALL: 'C' } });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') };
}

function virshOk(...args: string[]): string {
  const r = virsh(...args);
  if (r.code !== 0) throw new Error(`virsh ${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

const domainState = () => virsh('domstate', DOMAIN).stdout.trim();
const filterrefs = (inactive: boolean) => [...virshOk('dumpxml', ...(inactive ? ['--inactive'] : []), DOMAIN).matchAll(/<filterref filter='([^']+)'/g)].map((m) => m[1]);
const filterXml = (name: string) => virshOk('nwfilter-dumpxml', name);

/** Destroys (when running) and undefines a domain; quiet when it does not exist. */
function removeDomain(name: string): void {
  if (virsh('domstate', name).code !== 0) return;
  virsh('destroy', name);
  const r = virsh('undefine', name);
  if (r.code !== 0 && virsh('domstate', name).code === 0) throw new Error(`undefine ${name}: ${r.stderr}`);
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');

/**
 * The container: no root filesystem of its own (it shares the host's, so node and echo-init.mjs are
 * there), one interface on the lab bridge that libvirt configures inside (<ip>, <route>), node as init.
 */
function domainXml(): string {
  const initargs = [ECHO_INIT, '--tcp', TCP_PORTS.join(','), '--udp', UDP_PORTS.join(',')].map((a) => `<initarg>${xmlEscape(a)}</initarg>`).join('');
  return `<domain type='lxc'>
  <name>${DOMAIN}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type>exe</type><init>${xmlEscape(process.execPath)}</init>${initargs}</os>
  <devices>
    <interface type='bridge'>
      <mac address='${CT_MAC}'/>
      <source bridge='${LAB.bridge}'/>
      <target dev='${HOST_VETH}'/>
      <ip address='${CT_IP}' family='ipv4' prefix='24'/>
      <route family='ipv4' address='0.0.0.0' prefix='0' gateway='${LAB.host4}'/>
    </interface>
    <console type='pty'/>
  </devices>
</domain>
`;
}

/** Runs a repo script; its output goes to the test log. */
function hack(script: string, ...args: string[]): void {
  execFileSync('bash', [join(REPO, 'hack', script), ...args], { stdio: 'inherit', timeout: 600_000 });
}

/**
 * Forgets the container's flows in the root namespace's conntrack (bridge netfilter tracks bridged
 * flows there), so that every round of probes is judged by the rules of the moment, not by an entry
 * an earlier round left (libvirt's rules accept ESTABLISHED traffic). Exit 1: nothing to delete.
 */
function forgetFlows(): void {
  for (const dir of ['-s', '-d']) {
    const r = spawnSync('conntrack', ['-D', dir, CT_IP], { encoding: 'utf8', timeout: 10_000 });
    if (r.status !== 0 && r.status !== 1) throw new Error(`conntrack -D ${dir} ${CT_IP}: ${r.stderr}`);
  }
}

// ---- Kubernetes objects ------------------------------------------------------------------------

const labels = { test: P };
const service = (name: string, protocol: 'tcp' | 'udp', port: number) => ({
  apiVersion: API,
  kind: 'ServicePolicy',
  metadata: { name: `${P}-${name}`, labels },
  spec: { displayName: `${name} (packet e2e)`, ports: [{ protocol, port }], use: true, provide: false },
});
const department = (sshProvide: 'allow' | 'deny') => ({
  apiVersion: API,
  kind: 'DepartmentPolicy',
  metadata: { name: DEPT, labels },
  spec: {
    services: [
      { name: `${P}-ssh`, provide: sshProvide },
      { name: `${P}-dns`, provide: 'allow' },
    ],
    rules: [{ action: 'accept', direction: 'in', protocol: 'icmp', source: `${LAB.net4}.0/24`, comment: 'ping from the lab' }],
    cleanTraffic: false,
    defaultAction: 'drop',
  },
});
const vmFilter = {
  apiVersion: API,
  kind: 'VMFilter',
  metadata: { name: DOMAIN, labels },
  spec: { domain: { name: DOMAIN }, department: DEPT, parameters: { ip: [CT_IP] } },
};

const vmObj = () => getJson<VmObj>(['vmfilter', DOMAIN]);
const cond = (o: VmObj, type: string) => o.status?.conditions?.find((c) => c.type === type);
const describeVm = (o: VmObj) => JSON.stringify({ status: { ...o.status, conditions: o.status?.conditions?.map((c) => `${c.type}=${c.status} ${c.reason}: ${c.message}`) } });

/** Waits until the agent reports what the controller wants (appliedHash = desiredHash), Ready, and `also`. */
async function waitApplied(what: string, also: (o: VmObj) => boolean = () => true, timeoutMs = 90_000): Promise<VmObj> {
  let last: VmObj | undefined;
  try {
    return await waitFor(
      what,
      () => {
        const o = (last = vmObj());
        const s = o.status;
        return s?.appliedHash && s.appliedHash === s.desiredHash && cond(o, 'Ready')?.status === 'True' && also(o) ? o : undefined;
      },
      timeoutMs,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last VMFilter: ${last ? describeVm(last) : 'none'}; agent log: ${agent?.logFile}`);
  }
}

const agentMetric = async (name: string, labelsOf: Record<string, string> = {}) => metricValue(await agent!.metrics(), name, labelsOf);
const writes = (op: string) => agentMetric('nwfilter_operator_libvirt_writes_total', { op });

// ---- probes --------------------------------------------------------------------------------------

const PROBES: Record<string, Omit<Probe, 'from' | 'to'>> = {
  'tcp 22': { proto: 'tcp', family: 4, port: 22 },
  'tcp 80': { proto: 'tcp', family: 4, port: 80 },
  'udp 53': { proto: 'udp', family: 4, port: 53 },
  icmp: { proto: 'icmp', family: 4 },
};

type Verdicts = Record<string, Verdict>;

/** Every probe of PROBES from the peer to the container, at the same time: name -> verdict, and the details. */
async function probeAll(): Promise<{ verdicts: Verdicts; details: string }> {
  forgetFlows();
  const names = Object.keys(PROBES);
  const results = await lab!.probeAll(
    names.map((n) => ({ from: peer, to: ct, timeoutMs: PROBE_TIMEOUT_MS, ...PROBES[n]! })),
    { concurrency: names.length },
  );
  return {
    verdicts: Object.fromEntries(results.map((r, i) => [names[i]!, r.verdict])),
    details: results.map((r) => `${r.label}: ${r.verdict} (${r.detail}, ${r.ms} ms)`).join('; '),
  };
}

/** What the peer sees once the department denies ssh provide (the third and fourth tests). */
const AFTER_DEPARTMENT_CHANGE: Verdicts = { 'tcp 22': 'dropped', 'tcp 80': 'dropped', 'udp 53': 'open', icmp: 'open' };

async function expectVerdicts(expected: Verdicts): Promise<void> {
  const { verdicts, details } = await probeAll();
  expect(verdicts, details).toEqual(expected);
}

/** Polls one probe until it gives `want` (the container starting, a rule arriving); bounded. */
async function waitVerdict(name: string, want: Verdict, timeoutMs = 30_000): Promise<void> {
  let last = 'none';
  try {
    await waitFor(
      `${name} ${want} from the peer`,
      async () => {
        const r = await lab!.probe({ from: peer, to: ct, timeoutMs: PROBE_TIMEOUT_MS, ...PROBES[name]! });
        last = `${r.verdict} (${r.detail})`;
        return r.verdict === want ? true : undefined;
      },
      timeoutMs,
      200,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last probe: ${last}; container: ${domainState()}`);
  }
}

// ---- setup and cleanup ---------------------------------------------------------------------------

beforeAll(async () => {
  // The LXC driver must be loaded (libvirt-up.sh restarts libvirtd once if it predates the package)
  // and bridged frames must reach iptables (netlab.sh up). Both are no-ops when already so.
  hack('libvirt-up.sh');
  hack('netlab.sh', 'up');
  kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', join(REPO, 'crds')]);
  kubectlOk(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);

  lab = await Lab.create({ name: `pk-${RUN}` });
  // Under the lab's lock, a container of ours is a killed run's: it would still hold 198.18.0.200.
  for (const name of virshOk('list', '--all', '--name').split('\n').map((s) => s.trim())) {
    if (LEFTOVER_DOMAIN.test(name)) removeDomain(name);
  }
  peer = await lab.addEndpoint(`p${RUN}`, PEER);
  dir = mkdtempSync(join(tmpdir(), `${P}-`));
  writeFileSync(join(dir, 'domain.xml'), domainXml());
  virshOk('define', join(dir, 'domain.xml'));
  mark('lab, peer and container defined');
}, 600_000);

afterAll(async () => {
  const errors: string[] = [];
  const step = async (what: string, f: () => unknown) => {
    try {
      await f();
    } catch (err) {
      errors.push(`${what}: ${(err as Error).message}`);
    }
  };
  // Shut off first: LXC refuses live device updates, so the agent's detach must find only the
  // persistent definition to change.
  await step('destroy container', () => virsh('domstate', DOMAIN).stdout.includes('running') && virshOk('destroy', DOMAIN));
  await step('delete VMFilter', () => {
    const r = kubectl(['delete', 'vmfilters', '-l', `test=${P}`, '--ignore-not-found', '--timeout=60s']);
    if (r.code !== 0) {
      // No agent to detach (it died): drop the finalizer so that the object goes.
      kubectl(['patch', 'vmfilter', DOMAIN, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      throw new Error(`kubectl delete vmfilter: ${r.stderr.trim()} (finalizer removed)`);
    }
  });
  await step('delete policies', () => kubectl(['delete', 'departmentpolicies,servicepolicies', '-l', `test=${P}`, '--ignore-not-found', '--timeout=60s']));
  await step('stop agent', () => agent?.stop());
  await step('stop controller', () => controller?.stop());
  await step('remove container', () => removeDomain(DOMAIN));
  await step('undefine filters', () => {
    const names = virsh('nwfilter-list').stdout.split('\n').map((l) => l.trim().split(/\s+/)[1] ?? '');
    for (const n of names.filter((n) => n.startsWith(`nwf-vm-${P}`) || n.startsWith(`nwf-dept-${P}`))) virshOk('nwfilter-undefine', n);
  });
  await step('forget flows', () => forgetFlows());
  await step('close lab', () => lab?.close());
  await step('remove temp dir', () => dir && rmSync(dir, { recursive: true, force: true }));
  mark('cleaned up');
  process.stdout.write(`packets e2e (${P}): ${timings.join(', ')}\n`);
  if (errors.length) throw new Error(`cleanup: ${errors.join('; ')}`);
}, 300_000);

// ---- the test ------------------------------------------------------------------------------------

describe('operator end to end with real packets (LXC container on the lab bridge)', () => {
  it('without any filter, the container answers every probe from the peer', async () => {
    virshOk('start', DOMAIN);
    await waitVerdict('tcp 22', 'open');
    await expectVerdicts({ 'tcp 22': 'open', 'tcp 80': 'open', 'udp 53': 'open', icmp: 'open' });
    // Shut off again: the agent attaches to the persistent definition (see the header).
    virshOk('destroy', DOMAIN);
    expect(domainState()).toBe('shut off');
    mark('baseline probed');
  });

  it('policies applied: the agent attaches the VM filter, the started container is filtered as compiled', async () => {
    controller = await startOperator('controller', ['--leader-elect', 'false', '--status-coalesce', '300ms'], `controller-${P}`);
    agent = await startOperator('agent', ['--node-name', NODE, '--libvirt-uri', LXC_URI], `agent-${P}`);
    applyObjects([service('ssh', 'tcp', 22), service('http', 'tcp', 80), service('dns', 'udp', 53), department('allow'), vmFilter]);
    const o = await waitApplied('VMFilter Ready on the shut-off container');
    expect(o.status?.nodeName).toBe(NODE);
    expect(filterrefs(true)).toEqual([vmFilterName(DOMAIN)]);
    // Shut off: one config-only update, nothing live.
    expect(await writes('update-device')).toBe(1);
    mark('VMFilter Ready');

    const xmlReads = () => agentMetric('nwfilter_operator_libvirt_call_duration_seconds_count', { op: 'domain-get-xml' });
    const errors = () => agentMetric('nwfilter_operator_reconcile_total', { kind: 'VMFilter', result: 'error' });
    const [readsBefore, errorsBefore] = [await xmlReads(), await errors()];
    virshOk('start', DOMAIN);
    // libvirt instantiated the persistent filterref when it started the container.
    expect(filterrefs(false)).toEqual([vmFilterName(DOMAIN)]);
    const binding = virshOk('nwfilter-binding-dumpxml', HOST_VETH);
    expect(binding).toContain(`<filterref filter='${vmFilterName(DOMAIN)}'>`);
    expect(binding).toContain(`<parameter name='IP' value='${CT_IP}'/>`);
    // The agent sees the start (lifecycle event over lxc:///), reads the live definition, finds the
    // filterref there already and writes nothing; a live update would fail on LXC (an error here).
    await waitFor('the agent re-reads the started container', async () => {
      if ((await errors()) > errorsBefore) throw new Error(`agent reconcile failed after the start; see ${agent!.logFile}`);
      return (await xmlReads()) > readsBefore ? true : undefined;
    }, 30_000);
    await waitApplied('still Ready after the start');
    expect(await errors()).toBe(errorsBefore);
    expect(await writes('update-device')).toBe(1);

    await waitVerdict('tcp 22', 'open');
    mark('container started and filtered');
    await expectVerdicts({ 'tcp 22': 'open', 'tcp 80': 'dropped', 'udp 53': 'open', icmp: 'open' });
    const chains = (await lab!.chains(ct)).iptables;
    for (const chain of ['FI', 'FO', 'HI']) expect(chains).toContain(`-N ${chain}-${HOST_VETH}`);
    expect(chains).toMatch(new RegExp(`-A FO-${HOST_VETH} -p tcp -m tcp --dport 22 .*-j ACCEPT`));
    expect(chains.split('\n').filter((l) => l.startsWith(`-A FO-${HOST_VETH} `)).at(-1)).toMatch(/-j DROP$/);
    mark('probed with the first policy');
  });

  it('a department change (ssh provide: deny) reaches the running container without touching the VM filter or the domain', async () => {
    const vmFilterBefore = filterXml(vmFilterName(DOMAIN));
    const deptBefore = filterXml(departmentFilterName(DEPT));
    const chainsBefore = (await lab!.chains(ct)).iptables;
    const hashBefore = vmObj().status!.appliedHash;
    const [definesBefore, updatesBefore, undefinesBefore] = [await writes('define'), await writes('update-device'), await writes('undefine')];
    const driftBefore = await agentMetric('nwfilter_operator_drift_repairs_total');

    applyObjects([department('deny')]);
    await waitApplied('the new hash applied', (o) => o.status?.appliedHash !== hashBefore);
    mark('department change applied');

    // One define (the department's filter), no device update, no undefine; the VM's filter is the
    // same object, byte for byte (its UUID included).
    expect(await writes('define')).toBe(definesBefore + 1);
    expect(await writes('update-device')).toBe(updatesBefore);
    expect(await writes('undefine')).toBe(undefinesBefore);
    // A policy change is an update, not a repair of drift.
    expect(await agentMetric('nwfilter_operator_drift_repairs_total')).toBe(driftBefore);
    expect(filterXml(vmFilterName(DOMAIN))).toBe(vmFilterBefore);
    const deptAfter = filterXml(departmentFilterName(DEPT));
    expect(deptAfter).not.toBe(deptBefore);
    expect(deptAfter.match(/<uuid>[^<]+<\/uuid>/)?.[0]).toBe(deptBefore.match(/<uuid>[^<]+<\/uuid>/)?.[0]);
    // The domain still references the VM filter, live and persistent, and the binding is the same.
    expect(filterrefs(false)).toEqual([vmFilterName(DOMAIN)]);
    expect(filterrefs(true)).toEqual([vmFilterName(DOMAIN)]);
    expect(virshOk('nwfilter-binding-dumpxml', HOST_VETH)).toContain(`<filterref filter='${vmFilterName(DOMAIN)}'>`);

    // libvirt rebuilt the bound interface's chains from the redefined department filter.
    const chainsAfter = (await lab!.chains(ct)).iptables;
    expect(chainsAfter).not.toBe(chainsBefore);
    expect(chainsAfter).not.toMatch(new RegExp(`-A FO-${HOST_VETH} -p tcp -m tcp --dport 22 .*-j ACCEPT`));
    expect(chainsAfter).toMatch(new RegExp(`-A FO-${HOST_VETH} -p tcp -m tcp --dport 22 .*-j DROP`));

    await waitVerdict('tcp 22', 'dropped', 10_000);
    await expectVerdicts(AFTER_DEPARTMENT_CHANGE);
    mark('probed after the department change');
  });

  it('a running container\'s interface cannot change (LXC): a new binding parameter is refused live, reported, and arrives with the next start', async () => {
    const second = `${LAB.net4}.202`;
    const params = (xml: string) => [...xml.matchAll(/<parameter name='IP' value='([^']+)'\/>/g)].map((m) => m[1]);
    const liveBinding = () => virshOk('nwfilter-binding-dumpxml', HOST_VETH);
    const updatesBefore = await writes('update-device');

    // Only the interface's <filterref> parameters change (the filters, and so the hash, do not).
    applyObjects([{ ...vmFilter, spec: { ...vmFilter.spec, parameters: { ip: [CT_IP, second] } } }]);
    const failed = await waitFor('Ready=False LibvirtError', () => {
      const o = vmObj();
      return cond(o, 'Ready')?.reason === 'LibvirtError' ? o : undefined;
    }, 60_000);
    expect(cond(failed, 'Applied')).toMatchObject({ status: 'False', reason: 'LibvirtError' });
    expect(cond(failed, 'Applied')?.message).toMatch(/Unable to modify live devices/);
    // The persistent definition took the new parameters (one config update); the running container
    // and its binding keep the old ones, and so do its packets.
    expect(await writes('update-device')).toBe(updatesBefore + 1);
    expect(params(virshOk('dumpxml', '--inactive', DOMAIN))).toEqual([CT_IP, second]);
    expect(params(virshOk('dumpxml', DOMAIN))).toEqual([CT_IP]);
    expect(params(liveBinding())).toEqual([CT_IP]);
    await expectVerdicts(AFTER_DEPARTMENT_CHANGE);
    mark('live update refused');

    // Shut off, the container is the agent's persistent definition only: applied.
    virshOk('destroy', DOMAIN);
    await waitApplied('Applied once the container is shut off', (o) => o.status?.appliedGeneration === o.metadata.generation);
    virshOk('start', DOMAIN);
    expect(params(liveBinding())).toEqual([CT_IP, second]);
    await waitVerdict('udp 53', 'open');
    await expectVerdicts(AFTER_DEPARTMENT_CHANGE);
    await waitApplied('still Ready after the start');
    expect(await writes('update-device')).toBe(updatesBefore + 1);
    mark('new parameters in force after a restart');
  });
});
