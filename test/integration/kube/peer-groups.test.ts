// The controller resolves peer selectors against a real kube-apiserver + etcd: the AddressGroups it
// makes for rules' sourcePeers/destinationPeers, their members as VMs come, go and change, user
// groups with spec.peers, and compile errors for groups that do not exist. No agent runs here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { peerGroupName } from '../../../src/policy/index.js';
import { applyObjects, getJson, kubectl, kubectlOk, waitFor } from '../../helpers/kubectl.js';
import { metricValue, startOperator, type OperatorProcess } from '../../helpers/processes.js';

const API = 'nwfilter.infinibay.io/v1alpha1';
const P = `pg${Date.now().toString(36)}`; // unique names per run: the cluster is shared and reused

type Condition = { type: string; status: string; reason: string; message: string };
type Obj = { metadata: { name: string; uid: string; labels?: Record<string, string>; generation?: number }; spec: Record<string, any>; status?: Record<string, any> };
const cond = (o: Obj, type: string) => (o.status?.conditions as Condition[] | undefined)?.find((c) => c.type === type);
const get = (kind: string, name: string): Obj | undefined => {
  const r = kubectl(['get', kind, name, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as Obj) : undefined;
};

const ENG = `${P}-eng`;
const engGroup = peerGroupName({ department: ENG });
const sshFromPeers = (peers: object) => ({ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 22 }], sourcePeers: peers });
const dept = (name: string, spec: object) => ({ apiVersion: API, kind: 'DepartmentPolicy', metadata: { name, labels: { test: P } }, spec });
const vm = (name: string, spec: object, labels: Record<string, string> = {}) => ({
  apiVersion: API,
  kind: 'VMFilter',
  metadata: { name: `${P}-${name}`, labels: { test: P, ...labels } },
  spec: { domain: { name: `${P}-${name}` }, ...spec },
});

