// Kill the agent with SIGKILL in the middle of applying 200 VMFilters and start it again:
// everything converges, no duplicate or orphaned filters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFilterName } from '../../../src/policy/index.js';
import { applyObjects, getJson, kubectl, kubectlOk, waitFor } from '../../helpers/kubectl.js';
import { filterNames } from '../../helpers/libvirt-cli.js';
import { startOperator, type OperatorProcess } from '../../helpers/processes.js';

const P = `rec${Date.now().toString(36)}`;
const NODE = `node-${P}`;
const API = 'nwfilter.infinibay.io/v1alpha1';
const COUNT = Number(process.env.NWF_RECOVERY_VMS ?? 200);
let controller: OperatorProcess;
let agent: OperatorProcess | undefined;

beforeAll(async () => {
  kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', 'crds/']);
  kubectlOk(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  controller = await startOperator('controller', ['--leader-elect', 'false'], `controller-${P}`);
});

afterAll(async () => {
  kubectl(['delete', 'vmfilters', '-l', `test=${P}`, '--wait=false']);
  await waitFor('VMFilters gone', () => (kubectlOk(['get', 'vmfilters', '-l', `test=${P}`, '-o', 'name']).trim() === '' ? true : undefined), 180_000).catch(() => undefined);
  kubectl(['delete', 'departmentpolicies,servicepolicies', '-l', `test=${P}`]);
  await agent?.stop();
  await controller?.stop();
});

type Obj = { metadata: { name: string }; status?: Record<string, any> };

describe(`agent killed while applying ${COUNT} VMFilters`, () => {
  it('converges after a restart with exactly the expected filters', async () => {
    agent = await startOperator('agent', ['--node-name', NODE], `agent-${P}-1`);
    const objects: object[] = [
      { apiVersion: API, kind: 'ServicePolicy', metadata: { name: `${P}-ssh`, labels: { test: P } }, spec: { ports: [{ protocol: 'tcp', port: 22 }] } },
      { apiVersion: API, kind: 'DepartmentPolicy', metadata: { name: `${P}-d`, labels: { test: P } }, spec: { services: [{ name: `${P}-ssh`, provide: 'allow' }] } },
    ];
    for (let i = 0; i < COUNT; i++) {
      objects.push({
        apiVersion: API,
        kind: 'VMFilter',
        metadata: { name: `${P}-${i}`, labels: { test: P } },
        // nodeName pins them to this agent; the domains do not exist, so the agent defines the filters and reports DomainNotFound.
        spec: { domain: { name: `${P}-${i}` }, nodeName: NODE, department: `${P}-d`, rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 10000 + i }] }] },
      });
    }
    applyObjects(objects);
    const ours = () => filterNames(`nwf-vm-${P}-`);
    await waitFor('some filters applied', () => (ours().length >= Math.min(20, COUNT / 4) ? true : undefined), 120_000, 50);
    const killedAt = ours().length;
    expect(await agent.stop('SIGKILL')).toBeNull();
    expect(killedAt).toBeLessThan(COUNT);

    agent = await startOperator('agent', ['--node-name', NODE], `agent-${P}-2`);
    await waitFor(
      'every VMFilter applied',
      () => {
        const list = getJson<{ items: Obj[] }>(['vmfilters', '-l', `test=${P}`]).items;
        return list.length === COUNT && list.every((o) => o.status?.desiredHash && o.status.appliedHash === o.status.desiredHash) ? true : undefined;
      },
      300_000,
      1000,
    );
    const names = ours().sort();
    const expected = Array.from({ length: COUNT }, (_, i) => vmFilterName(`${P}-${i}`)).sort();
    expect(names).toEqual(expected);
    expect(filterNames(`nwf-dept-${P}-`)).toEqual([`nwf-dept-${P}-d`]);

    // Deleting them all leaves nothing of ours behind.
    kubectlOk(['delete', 'vmfilters', '-l', `test=${P}`, '--wait=false']);
    await waitFor('filters removed', () => (ours().length === 0 ? true : undefined), 300_000, 1000);
    kubectlOk(['delete', 'departmentpolicy', `${P}-d`]);
    await waitFor('department filter collected', () => (filterNames(`nwf-dept-${P}-`).length === 0 ? true : undefined), 60_000, 1000);
  });
});
