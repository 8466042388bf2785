// The controller against a real kube-apiserver + etcd: status, finalizers, leader election.
// No agent runs here, so VMFilters stay Ready=False/Pending; the e2e project covers the agent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyObjects, getJson, kubectl, kubectlOk, waitFor } from '../../helpers/kubectl.js';
import { metricValue, startOperator, type OperatorProcess } from '../../helpers/processes.js';

const API = 'nwfilter.infinibay.io/v1alpha1';
const P = `ctl${Date.now().toString(36)}`; // unique names per run: the cluster is shared and reused

type Obj = { metadata: { name: string; finalizers?: string[]; generation?: number }; status?: Record<string, any> };
const cond = (o: Obj, type: string) => (o.status?.conditions as { type: string; status: string; reason: string; message: string }[] | undefined)?.find((c) => c.type === type);

describe('controller', () => {
  let controller: OperatorProcess;

  beforeAll(async () => {
    kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', 'crds/']);
    kubectlOk(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    controller = await startOperator('controller', ['--leader-elect', 'false', '--status-coalesce', '200ms'], 'controller');
  });

  afterAll(async () => {
    kubectl(['delete', 'vmfilters,departmentpolicies,servicepolicies', '-l', `test=${P}`, '--wait=false']);
    await controller?.stop();
  });

  const svc = (name: string, spec: object) => ({ apiVersion: API, kind: 'ServicePolicy', metadata: { name: `${P}-${name}`, labels: { test: P } }, spec });
  const dept = (name: string, spec: object) => ({ apiVersion: API, kind: 'DepartmentPolicy', metadata: { name: `${P}-${name}`, labels: { test: P } }, spec });
  const vm = (name: string, spec: object) => ({ apiVersion: API, kind: 'VMFilter', metadata: { name: `${P}-${name}`, labels: { test: P } }, spec: { domain: { name: `${P}-${name}` }, ...spec } });

  it('accepts a VM, reports its effective services with their sources, and adds the finalizer', async () => {
    applyObjects([
      svc('ssh', { ports: [{ protocol: 'tcp', port: 22 }], use: true }),
      svc('web', { ports: [{ protocol: 'tcp', port: 80 }] }),
      dept('eng', { services: [{ name: `${P}-web`, provide: 'allow' }] }),
      vm('a', { department: `${P}-eng`, services: [{ name: `${P}-ssh`, use: 'deny' }] }),
    ]);
    const a = await waitFor('VMFilter accepted', () => {
      const o = getJson<Obj>(['vmfilter', `${P}-a`]);
      return cond(o, 'Accepted')?.status === 'True' ? o : undefined;
    });
    expect(a.metadata.finalizers).toContain('nwfilter.infinibay.io/cleanup');
    expect(a.status!.filterName).toBe(`nwf-vm-${P}-a`);
    expect(a.status!.desiredHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(a.status!.ruleCount).toBeGreaterThan(0);
    expect(a.status!.observedGeneration).toBe(a.metadata.generation);
    const byName = Object.fromEntries((a.status!.effectiveServices as { name: string }[]).map((s) => [s.name, s]));
    expect(byName[`${P}-ssh`]).toEqual({ name: `${P}-ssh`, use: false, useSource: 'vm', provide: false, provideSource: 'global' });
    expect(byName[`${P}-web`]).toEqual({ name: `${P}-web`, use: false, useSource: 'global', provide: true, provideSource: 'department' });
    expect(cond(a, 'Ready')).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('reports a missing department with a reason, and recovers when it appears', async () => {
    applyObjects([vm('b', { department: `${P}-ghost` })]);
    const b = await waitFor('DepartmentNotFound', () => {
      const o = getJson<Obj>(['vmfilter', `${P}-b`]);
      return cond(o, 'Accepted')?.reason === 'DepartmentNotFound' ? o : undefined;
    });
    expect(cond(b, 'Accepted')!.status).toBe('False');
    expect(cond(b, 'Ready')!.message).toContain('last applied filter stays');
    applyObjects([dept('ghost', {})]);
    await waitFor('accepted after the department appears', () => (cond(getJson<Obj>(['vmfilter', `${P}-b`]), 'Accepted')?.status === 'True' ? true : undefined));
  });

  it('counts department members and marks departments with unknown services not accepted', async () => {
    const eng = await waitFor('department counts', () => {
      const o = getJson<Obj>(['departmentpolicy', `${P}-eng`]);
      return o.status?.vms?.desired === 1 ? o : undefined;
    });
    expect(eng.status!.vms).toEqual({ desired: 1, applied: 0, failed: 0 });
    expect(cond(eng, 'Ready')).toMatchObject({ status: 'False', reason: 'Pending' });
    applyObjects([dept('bad', { services: [{ name: `${P}-nope`, use: 'allow' }] })]);
    const bad = await waitFor('ServiceNotFound', () => {
      const o = getJson<Obj>(['departmentpolicy', `${P}-bad`]);
      return cond(o, 'Accepted')?.reason === 'ServiceNotFound' ? o : undefined;
    });
    expect(cond(bad, 'Accepted')!.message).toContain('spec.services[0].name');
  });

  it('removes the finalizer of a VMFilter no agent ever applied, so deletion completes', async () => {
    kubectlOk(['delete', 'vmfilter', `${P}-b`, '--wait=false']);
    await waitFor('VMFilter gone', () => (kubectl(['get', 'vmfilter', `${P}-b`]).code !== 0 ? true : undefined));
  });

  it('does not rewrite unchanged status (no write storm)', async () => {
    await new Promise((r) => setTimeout(r, 1500));
    const before = metricValue(await controller.metrics(), 'nwfilter_operator_status_writes_total');
    // Touch an unrelated label: the objects' specs are unchanged, so nothing in status changes.
    kubectlOk(['label', 'vmfilter', `${P}-a`, `touched=${Date.now()}`, '--overwrite']);
    await new Promise((r) => setTimeout(r, 1500));
    const after = metricValue(await controller.metrics(), 'nwfilter_operator_status_writes_total');
    expect(after).toBe(before);
  });

  it('a restarted controller rewrites no unchanged status (it compares with the objects, not its memory)', async () => {
    await new Promise((r) => setTimeout(r, 1500));
    await controller.stop();
    controller = await startOperator('controller', ['--leader-elect', 'false', '--status-coalesce', '200ms'], 'controller-restarted');
    // Every VMFilter, department and service is reconciled once after the start (aggregates after a coalesce period).
    await waitFor('reconciled after the restart', async () => (metricValue(await controller.metrics(), 'nwfilter_operator_reconcile_total') > 0 ? true : undefined));
    await new Promise((r) => setTimeout(r, 2000));
    expect(metricValue(await controller.metrics(), 'nwfilter_operator_status_writes_total')).toBe(0);
  });
});

describe('leader election', () => {
  it('runs one active replica of two and hands over when the leader stops', async () => {
    const ns = 'default';
    const id = `nwf-test-${P}`;
    const common = ['--leader-election-namespace', ns, '--leader-election-id', id, '--lease-duration', '4s', '--renew-deadline', '3s', '--retry-period', '500ms'];
    process.env.POD_NAME = 'replica-a';
    const a = await startOperator('controller', common, 'replica-a');
    const holder = () => getJson<{ spec: { holderIdentity?: string } }>(['lease', '-n', ns, id]).spec.holderIdentity;
    let b: OperatorProcess | undefined;
    try {
      await waitFor('replica-a leads', () => (holder() === 'replica-a' ? true : undefined), 30_000);
      process.env.POD_NAME = 'replica-b';
      b = await startOperator('controller', common, 'replica-b');
      delete process.env.POD_NAME;
      await new Promise((r) => setTimeout(r, 2000));
      expect(holder()).toBe('replica-a');
      expect(metricValue(await a.metrics(), 'nwfilter_operator_leader')).toBe(1);
      expect(metricValue(await b.metrics(), 'nwfilter_operator_leader')).toBe(0);
      // Graceful stop releases the lease: b takes over without waiting a lease duration.
      await a.stop('SIGTERM');
      await waitFor('replica-b leads', () => (holder() === 'replica-b' ? true : undefined), 15_000);
      // A killed leader cannot release: c takes over after the lease expires.
      process.env.POD_NAME = 'replica-c';
      const c = await startOperator('controller', common, 'replica-c');
      delete process.env.POD_NAME;
      await b.stop('SIGKILL');
      await waitFor('replica-c leads after expiry', () => (holder() === 'replica-c' ? true : undefined), 30_000);
      await c.stop();
    } finally {
      delete process.env.POD_NAME;
      await a.stop();
      await b?.stop('SIGKILL');
      kubectl(['delete', 'lease', '-n', ns, id]);
    }
  });
});

describe('events', () => {
  it('records an Event when a VMFilter becomes not accepted', async () => {
    const name = `${P}-ev`;
    const c = await startOperator('controller', ['--leader-elect', 'false'], 'controller-events');
    try {
      applyObjects([{ apiVersion: API, kind: 'VMFilter', metadata: { name, labels: { test: P } }, spec: { domain: { name }, department: `${P}-nowhere` } }]);
      const ev = await waitFor('event', () => {
        const list = getJson<{ items: { reason: string; type: string; note?: string; message?: string; regarding?: { name: string }; involvedObject?: { name: string } }[] }>(['events', '-n', 'default', '--field-selector', `involvedObject.name=${name}`]).items;
        return list.find((e) => e.reason === 'DepartmentNotFound');
      }, 30_000);
      expect(ev.type).toBe('Warning');
    } finally {
      kubectl(['delete', 'vmfilter', name, '--timeout=30s']); // while the controller runs, so it drops its finalizer
      await c.stop();
    }
  });
});
