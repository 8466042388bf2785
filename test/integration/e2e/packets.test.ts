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
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { departmentFilterName, vmFilterName } from '../../../src/policy/index.js';
import { cleanupSteps } from '../../helpers/cleanup.js';
import { applyObjects, getJson, kubectl, kubectlOk, waitFor } from '../../helpers/kubectl.js';
import {
  LXC_URI,
  containerDomainXml,
  containerEndpoint,
  containerVmFilter,
  domainState as stateOf,
  filterrefs as filterrefsOf,
  forgetFlows as forgetFlowsOf,
  labDepartment,
  probeAll as probeAllOf,
  removeDomain,
  removeLeftoverDomains,
  undefineFilters,
  virsh,
  virshOk,
  waitVerdict as waitVerdictOf,
  type ContainerSpec,
  type ProbeSet,
  type Verdicts,
} from '../../helpers/lxc-container.js';
import { metricValue, startOperator, type OperatorProcess } from '../../helpers/processes.js';
import { LAB, Lab, type Endpoint, type Verdict } from '../../packet/lab.js';

const API = 'nwfilter.infinibay.io/v1alpha1';
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
const SPEC: ContainerSpec = { domain: DOMAIN, hostVeth: HOST_VETH, ipv4: CT_IP, ipv6: `${LAB.net6}::200`, mac: CT_MAC, tcpPorts: TCP_PORTS, udpPorts: UDP_PORTS };
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

type Cond = { type: string; status: string; reason: string; message: string };
type VmObj = {
  metadata: { name: string; generation?: number };
  status?: { appliedHash?: string; desiredHash?: string; appliedGeneration?: number; nodeName?: string; conditions?: Cond[] };
};

let lab: Lab | undefined;
let peer: Endpoint;
const ct: Endpoint = containerEndpoint(SPEC);
let dir: string | undefined;
let controller: OperatorProcess | undefined;
let agent: OperatorProcess | undefined;
const timings: string[] = [];
const started = performance.now();
const mark = (what: string) => timings.push(`${what} at ${((performance.now() - started) / 1000).toFixed(1)} s`);

// ---- libvirt (LXC driver) and host commands ----------------------------------------------------

const domainState = () => stateOf(DOMAIN);
const filterrefs = (inactive: boolean) => filterrefsOf(DOMAIN, inactive);
const filterXml = (name: string) => virshOk('nwfilter-dumpxml', name);
const forgetFlows = () => forgetFlowsOf(CT_IP);

/** Runs a repo script; its output goes to the test log. */
function hack(script: string, ...args: string[]): void {
  execFileSync('bash', [join(REPO, 'hack', script), ...args], { stdio: 'inherit', timeout: 600_000 });
}

// ---- Kubernetes objects ------------------------------------------------------------------------

const labels = { test: P };
const service = (name: string, protocol: 'tcp' | 'udp', port: number) => ({
  apiVersion: API,
  kind: 'ServicePolicy',
  metadata: { name: `${P}-${name}`, labels },
  spec: { displayName: `${name} (packet e2e)`, ports: [{ protocol, port }], use: true, provide: false },
});
const department = (sshProvide: 'allow' | 'deny') =>
  labDepartment(DEPT, labels, [
    { name: `${P}-ssh`, provide: sshProvide },
    { name: `${P}-dns`, provide: 'allow' },
  ]);
const vmFilter = containerVmFilter(SPEC, DEPT, labels);

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

const PROBES: ProbeSet = {
  'tcp 22': { proto: 'tcp', family: 4, port: 22 },
  'tcp 80': { proto: 'tcp', family: 4, port: 80 },
  'udp 53': { proto: 'udp', family: 4, port: 53 },
  icmp: { proto: 'icmp', family: 4 },
};

/** Every probe of PROBES from the peer to the container, at the same time. */
const probeAll = () => probeAllOf(lab!, peer, ct, PROBES);

/** What the peer sees once the department denies ssh provide (the third and fourth tests). */
const AFTER_DEPARTMENT_CHANGE: Verdicts = { 'tcp 22': 'dropped', 'tcp 80': 'dropped', 'udp 53': 'open', icmp: 'open' };

async function expectVerdicts(expected: Verdicts): Promise<void> {
  const { verdicts, details } = await probeAll();
  expect(verdicts, details).toEqual(expected);
}

