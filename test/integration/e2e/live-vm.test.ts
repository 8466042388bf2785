// A real running VM (QEMU under TCG): the agent puts the filterref on its live interface, the
// firewall rules exist, and a change to its VMFilter reaches the live interface.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFilterName } from '../../../src/policy/index.js';
import { applyObjects, getJson, kubectl, kubectlOk, waitFor } from '../../helpers/kubectl.js';
import { defineDomain, domainFilterrefs, removeDomain, virsh } from '../../helpers/libvirt-cli.js';
import { startOperator, type OperatorProcess } from '../../helpers/processes.js';

const P = `live${Date.now().toString(36)}`;
const API = 'nwfilter.infinibay.io/v1alpha1';
const tap = `nwfl${Date.now().toString(36).slice(-6)}`;
const domain = `${P}-vm`;
let controller: OperatorProcess;
let agent: OperatorProcess;

type Obj = { metadata: { name: string }; status?: Record<string, any> };
const ready = (name: string) => ((getJson<Obj>(['vmfilter', name]).status?.conditions ?? []) as { type: string; status: string }[]).some((c) => c.type === 'Ready' && c.status === 'True');
const iptables = () => execFileSync('iptables', ['-S'], { encoding: 'utf8' });

beforeAll(async () => {
  kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', 'crds/']);
  kubectlOk(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  defineDomain(domain, '52:54:00:1e:00:01', tap);
  expect(virsh('start', domain).code).toBe(0);
  controller = await startOperator('controller', ['--leader-elect', 'false'], `controller-${P}`);
  agent = await startOperator('agent', ['--node-name', `node-${P}`], `agent-${P}`);
});

afterAll(async () => {
  kubectl(['delete', 'vmfilters', '-l', `test=${P}`, '--wait=true', '--timeout=60s']);
  kubectl(['delete', 'servicepolicies', '-l', `test=${P}`]);
  await agent?.stop();
  await controller?.stop();
  removeDomain(domain);
});

describe('a running VM', () => {
  const svc = (name: string, port: number) => ({ apiVersion: API, kind: 'ServicePolicy', metadata: { name: `${P}-${name}`, labels: { test: P } }, spec: { ports: [{ protocol: 'tcp', port }] } });
  const vmf = (services: object[]) => ({
    apiVersion: API,
    kind: 'VMFilter',
    metadata: { name: domain, labels: { test: P } },
    spec: { domain: { name: domain }, services, parameters: { ip: ['10.77.0.9'] } },
  });

  it('gets the filterref on its live interface and its firewall rules', async () => {
    applyObjects([svc('ssh', 22), svc('https', 443), vmf([{ name: `${P}-ssh`, provide: 'allow' }])]);
    await waitFor('Ready', () => (ready(domain) ? true : undefined), 120_000);
    expect(domainFilterrefs(domain)).toEqual([vmFilterName(domain)]);
    expect(domainFilterrefs(domain, true)).toEqual([vmFilterName(domain)]);
    expect(virsh('dumpxml', domain).stdout).toContain("<parameter name='IP' value='10.77.0.9'/>");
    const rules = iptables();
    expect(rules).toMatch(new RegExp(`-A FO-${tap} -p tcp -m tcp --dport 22 .*-j ACCEPT`));
    // The chain ends in the fail-closed drop (libvirt carries our comment along: -m comment).
    expect(rules.split('\n').filter((l) => l.startsWith(`-A FO-${tap} `)).at(-1)).toMatch(/default drop .* -j DROP$/);
    expect(rules).not.toMatch(new RegExp(`-A FO-${tap} -p tcp -m tcp --dport 443 `));
  });

  it('a change to its VMFilter reaches the live interface', async () => {
    const before = getJson<Obj>(['vmfilter', domain]).status!.appliedHash;
    applyObjects([vmf([{ name: `${P}-ssh`, provide: 'allow' }, { name: `${P}-https`, provide: 'allow' }])]);
    await waitFor('new hash applied', () => {
      const s = getJson<Obj>(['vmfilter', domain]).status!;
      return s.appliedHash !== before && ready(domain) ? true : undefined;
    }, 120_000);
    await waitFor('443 in the live firewall', () => (new RegExp(`-A FO-${tap} -p tcp -m tcp --dport 443 .*-j ACCEPT`).test(iptables()) ? true : undefined), 30_000);
  });

  it('deleting the VMFilter removes the filterref from the running VM and its rules', async () => {
    kubectlOk(['delete', 'vmfilter', domain, '--timeout=60s']);
    expect(domainFilterrefs(domain)).toEqual([]);
    expect(domainFilterrefs(domain, true)).toEqual([]);
    expect(iptables()).not.toContain(`FO-${tap}`);
  });
});
