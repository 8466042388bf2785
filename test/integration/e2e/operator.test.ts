// The operator end to end: real kube-apiserver + etcd, real libvirtd, controller and agent as
// processes. Every object, filter and domain carries this run's prefix.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseResource } from '../../../src/api/index.js';
import { compilePolicy, sameFilter, vmFilterName, departmentFilterName} from '../../../src/policy/index.js';
import { prefixedExamples } from '../../helpers/examples.js';
import { applyObjects, getJson, kubectl, kubectlOk, waitFor } from '../../helpers/kubectl.js';
import { defineDomain, domainFilterrefs, filterNames, removeDomain, virsh } from '../../helpers/libvirt-cli.js';
import { metricValue, startOperator, type OperatorProcess } from '../../helpers/processes.js';

const P = `e2e${Date.now().toString(36)}`;
const NODE = `node-${P}`;
const ex = prefixedExamples(P);
type Obj = { metadata: { name: string; generation?: number }; status?: Record<string, any> };
const cond = (o: Obj, type: string) => (o.status?.conditions as { type: string; status: string; reason: string; message: string }[] | undefined)?.find((c) => c.type === type);
const vmNames = ex.vms.map((v) => v.metadata.name);
const RESYNC_MS = 6000;

let controller: OperatorProcess;
let agent: OperatorProcess;
const startAgent = () => startOperator('agent', ['--node-name', NODE, '--resync-period', `${RESYNC_MS}ms`], `agent-${P}`);
const writes = async (op: string) => metricValue(await agent.metrics(), 'nwfilter_operator_libvirt_writes_total', { op });
const vmObj = (name: string) => getJson<Obj>(['vmfilter', name]);
const allReady = () => vmNames.every((n) => cond(vmObj(n), 'Ready')?.status === 'True');