/** Polls one probe of PROBES until it gives `want`; bounded. */
const waitVerdict = (name: string, want: Verdict, timeoutMs = 30_000) => waitVerdictOf(lab!, peer, ct, PROBES[name]!, want, timeoutMs);

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
  removeLeftoverDomains(LEFTOVER_DOMAIN);
  peer = await lab.addEndpoint(`p${RUN}`, PEER);
  dir = mkdtempSync(join(tmpdir(), `${P}-`));
  writeFileSync(join(dir, 'domain.xml'), containerDomainXml(SPEC));
  virshOk('define', join(dir, 'domain.xml'));
  mark('lab, peer and container defined');
}, 600_000);

afterAll(async () => {
  const { step, done } = cleanupSteps();
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
  await step('delete policies', () => kubectl(['delete', 'departmentpolicies,servicepolicies,addressgroups', '-l', `test=${P}`, '--ignore-not-found', '--timeout=60s']));
  await step('stop agent', () => agent?.stop());
  await step('stop controller', () => controller?.stop());
  await step('remove container', () => removeDomain(DOMAIN));
  await step('undefine filters', () => undefineFilters(`nwf-vm-${P}`, `nwf-dept-${P}`));
  // The agent removes unused sets in its collections; a run stopped before one leaves this file's.
  await step('destroy kernel sets', () => {
    for (const name of execFileSync('ipset', ['list', '-n'], { encoding: 'utf8' }).split('\n')) {
      if (name.startsWith('nwf:') && name.includes(P.slice(0, 12))) execFileSync('ipset', ['destroy', name]);
    }
  });
  await step('forget flows', () => forgetFlows());
  await step('close lab', () => lab?.close());
  await step('remove temp dir', () => dir && rmSync(dir, { recursive: true, force: true }));
  mark('cleaned up');
  process.stdout.write(`packets e2e (${P}): ${timings.join(', ')}\n`);
  done();
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

  it('an AddressGroup change reaches the running container as a kernel set update: no define, no device update, the probe flips', async () => {
    const GROUP = `${P}-admins`;
    const group = (addresses: string[]) => ({ apiVersion: API, kind: 'AddressGroup', metadata: { name: GROUP, labels }, spec: { addresses } });
    const dept = department('deny');
    const withGroupRule = {
      ...dept,
      spec: { ...dept.spec, rules: [...dept.spec.rules, { action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 80 }], sourceGroup: GROUP, comment: 'http from the admins' }] },
    };
    const hashBefore = vmObj().status!.appliedHash;
    applyObjects([group(['203.0.113.0/24']), withGroupRule]);
    await waitApplied('the group rule applied', (o) => o.status?.appliedHash !== hashBefore);
    await expectVerdicts(AFTER_DEPARTMENT_CHANGE); // the peer is not in the group
    const sets = () => execFileSync('ipset', ['list', '-n'], { encoding: 'utf8' }).split('\n').filter((n) => n.startsWith('nwf:') && n.includes(GROUP.slice(0, 12)));
    expect(sets().length).toBeGreaterThan(0);

    const [definesBefore, updatesBefore] = [await writes('define'), await writes('update-device')];
    const syncsBefore = await agentMetric('nwfilter_operator_address_set_syncs_total', { result: 'ok' });
    const appliedHash = vmObj().status!.appliedHash;
    const deptXml = filterXml(departmentFilterName(DEPT));
    applyObjects([group(['203.0.113.0/24', PEER.ipv4])]);
    const flipStarted = performance.now();
    await waitVerdict('tcp 80', 'open', 30_000);
    mark(`group membership flipped the probe in ${Math.round(performance.now() - flipStarted)} ms`);
    // The kernel set changed; libvirt was not asked for anything.
    expect(await writes('define')).toBe(definesBefore);
    expect(await writes('update-device')).toBe(updatesBefore);
    expect(await agentMetric('nwfilter_operator_address_set_syncs_total', { result: 'ok' })).toBeGreaterThan(syncsBefore);
    expect(filterXml(departmentFilterName(DEPT))).toBe(deptXml);
    expect(vmObj().status!.appliedHash).toBe(appliedHash);
    await expectVerdicts({ ...AFTER_DEPARTMENT_CHANGE, 'tcp 80': 'open' });

    applyObjects([group(['203.0.113.0/24'])]);
    await waitVerdict('tcp 80', 'dropped', 30_000);
    await expectVerdicts(AFTER_DEPARTMENT_CHANGE);
    expect(await writes('define')).toBe(definesBefore);
    mark('group membership flipped back');
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