describe('peer groups', () => {
  let controller: OperatorProcess;
  const start = (label: string) => startOperator('controller', ['--leader-elect', 'false', '--status-coalesce', '200ms'], label);

  beforeAll(async () => {
    kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', 'crds/']);
    kubectlOk(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    controller = await start('controller-peer-groups');
  });

  afterAll(async () => {
    // While the controller runs, so that it removes the VMFilters' finalizers and its peer group.
    kubectl(['delete', 'vmfilters,departmentpolicies,addressgroups', '-l', `test=${P}`, '--timeout=60s']);
    await waitFor('peer group gone', () => (get('addressgroup', engGroup) ? undefined : true), 30_000).catch(() => undefined);
    await controller?.stop();
  });

  it("makes the AddressGroup of a department's peer selector, with exactly its members' addresses", async () => {
    applyObjects([
      dept(ENG, { rules: [sshFromPeers({ department: ENG })] }),
      vm('a', { department: ENG, parameters: { ip: ['10.77.0.1'], ipv6: ['fd77::1'] } }),
      vm('b', { department: ENG, parameters: { ip: ['10.77.0.2'] } }),
      vm('c', { parameters: { ip: ['10.77.0.3'] } }),
    ]);
    const group = await waitFor('peer group resolved', () => {
      const g = get('addressgroup', engGroup);
      return g?.status?.peerCount === 2 ? g : undefined;
    });
    expect(group.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'nwfilter-operator', 'nwfilter.infinibay.io/peer-group': 'true' });
    expect(group.spec).toEqual({ description: `the VMs of department ${ENG}`, peers: { department: ENG }, addresses: [] });
    expect(group.status).toMatchObject({ peerAddresses: ['10.77.0.1', '10.77.0.2', 'fd77::1'], peerCount: 2, ipv4: 2, ipv6: 1, observedGeneration: group.metadata.generation });
    expect(cond(group, 'Ready')).toMatchObject({ status: 'True', reason: 'Resolved', message: '2 VMs, 3 addresses.' });
    expect(metricValue(await controller.metrics(), 'nwfilter_operator_peer_group_writes_total', { op: 'create', result: 'ok' })).toBe(1);
    // The department and its members compile against the group (no PeersNotResolved left).
    await waitFor('department accepted', () => (cond(get('departmentpolicy', ENG)!, 'Accepted')?.status === 'True' ? true : undefined));
    await waitFor('members accepted', () => (['a', 'b'].every((n) => cond(get('vmfilter', `${P}-${n}`)!, 'Accepted')?.status === 'True') ? true : undefined));
  });

  it("drops a VM's addresses when it leaves the department", async () => {
    kubectlOk(['patch', 'vmfilter', `${P}-b`, '--type=json', '-p', JSON.stringify([{ op: 'remove', path: '/spec/department' }])]);
    const group = await waitFor('b left the group', () => {
      const g = get('addressgroup', engGroup)!;
      return g.status?.peerCount === 1 ? g : undefined;
    });
    expect(group.status).toMatchObject({ peerAddresses: ['10.77.0.1', 'fd77::1'], peerCount: 1, ipv4: 1, ipv6: 1 });
    expect(cond(group, 'Ready')!.message).toBe('1 VM, 2 addresses.');
  });

  it("resolves a user's group by labels, follows label changes, and leaves its spec and labels alone", async () => {
    // The `test` label keeps VMFilters of earlier runs (the cluster is reused) out of the selector.
    const selector = { vmSelector: { matchLabels: { role: 'web', test: P } } };
    applyObjects([{ apiVersion: API, kind: 'AddressGroup', metadata: { name: `${P}-web`, labels: { test: P } }, spec: { addresses: ['192.0.2.0/24'], peers: selector } }]);
    kubectlOk(['label', 'vmfilter', `${P}-a`, `${P}-c`, 'role=web']);
    const web = await waitFor('user group resolved', () => {
      const g = get('addressgroup', `${P}-web`)!;
      return g.status?.peerCount === 2 ? g : undefined;
    });
    expect(web.status).toMatchObject({ peerAddresses: ['10.77.0.1', '10.77.0.3', 'fd77::1'], ipv4: 3, ipv6: 1 });
    expect(cond(web, 'Ready')).toMatchObject({ status: 'True', reason: 'Resolved' });
    // A label change bumps no generation: the controller sees it all the same.
    kubectlOk(['label', 'vmfilter', `${P}-c`, 'role-']);
    const after = await waitFor('c left by its label', () => {
      const g = get('addressgroup', `${P}-web`)!;
      return g.status?.peerCount === 1 ? g : undefined;
    });
    expect(after.status).toMatchObject({ peerAddresses: ['10.77.0.1', 'fd77::1'], ipv4: 2, ipv6: 1 });
    expect(after.metadata.labels).toEqual({ test: P });
    expect(after.spec).toEqual({ addresses: ['192.0.2.0/24'], peers: selector });
  });

  it('reports a rule naming a missing group as the compile error it is, and recovers when the group appears', async () => {
    applyObjects([vm('d', { rules: [{ action: 'accept', direction: 'in', protocol: 'all', sourceGroup: `${P}-office` }] })]);
    const d = await waitFor('AddressGroupNotFound', () => {
      const o = get('vmfilter', `${P}-d`)!;
      return cond(o, 'Accepted')?.reason === 'AddressGroupNotFound' ? o : undefined;
    });
    expect(cond(d, 'Accepted')).toMatchObject({ status: 'False', message: `spec.rules[0].sourceGroup: AddressGroup "${P}-office" does not exist` });
    expect(cond(d, 'Ready')).toMatchObject({ status: 'False', reason: 'AddressGroupNotFound' });
    applyObjects([{ apiVersion: API, kind: 'AddressGroup', metadata: { name: `${P}-office`, labels: { test: P } }, spec: { addresses: ['10.0.0.0/8', '2001:db8::/32'] } }]);
    await waitFor('accepted once the group exists', () => (cond(get('vmfilter', `${P}-d`)!, 'Accepted')?.status === 'True' ? true : undefined));
    const office = await waitFor('plain group status', () => {
      const g = get('addressgroup', `${P}-office`)!;
      return cond(g, 'Ready') ? g : undefined;
    });
    expect(office.status).toMatchObject({ ipv4: 1, ipv6: 1 });
    expect(office.status!.peerAddresses).toBeUndefined();
    expect(cond(office, 'Ready')).toMatchObject({ status: 'True', reason: 'Valid', message: '2 addresses.' });
  });

  it('recreates a managed group deleted by hand', async () => {
    const before = get('addressgroup', engGroup)!;
    kubectlOk(['delete', 'addressgroup', engGroup]);
    const again = await waitFor('recreated and resolved', () => {
      const g = get('addressgroup', engGroup);
      return g && g.metadata.uid !== before.metadata.uid && g.status?.peerCount === 1 ? g : undefined;
    });
    expect(again.status!.peerAddresses).toEqual(['10.77.0.1', 'fd77::1']);
  });

  it("puts back a managed group's spec when someone edits it", async () => {
    kubectlOk(['patch', 'addressgroup', engGroup, '--type=merge', '-p', JSON.stringify({ spec: { addresses: ['203.0.113.9'], description: 'edited' } })]);
    const restored = await waitFor('spec restored', () => {
      const g = get('addressgroup', engGroup)!;
      return g.spec.addresses?.length === 0 && g.spec.description === `the VMs of department ${ENG}` ? g : undefined;
    });
    expect(restored.spec.peers).toEqual({ department: ENG });
    expect(metricValue(await controller.metrics(), 'nwfilter_operator_peer_group_writes_total', { op: 'repair', result: 'ok' })).toBeGreaterThanOrEqual(1);
    await waitFor('resolved for the restored spec', () => {
      const g = get('addressgroup', engGroup)!;
      return g.status?.observedGeneration === g.metadata.generation && g.status?.ipv4 === 1 ? true : undefined;
    });
  });

  it('a restarted controller writes nothing: no status, no group', async () => {
    // A group edited by hand is unresolved until its new generation is resolved, and the rules naming
    // it fail to compile meanwhile (PeersNotResolved): wait until their statuses recovered.
    await waitFor('department and members accepted again', () =>
      cond(get('departmentpolicy', ENG)!, 'Accepted')?.status === 'True' && cond(get('vmfilter', `${P}-a`)!, 'Accepted')?.status === 'True' ? true : undefined,
    );
    await new Promise((r) => setTimeout(r, 1500));
    await controller.stop();
    controller = await start('controller-peer-groups-restarted');
    await waitFor('reconciled after the restart', async () => (metricValue(await controller.metrics(), 'nwfilter_operator_reconcile_total', { kind: 'AddressGroup' }) >= 3 ? true : undefined));
    await new Promise((r) => setTimeout(r, 2000));
    const metrics = await controller.metrics();
    const writes = Object.fromEntries(['VMFilter', 'DepartmentPolicy', 'ServicePolicy', 'AddressGroup'].map((kind) => [kind, metricValue(metrics, 'nwfilter_operator_status_writes_total', { kind })]));
    expect(writes).toEqual({ VMFilter: 0, DepartmentPolicy: 0, ServicePolicy: 0, AddressGroup: 0 });
    expect(metricValue(metrics, 'nwfilter_operator_peer_group_writes_total')).toBe(0);
  });

  it('deletes the managed group once no rule uses it, and keeps the user groups', async () => {
    applyObjects([dept(ENG, { rules: [] })]);
    await waitFor('managed group deleted', () => (get('addressgroup', engGroup) ? undefined : true));
    expect(get('addressgroup', `${P}-web`)).toBeDefined();
    expect(get('addressgroup', `${P}-office`)).toBeDefined();
    expect(metricValue(await controller.metrics(), 'nwfilter_operator_peer_group_writes_total', { op: 'delete', result: 'ok' })).toBe(1);
  });
});