beforeAll(async () => {
  kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', 'crds/']);
  kubectlOk(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  ex.vms.forEach((v, i) => defineDomain(v.spec.domain.name!, `52:54:00:e2:00:${(i + 1).toString(16).padStart(2, '0')}`, `nwfe${i}${P.slice(-6)}`));
  controller = await startOperator('controller', ['--leader-elect', 'false', '--status-coalesce', '300ms'], `controller-${P}`);
  agent = await startAgent();
});

afterAll(async () => {
  kubectl(['delete', 'vmfilters', '-l', `test=${P}`, '--wait=true', '--timeout=60s']);
  kubectl(['delete', 'departmentpolicies,servicepolicies,addressgroups', '-l', `test=${P}`]);
  await agent?.stop();
  await controller?.stop();
  for (const v of ex.vms) removeDomain(v.spec.domain.name!);
  for (const f of filterNames(`nwf-vm-${P}`)) virsh('nwfilter-undefine', f);
  for (const f of filterNames(`nwf-dept-${P}`)) virsh('nwfilter-undefine', f);
});

describe('operator end to end', () => {
  it('applies the examples: every filter tree is in libvirt with the expected content and every VMFilter is Ready', async () => {
    applyObjects([...ex.addressGroups, ...ex.services, ...ex.departments, ...ex.vms]);
    await waitFor('all VMFilters Ready', () => (allReady() ? true : undefined), 120_000);
    // The global filter holds every ServicePolicy of the cluster, not only this run's.
    const services = getJson<{ items: unknown[] }>(['servicepolicies']).items.map((raw) => {
      const p = parseResource('cluster', raw);
      if ('message' in p) throw new Error(p.message);
      return p.value as (typeof ex.services)[number];
    });
    const expected = compilePolicy({ ...ex, services });
    for (const name of vmNames) {
      const r = expected.vms.get(name)!;
      expect(r.ok).toBe(true);
      if (!r.ok) continue;
      for (const f of r.treeFilters) {
        const dumped = virsh('nwfilter-dumpxml', f.filter.name);
        expect(dumped.code, f.filter.name).toBe(0);
        expect(sameFilter(dumped.stdout, f.xml), f.filter.name).toBe(true);
      }
      const o = vmObj(name);
      expect(o.status).toMatchObject({ nodeName: NODE, appliedHash: r.hash, desiredHash: r.hash, ruleCount: r.ruleCount, appliedGeneration: o.metadata.generation });
      expect(domainFilterrefs(ex.vms.find((v) => v.metadata.name === name)!.spec.domain.name!, true)).toEqual([vmFilterName(name)]);
    }
    const table = kubectlOk(['get', 'vmfilters', '-l', `test=${P}`]);
    expect(table.split('\n')[0]).toMatch(/NAME\s+DOMAIN\s+DEPARTMENT\s+NODE\s+RULES\s+READY\s+AGE/);
    expect(table).toContain(NODE);
    expect(kubectlOk(['get', 'nwfilter'])).toContain(`servicepolicy.nwfilter.infinibay.io/${P}-ssh`);
  });

  it('a department change is one define per changed filter, and reaches every member VM', async () => {
    const dept = ex.name('engineering');
    const members = ex.vms.filter((v) => v.spec.department === dept).map((v) => v.metadata.name);
    expect(members.length).toBeGreaterThanOrEqual(2);
    const before = Object.fromEntries(members.map((m) => [m, vmObj(m).status!.appliedHash as string]));
    const definesBefore = await writes('define');
    const d = ex.departments.find((x) => x.metadata.name === dept)!;
    applyObjects([{ ...d, spec: { ...d.spec, services: d.spec.services.map((s) => (s.name === ex.name('postgresql') ? { ...s, use: 'deny' } : s)) } }]);
    await waitFor('members report the new hash', () => (members.every((m) => vmObj(m).status!.appliedHash !== before[m] && cond(vmObj(m), 'Ready')?.status === 'True') ? true : undefined), 60_000);
    expect((await writes('define')) - definesBefore).toBe(1);
    expect(virsh('nwfilter-dumpxml', departmentFilterName(dept)).stdout).toMatch(/action='drop' direction='out' priority='-390'>\s*<tcp [^>]*dstportstart='5432'/);
  });

  it('a VM override beats its department; an enforced department setting beats the VM override', () => {
    const web = vmObj(ex.name('eng-web-01'));
    const eff = Object.fromEntries((web.status!.effectiveServices as { name: string }[]).map((s) => [s.name, s]));
    expect(eff[ex.name('ssh')]).toMatchObject({ use: false, useSource: 'vm', provide: true, provideSource: 'department' });
    expect(eff[ex.name('smtp')]).toMatchObject({ use: false, useSource: 'department-enforced' });
    expect(cond(web, 'Accepted')!.message).toContain('has no effect');
  });

  it('idle for a full resync period: no libvirt write at all', async () => {
    await new Promise((r) => setTimeout(r, 1500));
    const before = (await writes('define')) + (await writes('undefine')) + (await writes('update-device'));
    await new Promise((r) => setTimeout(r, RESYNC_MS * 1.5));
    const after = (await writes('define')) + (await writes('undefine')) + (await writes('update-device'));
    expect(after).toBe(before);
    expect(metricValue(await agent.metrics(), 'nwfilter_operator_reconcile_total', { kind: 'VMFilter' })).toBeGreaterThan(0);
  });

  it('repairs drift: a managed filter removed or changed outside the operator is restored within a resync', async () => {
    const name = vmFilterName(ex.name('lab-standalone'));
    const good = virsh('nwfilter-dumpxml', name).stdout;
    const drift0 = metricValue(await agent.metrics(), 'nwfilter_operator_drift_repairs_total');
    const tampered = good.replace(/<rule action='drop' direction='inout' priority='1000'>/, "<rule action='accept' direction='inout' priority='1000'>");
    expect(tampered).not.toBe(good);
    const file = `/tmp/${P}-tampered.xml`;
    (await import('node:fs')).writeFileSync(file, tampered);
    expect(virsh('nwfilter-define', file).code).toBe(0);
    await waitFor('filter restored', () => (sameFilter(virsh('nwfilter-dumpxml', name).stdout, good) ? true : undefined), RESYNC_MS * 3);
    expect(metricValue(await agent.metrics(), 'nwfilter_operator_drift_repairs_total')).toBeGreaterThan(drift0);
  });

  it('deleting a department still in use keeps the VMs\' last filter and says why', async () => {
    const dept = ex.name('finance');
    const vm = ex.name('fin-desk-01');
    const hash = vmObj(vm).status!.appliedHash;
    kubectlOk(['delete', 'departmentpolicy', dept]);
    const o = await waitFor('DepartmentNotFound', () => {
      const x = vmObj(vm);
      return cond(x, 'Accepted')?.reason === 'DepartmentNotFound' ? x : undefined;
    });
    expect(cond(o, 'Ready')).toMatchObject({ status: 'False', reason: 'DepartmentNotFound' });
    expect(o.status!.appliedHash).toBe(hash);
    // A full resync (with orphan collection) later, the department filter is still there.
    await new Promise((r) => setTimeout(r, RESYNC_MS * 1.5));
    expect(filterNames()).toEqual(expect.arrayContaining([departmentFilterName(dept), vmFilterName(vm)]));
    expect(domainFilterrefs(ex.name('fin-desk-01'), true)).toEqual([vmFilterName(vm)]);
    applyObjects(ex.departments.filter((d) => d.metadata.name === dept));
    await waitFor('Ready again', () => (cond(vmObj(vm), 'Ready')?.status === 'True' ? true : undefined), 60_000);
  });

  it('deleting a VMFilter detaches and undefines its filter, then the object is gone', async () => {
    const vm = ex.name('eng-db-01');
    expect(filterNames()).toContain(vmFilterName(vm));
    kubectlOk(['delete', 'vmfilter', vm, '--wait=false']);
    await waitFor('VMFilter gone', () => (kubectl(['get', 'vmfilter', vm]).code !== 0 ? true : undefined), 60_000);
    expect(filterNames()).not.toContain(vmFilterName(vm));
    expect(domainFilterrefs(ex.name('eng-db-01'), true)).toEqual([]);
  });

  it('picks up a domain that appears after its VMFilter (lifecycle event)', async () => {
    const name = `${P}-late`;
    applyObjects([{ apiVersion: 'nwfilter.infinibay.io/v1alpha1', kind: 'VMFilter', metadata: { name, labels: { test: P } }, spec: { domain: { name } } }]);
    await waitFor('Pending while no node has the domain', () => (cond(vmObj(name), 'Ready')?.reason === 'Pending' ? true : undefined), 30_000);
    defineDomain(name, '52:54:00:e2:01:01', `nwfe9${P.slice(-6)}`);
    try {
      await waitFor('Ready once the domain exists', () => (cond(vmObj(name), 'Ready')?.status === 'True' ? true : undefined), 30_000);
      expect(domainFilterrefs(name, true)).toEqual([vmFilterName(name)]);
    } finally {
      kubectl(['delete', 'vmfilter', name, '--timeout=60s']);
      removeDomain(name);
    }
  });

  it('cleans up everything of its VMFilters, then stops cleanly on SIGTERM', async () => {
    kubectlOk(['delete', 'vmfilters', '-l', `test=${P}`, '--timeout=120s']);
    expect(filterNames(`nwf-vm-${P}`)).toEqual([]);
    const started = Date.now();
    expect(await agent.stop('SIGTERM')).toBe(0);
    expect(await controller.stop('SIGTERM')).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
