// The agent's fail-closed promise (docs/status.md: the Applied reasons, "Which agent writes
// Applied", "What never happens to a protected interface", Deletion, Migration, Ownership), one
// fault per test, against the real stack: controller and agent as processes, a real
// kube-apiserver + etcd, a real libvirtd with shut-off qemu domains. Every assertion reads what
// libvirt really has (virsh) and what the VMFilter's status says; the figures (resyncs seen through
// the metric, libvirt writes before/after) are printed with console.log.
// Every object, domain and filter carries this run's prefix.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { departmentFilterName, filterUuid, quarantineFilter, sameFilter, vmFilterName } from '../../../src/policy/index.js';
import { applyCrds, applyObjects, getJson, kubectl, kubectlOk, mutateCrd, waitFor } from '../../helpers/kubectl.js';
import {
  attachInterfaceConfig,
  attachInterfaceLive,
  defineDomain,
  defineFilter,
  domainFilterrefs,
  domainInterfaceFilters,
  domainNames,
  domainUuid,
  filterNames,
  removeDomain,
  virsh,
} from '../../helpers/libvirt-cli.js';
import { metricValue, startOperator, type OperatorProcess } from '../../helpers/processes.js';

const P = `fc${Date.now().toString(36)}`;
const NODE = `node-${P}`;
const OTHER_NODE = `other-${P}`;
const API = 'nwfilter.infinibay.io/v1alpha1';
const CRD = 'vmfilters.nwfilter.infinibay.io';
const SHORT = '3000ms';
const SHORT_MS = 3000;
const LONG = '10m';

