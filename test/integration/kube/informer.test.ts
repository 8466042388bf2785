// client-node's informer stops for good on any watch error but 410. Ours must survive the API
// server going away and coming back, and see what changed meanwhile.
import { execFileSync } from 'node:child_process';
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { GROUP, VERSION } from '../../../src/api/index.js';
import { ResilientInformer, collectionPath, loadKubeConfig, makeClients } from '../../../src/kube/index.js';
import { applyObjects, kubectl, kubectlOk, waitFor } from '../../helpers/kubectl.js';

const P = `inf${Date.now().toString(36)}`;
const svc = (name: string) => ({ apiVersion: `${GROUP}/${VERSION}`, kind: 'ServicePolicy', metadata: { name, labels: { test: P } }, spec: { ports: [{ protocol: 'tcp', port: 1 }] } });

describe('ResilientInformer', () => {
  let informer: ResilientInformer<KubernetesObject> | undefined;
  afterAll(async () => {
    await informer?.stop();
    kubectl(['delete', 'servicepolicies', '-l', `test=${P}`]);
  });

  it('keeps watching across an API server restart and catches up on what changed meanwhile', async () => {
    kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', 'crds/']);
    kubectlOk(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    applyObjects([svc(`${P}-before`)]);
    const clients = makeClients(loadKubeConfig(process.env.KUBECONFIG));
    let restarts = 0;
    const seen = new Set<string>();
    informer = new ResilientInformer<KubernetesObject>({
      name: 'ServicePolicy',
      kc: clients.kc,
      path: collectionPath('ServicePolicy'),
      list: () => clients.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: 'servicepolicies' }) as Promise<KubernetesListObject<KubernetesObject>>,
      log: pino({ level: 'silent' }),
      backoff: { baseMs: 100, maxMs: 1000 },
      onRestart: () => restarts++,
    });
    informer.onChange((o) => seen.add(o.metadata!.name!));
    await informer.start();
    expect(informer.synced).toBe(true);
    expect(informer.get(`${P}-before`)).toBeDefined();

    execFileSync('bash', ['hack/cluster-down.sh'], { stdio: 'ignore' });
    await waitFor('a restart attempt', () => (restarts > 0 ? true : undefined), 30_000);
    execFileSync('bash', ['hack/cluster-up.sh'], { stdio: 'ignore' });
    applyObjects([svc(`${P}-after`)]);
    await waitFor('the object created after the restart', () => (seen.has(`${P}-after`) ? true : undefined), 60_000);
    expect(informer.get(`${P}-after`)).toBeDefined();
    expect(restarts).toBeGreaterThan(0);
  });
});