type Cond = { type: string; status: string; reason: string; message: string };
type Obj = { metadata: { name: string; generation?: number; creationTimestamp?: string }; status?: Record<string, any> };
const cond = (o: Obj | undefined, type: string): Cond | undefined => (o?.status?.conditions as Cond[] | undefined)?.find((c) => c.type === type);
const vmObj = (name: string): Obj | undefined => {
  const r = kubectl(['get', 'vmfilter', name, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as Obj) : undefined;
};
const applied = (name: string) => cond(vmObj(name), 'Applied');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let tapSeq = 0;
const tap = () => `fc${(tapSeq++).toString(36)}${P.slice(-7)}`;
const mac = (a: number, b: number) => `52:54:00:fc:${a.toString(16).padStart(2, '0')}:${b.toString(16).padStart(2, '0')}`;

function vmFilter(name: string, spec: Record<string, unknown>, extra: { case: string; annotations?: Record<string, string> }): object {
  return {
    apiVersion: API,
    kind: 'VMFilter',
    metadata: { name, labels: { test: P, case: extra.case }, ...(extra.annotations ? { annotations: extra.annotations } : {}) },
    spec,
  };
}

let controller: OperatorProcess | undefined;
let agent: OperatorProcess | undefined;
let agentResync = '';

/** The agent of NODE with this resync period: reuses the running one, or replaces it. Never two at once (one libvirtd). */
async function useAgent(resync: string, label = resync): Promise<OperatorProcess> {
  const alive = agent && agent.child.exitCode === null && agent.child.signalCode === null;
  if (agent && alive && agentResync === resync) return agent;
  if (agent) await agent.stop();
  agent = await startOperator('agent', ['--node-name', NODE, '--resync-period', resync], `agent-${P}-${label}`);
  agentResync = resync;
  return agent;
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue(await agent!.metrics(), name, labels);
}
async function libvirtWrites(): Promise<{ define: number; undefine: number; update: number }> {
  const text = await agent!.metrics();
  const w = (op: string) => metricValue(text, 'nwfilter_operator_libvirt_writes_total', { op });
  return { define: w('define'), undefine: w('undefine'), update: w('update-device') };
}
const resyncs = () => metric('nwfilter_operator_resyncs_total');

/** Waits until the agent counted `n` more resyncs, then lets the pass (listing, reconciles, collection) finish. */
async function waitResyncs(n: number, periodMs: number): Promise<number> {
  const start = await resyncs();
  const seen = await waitFor(`${n} resyncs`, async () => ((await resyncs()) >= start + n ? resyncs() : undefined), n * periodMs * 3 + 15_000, 200);
  await sleep(1200);
  return seen - start;
}

async function waitApplied(name: string, reason: string, timeoutMs = 30_000): Promise<Cond> {
  return waitFor(`${name} Applied reason ${reason}`, () => {
    const c = applied(name);
    return c?.reason === reason ? c : undefined;
  }, timeoutMs);
}

/** Deletes this case's VMFilters (the agent must be running: the finalizer waits for it) and domains. */
async function cleanupCase(caseName: string, domains: string[]): Promise<void> {
  kubectl(['delete', 'vmfilters', '-l', `test=${P},case=${caseName}`, '--wait=false']);
  await waitFor(`VMFilters of ${caseName} gone`, () => (kubectlOk(['get', 'vmfilters', '-l', `test=${P},case=${caseName}`, '-o', 'name']).trim() === '' ? true : undefined), 60_000, 500).catch((err) =>
    console.log(`[cleanup ${caseName}] ${String(err)}`),
  );
  for (const d of domains) removeDomain(d);
}

beforeAll(async () => {
  applyCrds();
  controller = await startOperator('controller', ['--leader-elect', 'false', '--status-coalesce', '300ms'], `controller-${P}`);
});

afterAll(async () => {
  // The strict CRDs, whatever a failed test left behind.
  kubectl(['apply', '--server-side', '--force-conflicts', '-f', 'crds/']);
  if (agent) await useAgent(agentResync || SHORT).catch(() => undefined);
  kubectl(['delete', 'vmfilters', '-l', `test=${P}`, '--wait=false']);
  await waitFor('VMFilters gone', () => (kubectlOk(['get', 'vmfilters', '-l', `test=${P}`, '-o', 'name']).trim() === '' ? true : undefined), 60_000, 500).catch(() => {
    // No agent to release them: drop the finalizers so that nothing of this run stays.
    for (const n of kubectlOk(['get', 'vmfilters', '-l', `test=${P}`, '-o', 'name']).split('\n').filter(Boolean)) {
      kubectl(['patch', n, '--type', 'merge', '-p', '{"metadata":{"finalizers":null}}']);
    }
  });
  kubectl(['delete', 'departmentpolicies,servicepolicies', '-l', `test=${P}`]);
  await agent?.stop();
  await controller?.stop();
  for (const d of domainNames(P)) removeDomain(d);
  for (const prefix of [`nwf-vm-${P}`, `nwf-dept-${P}`, `nwf-${P}`]) for (const f of filterNames(prefix)) virsh('nwfilter-undefine', f);
});

describe('fail-closed agent, end to end', () => {
  // ---- agent with a short resync period ----

  it('fault 1: an agent restart with a stored VMFilter that no longer validates keeps its filter (InvalidSpec)', async () => {
    await useAgent(SHORT);
    const name = `${P}-invalid`;
    const filter = vmFilterName(name);
    defineDomain(name, mac(1, 1), tap());
    try {
      applyObjects([vmFilter(name, { domain: { name } }, { case: 'f1' })]);
      await waitApplied(name, 'Applied');
      expect(domainFilterrefs(name, true)).toEqual([filter]);

      // The agent dies; meanwhile the object is changed under an older, looser CRD (no "exactly one
      // of name or uuid" rule), which today's schema (src/api/vm-filter.ts DomainRef) refuses.
      expect(await agent!.stop('SIGKILL')).toBeNull();
      const uuid = domainUuid(name);
      mutateCrd(CRD, (crd) => {
        delete crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.domain['x-kubernetes-validations'];
      });
      try {
        await waitFor('the looser CRD admits name and uuid together', () => (kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], JSON.stringify(vmFilter(name, { domain: { name, uuid } }, { case: 'f1' }))).code === 0 ? true : undefined), 30_000, 500);
      } finally {
        applyCrds();
      }
      // The strict CRD is back: the same spec on a new object is refused, the stored one stays as it is.
      await waitFor('the strict CRD refuses it again', () => {
        const r = kubectl(['apply', '--server-side', '--dry-run=server', '-f', '-'], JSON.stringify(vmFilter(`${name}-probe`, { domain: { name, uuid } }, { case: 'f1' })));
        return r.code !== 0 && r.stderr.includes('exactly one of name or uuid') ? true : undefined;
      }, 30_000, 500);
      expect(getJson<{ spec: { domain: object } }>(['vmfilter', name]).spec.domain).toEqual({ name, uuid });

      agent = undefined;
      await useAgent(SHORT, 'short-restarted');
      const c = await waitApplied(name, 'InvalidSpec');
      const seen = await waitResyncs(2, SHORT_MS); // every resync ends with a garbage collection
      const w = await libvirtWrites();
      console.log(`[fault 1] after the restart: resyncs observed ${seen}, libvirt writes ${JSON.stringify(w)}, vm_protection{InvalidSpec}=${await metric('nwfilter_operator_vm_protection', { reason: 'InvalidSpec' })}; Applied: ${c.status}/${c.reason}: ${c.message}`);
      expect(seen).toBeGreaterThanOrEqual(2);
      expect(domainFilterrefs(name, true)).toEqual([filter]);
      expect(filterNames(filter)).toContain(filter);
      expect(applied(name)).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
      // Nothing was detached or undefined.
      expect(w.undefine).toBe(0);
      expect(w.update).toBe(0);
    } finally {
      applyCrds();
      await useAgent(SHORT);
      await cleanupCase('f1', [name]);
    }
  });

  it('fault 2: spec.nodeName edited to another node while the domain is here keeps the filter (NodeMismatch), then hands over (Removed)', async () => {
    await useAgent(SHORT);
    const name = `${P}-moved`;
    const filter = vmFilterName(name);
    defineDomain(name, mac(2, 1), tap());
    try {
      applyObjects([vmFilter(name, { domain: { name } }, { case: 'f2' })]);
      await waitApplied(name, 'Applied');
      applyObjects([vmFilter(name, { domain: { name }, nodeName: OTHER_NODE }, { case: 'f2' })]);
      const c = await waitApplied(name, 'NodeMismatch');
      const before = await libvirtWrites();
      for (let i = 1; i <= 2; i++) {
        await waitResyncs(1, SHORT_MS);
        expect(domainFilterrefs(name, true), `after resync ${i}`).toEqual([filter]);
        expect(filterNames(filter)).toContain(filter);
        expect(applied(name)).toMatchObject({ status: 'False', reason: 'NodeMismatch' });
      }
      const after = await libvirtWrites();
      console.log(`[fault 2] NodeMismatch over 2 resyncs: libvirt writes before ${JSON.stringify(before)} after ${JSON.stringify(after)}; Applied: ${c.reason}: ${c.message}`);
      expect(after.undefine).toBe(before.undefine);
      expect(after.update).toBe(before.update);

      // The domain leaves this node: the agent hands over.
      const t0 = Date.now();
      removeDomain(name);
      const r = await waitApplied(name, 'Removed');
      await waitFor('filter undefined', () => (filterNames(filter).includes(filter) ? undefined : true), 15_000);
      console.log(`[fault 2] handed over in ${Date.now() - t0} ms; Applied: ${r.status}/${r.reason}: ${r.message}`);
      expect(r.status).toBe('False');
      expect(vmObj(name)!.status!.nodeName).toBe(NODE);
    } finally {
      await cleanupCase('f2', [name]);
    }
  });

  it("fault 10: a VMFilter that leaves the agent's watch (re-pinned elsewhere, held by another node) keeps its filter; VMs of other nodes are not watched", async () => {
    await useAgent(SHORT);
    const name = `${P}-left`;
    const filter = vmFilterName(name);
    defineDomain(name, mac(10, 1), tap());
    const elsewhere = Array.from({ length: 30 }, (_, i) => `${P}-far-${i}`);
    try {
      applyObjects([vmFilter(name, { domain: { name } }, { case: 'f10' })]);
      await waitApplied(name, 'Applied');
      const watchedBefore = await metric('nwfilter_operator_watched_vmfilters');
      // 30 VMs pinned to another node: this agent's watches never deliver them.
      applyObjects(elsewhere.map((n) => vmFilter(n, { domain: { name: n }, nodeName: OTHER_NODE }, { case: 'f10' })));
      // One list per poll, not 30 gets: 30 kubectl processes per poll starve the controller on 2 cores.
      const farAccepted = (): number =>
        getJson<{ items: Obj[] }>(['vmfilters', '-l', `test=${P},case=f10`]).items.filter((o) => o.metadata.name !== name && cond(o, 'Accepted')?.status === 'True').length;
      await waitFor('controller accepted the 30', () => (farAccepted() === elsewhere.length ? true : undefined), 90_000, 1000);
      await sleep(1500);
      const watchedFar = await metric('nwfilter_operator_watched_vmfilters');
      console.log(`[fault 10] watched_vmfilters ${watchedBefore} before and ${watchedFar} after 30 VMFilters pinned to another node`);
      expect(watchedFar).toBe(watchedBefore);

      // Re-pinned while the domain is here (still held here: NodeMismatch), then the holder is
      // overwritten: no watch of this node selects the object any more.
      applyObjects([vmFilter(name, { domain: { name }, nodeName: OTHER_NODE }, { case: 'f10' })]);
      await waitApplied(name, 'NodeMismatch');
      const before = await libvirtWrites();
      kubectlOk(['patch', 'vmfilter', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { nodeName: `ghost-${P}` } })]);
      // The agent reads the object back, finds its domain here and holds it again.
      const back = await waitFor('held again', () => (vmObj(name)?.status?.nodeName === NODE ? vmObj(name) : undefined), 30_000, 200);
      expect(cond(back, 'Applied')).toMatchObject({ status: 'False', reason: 'NodeMismatch' });
      expect(domainFilterrefs(name, true)).toEqual([filter]);
      await waitResyncs(1, SHORT_MS);
      expect(domainFilterrefs(name, true)).toEqual([filter]);
      expect(filterNames(filter)).toContain(filter);
      const after = await libvirtWrites();
      console.log(`[fault 10] left the watch and read back: libvirt writes before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
      expect(after.undefine).toBe(before.undefine);
      expect(after.update).toBe(before.update);
    } finally {
      await cleanupCase('f10', [name]);
    }
  });

  it('fault 6: two VMFilters for one domain: the older keeps it (Applied), the newer is Conflict, no flip-flop over resyncs', async () => {
    await useAgent(SHORT);
    const dom = `${P}-dup`;
    const older = `${P}-dup-a`;
    const newer = `${P}-dup-b`;
    defineDomain(dom, mac(6, 1), tap());
    try {
      applyObjects([vmFilter(older, { domain: { name: dom } }, { case: 'f6' })]);
      await waitApplied(older, 'Applied');
      await sleep(1100); // a later creationTimestamp (1 s resolution); the name breaks a tie the same way
      applyObjects([vmFilter(newer, { domain: { name: dom }, rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 8080 }] }] }, { case: 'f6' })]);
      const c = await waitApplied(newer, 'Conflict');
      await sleep(1500);
      const before = await libvirtWrites();
      const seen = await waitResyncs(3, SHORT_MS);
      const after = await libvirtWrites();
      console.log(`[fault 6] resyncs observed ${seen}; libvirt writes before ${JSON.stringify(before)} after ${JSON.stringify(after)}; newer: ${c.reason}: ${c.message}`);
      expect(seen).toBeGreaterThanOrEqual(3);
      expect(domainFilterrefs(dom, true)).toEqual([vmFilterName(older)]);
      expect(applied(older)).toMatchObject({ status: 'True', reason: 'Applied' });
      expect(applied(newer)).toMatchObject({ status: 'False', reason: 'Conflict' });
      expect(after.update).toBe(before.update);
    } finally {
      await cleanupCase('f6', [dom]);
    }
  });

  // libvirt keeps only the first 256 *bytes* of a comment: clamping by characters made the stored
  // filter differ from the desired one, and the agent redefined it (a "drift repair") at every resync.
  it('fault 7: a multi-byte comment longer than 256 bytes is not redefined at every resync', async () => {
    await useAgent(SHORT);
    const name = `${P}-utf8`;
    const comment = Array.from({ length: 14 }, () => 'ünïcödé ✓ 日本語').join(' ');
    expect(comment.length).toBeLessThanOrEqual(200); // the CRD's limit, in characters
    expect(Buffer.byteLength(comment)).toBeGreaterThan(256); // libvirt's limit, in bytes
    defineDomain(name, mac(7, 1), tap());
    try {
      applyObjects([vmFilter(name, { domain: { name }, rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 2222 }], comment }] }, { case: 'f7' })]);
      const c = await waitApplied(name, 'Applied');
      await sleep(1500);
      const before = await libvirtWrites();
      const drift0 = await metric('nwfilter_operator_drift_repairs_total');
      const seen = await waitResyncs(3, SHORT_MS);
      const after = await libvirtWrites();
      const drift = (await metric('nwfilter_operator_drift_repairs_total')) - drift0;
      const stored = /comment='(ünïcödé[^']*)'/.exec(virsh('nwfilter-dumpxml', vmFilterName(name)).stdout)?.[1] ?? '';
      console.log(
        `[fault 7] comment ${comment.length} chars / ${Buffer.byteLength(comment)} bytes, libvirt stores ${stored.length} chars / ${Buffer.byteLength(stored)} bytes; ` +
          `resyncs observed ${seen}; define writes before ${before.define} after ${after.define}; drift repairs counted ${drift}; Applied: ${c.reason}`,
      );
      expect(domainFilterrefs(name, true)).toEqual([vmFilterName(name)]);
      expect(seen).toBeGreaterThanOrEqual(3);
      expect(after.define).toBe(before.define);
    } finally {
      await cleanupCase('f7', [name]);
    }
  });

  it("fault 8: a user's own nwf-* filters (random UUID) survive garbage collection and are never attached or modified", async () => {
    await useAgent(SHORT);
    const own = `nwf-${P}-users-own`;
    const ownVm = `nwf-vm-${P}-users-own`; // even a VM filter name with no VMFilter: not ours without our UUID
    const orphan = `nwf-vm-${P}-orphan`; // our name AND our UUID, no VMFilter: the collector must remove it
    for (const n of [own, ownVm]) defineFilter(`<filter name='${n}' chain='root'><rule action='accept' direction='out' priority='500'><all/></rule></filter>`);
    defineFilter(`<filter name='${orphan}' chain='root'><uuid>${filterUuid(orphan)}</uuid><rule action='drop' direction='inout' priority='500'><all/></rule></filter>`);
    const xmlBefore = Object.fromEntries([own, ownVm].map((n) => [n, virsh('nwfilter-dumpxml', n).stdout]));
    for (const n of [own, ownVm]) expect(xmlBefore[n]).not.toContain(filterUuid(n));
    const name = `${P}-gc`;
    defineDomain(name, mac(8, 1), tap());
    try {
      applyObjects([vmFilter(name, { domain: { name } }, { case: 'f8' })]);
      await waitApplied(name, 'Applied');
      const before = await libvirtWrites();
      // Deleting a VMFilter schedules a collection; a resync runs one as well.
      kubectlOk(['delete', 'vmfilter', name, '--timeout=60s']);
      const seen = await waitResyncs(1, SHORT_MS);
      await waitFor('the orphan of ours collected', () => (filterNames(orphan).includes(orphan) ? undefined : true), 15_000);
      const after = await libvirtWrites();
      const attached = domainNames().flatMap((d) => [...domainFilterrefs(d, true), ...domainFilterrefs(d)]);
      console.log(`[fault 8] resyncs observed ${seen}; libvirt writes before ${JSON.stringify(before)} after ${JSON.stringify(after)}; user filters: ${[own, ownVm].map((n) => `${n} uuid ${/<uuid>([^<]+)/.exec(xmlBefore[n]!)?.[1]}`).join(', ')}`);
      for (const n of [own, ownVm]) {
        expect(filterNames(n)).toContain(n);
        expect(virsh('nwfilter-dumpxml', n).stdout).toBe(xmlBefore[n]);
        expect(attached).not.toContain(n);
      }
      expect(filterNames(orphan)).not.toContain(orphan);
      expect(filterNames(vmFilterName(name))).not.toContain(vmFilterName(name));
      expect(domainFilterrefs(name, true)).toEqual([]);
    } finally {
      await cleanupCase('f8', [name]);
      for (const n of [own, ownVm, orphan]) virsh('nwfilter-undefine', n);
    }
  });

  // ---- agent with a long resync period: only events can explain what happens ----

  it('fault 3: a burst of 20 VMFilters and then their 20 domains: all Applied within 60 s without a resync', async () => {
    await useAgent(LONG);
    const COUNT = 20;
    const names = Array.from({ length: COUNT }, (_, i) => `${P}-burst-${i}`);
    try {
      const r0 = await resyncs();
      applyObjects(names.map((n) => vmFilter(n, { domain: { name: n } }, { case: 'f3' })));
      const t0 = Date.now();
      names.forEach((n, i) => defineDomain(n, mac(3, i + 1), tap()));
      const defined = Date.now() - t0;
      await waitFor(
        'all 20 Applied',
        () => {
          const items = getJson<{ items: Obj[] }>(['vmfilters', '-l', `test=${P},case=f3`]).items;
          return items.length === COUNT && items.every((o) => cond(o, 'Applied')?.status === 'True') ? true : undefined;
        },
        60_000,
        250,
      );
      const took = Date.now() - t0;
      const w = await libvirtWrites();
      console.log(`[fault 3] ${COUNT} domains defined in ${defined} ms; all ${COUNT} Applied=True ${took} ms after the first define; resyncs during the burst ${(await resyncs()) - r0}; libvirt writes ${JSON.stringify(w)}`);
      expect((await resyncs()) - r0).toBe(0);
      for (const n of names) expect(domainFilterrefs(n, true), n).toEqual([vmFilterName(n)]);
      expect(took).toBeLessThan(60_000);
    } finally {
      await cleanupCase('f3', names);
    }
  });

  it('fault 4: an interface MAC that matches nothing: Applied=False NoInterfaces, Ready=False', async () => {
    await useAgent(LONG);
    const name = `${P}-nomac`;
    defineDomain(name, mac(4, 1), tap());
    try {
      applyObjects([vmFilter(name, { domain: { name }, interfaces: ['52:54:00:ff:ff:ff'] }, { case: 'f4' })]);
      const c = await waitApplied(name, 'NoInterfaces');
      const ready = await waitFor('Ready False', () => {
        const r = cond(vmObj(name), 'Ready');
        return r && r.status === 'False' && r.reason !== 'Pending' && r.reason !== 'Applying' ? r : undefined;
      }, 30_000);
      console.log(`[fault 4] Applied: ${c.status}/${c.reason}: ${c.message} | Ready: ${ready.status}/${ready.reason}`);
      expect(c.status).toBe('False');
      expect(domainFilterrefs(name, true)).toEqual([]);
      expect(filterNames(vmFilterName(name))).toContain(vmFilterName(name)); // "the filters are defined"
    } finally {
      await cleanupCase('f4', [name]);
    }
  });

  // libvirt reports a NIC hot-plugged into a running QEMU domain (device-added) but sends no event
  // for one added to the persistent definition of a shut-off domain (docs/status.md, "Hot-plugged
  // interfaces"): the first is bound within seconds, the second at the latest when the domain starts.
  it('fault 5: a NIC hot-plugged into a running domain carries the filter within seconds; one added to a shut-off definition is bound when the domain starts', async () => {
    await useAgent(LONG);
    const name = `${P}-hotplug`;
    const filter = vmFilterName(name);
    defineDomain(name, mac(5, 1), tap());
    try {
      applyObjects([vmFilter(name, { domain: { name } }, { case: 'f5' })]);
      await waitApplied(name, 'Applied');
      // Shut off: a NIC added to the persistent definition only.
      attachInterfaceConfig(name, mac(5, 2), tap());
      expect(virsh('start', name).code).toBe(0);
      const r0 = await resyncs();
      const t0 = Date.now();
      const carriedAll = (inactive: boolean, n: number) => {
        const list = domainInterfaceFilters(name, inactive);
        return list.length === n && list.every((i) => i.filter === filter);
      };
      const atStart = await waitFor('both NICs filtered once the domain started', () => (carriedAll(true, 2) && carriedAll(false, 2) ? Date.now() - t0 : undefined), 20_000, 100);
      // Running: a NIC hot-plugged live (device-added event).
      const before = await libvirtWrites();
      const t1 = Date.now();
      attachInterfaceLive(name, mac(5, 3), tap());
      const live = await waitFor('the hot-plugged NIC carries the filter', () => (carriedAll(false, 3) ? Date.now() - t1 : undefined), 20_000, 50);
      const after = await libvirtWrites();
      console.log(`[fault 5] config-only NIC filtered ${atStart} ms after start; live hot-plugged NIC filtered after ${live} ms; resyncs meanwhile ${(await resyncs()) - r0}; update-device writes ${before.update} -> ${after.update}`);
      expect((await resyncs()) - r0, 'no resync was needed (resync period 10m)').toBe(0);
      await waitFor('Applied on 3 interfaces', () => (applied(name)?.message.includes('on 3 interface(s)') ? true : undefined), 10_000);
    } finally {
      virsh('destroy', name);
      await cleanupCase('f5', [name]);
    }
  });

  it('fault 9: a VMFilter naming a missing department quarantines its domain; the department lifts it; the opt-out leaves the domain open and says so', async () => {
    await useAgent(LONG);
    const dept = `${P}-late-dept`;
    const name = `${P}-quar`;
    const optOut = `${P}-quar-off`;
    const filter = vmFilterName(name);
    defineDomain(name, mac(9, 1), tap());
    defineDomain(optOut, mac(9, 2), tap());
    try {
      applyObjects([vmFilter(name, { domain: { name }, department: dept }, { case: 'f9' })]);
      const q = await waitApplied(name, 'Quarantined');
      const qxml = virsh('nwfilter-dumpxml', filter).stdout;
      console.log(`[fault 9] Applied: ${q.status}/${q.reason}: ${q.message}`);
      expect(q.status).toBe('False');
      expect(domainFilterrefs(name, true)).toEqual([filter]);
      expect(qxml).not.toContain('<filterref');
      expect(sameFilter(qxml, quarantineFilter(name).xml)).toBe(true);
      // Only the base rules (ICMP errors of allowed connections, IPv6 neighbour discovery) accept; the rest drops.
      const rules = [...qxml.matchAll(/<rule action='(\w+)'[^>]*>\s*<(\S+)([^>]*)\/>/g)].map((m) => ({ action: m[1]!, proto: m[2]!, attrs: m[3]! }));
      expect(rules.length).toBeGreaterThan(0);
      for (const r of rules) {
        if (r.action === 'accept') expect(r.proto === 'icmpv6' || /state='RELATED'/.test(r.attrs), JSON.stringify(r)).toBe(true);
        else expect(r.action).toBe('drop');
      }
      expect(rules.some((r) => r.action === 'drop' && r.proto === 'all')).toBe(true);

      // The department appears: the real filter replaces the quarantine.
      applyObjects([{ apiVersion: API, kind: 'DepartmentPolicy', metadata: { name: dept, labels: { test: P } }, spec: {} }]);
      const a = await waitApplied(name, 'Applied');
      const real = virsh('nwfilter-dumpxml', filter).stdout;
      console.log(`[fault 9] after the department: Applied: ${a.status}/${a.reason}: ${a.message}`);
      expect(a.status).toBe('True');
      expect(domainFilterrefs(name, true)).toEqual([filter]);
      expect(sameFilter(real, quarantineFilter(name).xml)).toBe(false);
      expect(real).toContain(`<filterref filter='${departmentFilterName(dept)}'`);

      // Opted out: no filter at all, and the message says so.
      applyObjects([vmFilter(optOut, { domain: { name: optOut }, department: `${P}-no-such-dept` }, { case: 'f9', annotations: { 'nwfilter.infinibay.io/quarantine': 'false' } })]);
      const o = await waitFor('opt-out reported', () => {
        const c = applied(optOut);
        return c && c.status === 'False' && c.reason !== 'Pending' ? c : undefined;
      }, 30_000);
      console.log(`[fault 9] opted out: Applied: ${o.status}/${o.reason}: ${o.message}`);
      expect(o.message).toContain('NOT protected');
      expect(o.reason).not.toBe('Quarantined');
      expect(domainFilterrefs(optOut, true)).toEqual([]);
      expect(filterNames(vmFilterName(optOut))).not.toContain(vmFilterName(optOut));
    } finally {
      await cleanupCase('f9', [name, optOut]);
      kubectl(['delete', 'departmentpolicy', dept]);
    }
  });
});
