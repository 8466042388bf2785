import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

/**
 * Builds (or reuses) kube-apiserver, etcd and helm and starts the local cluster. The cluster is left
 * running for the next run (hack/cluster-down.sh stops it); tests create uniquely named objects.
 */
export default function setup(project: TestProject): void {
  execFileSync('bash', ['hack/build-kube.sh'], { stdio: 'inherit' });
  execFileSync('bash', ['hack/cluster-up.sh'], { stdio: 'inherit' });
  const state = process.env.NWF_STATE ?? '/tmp/nwfilter-operator';
  const cache = process.env.NWF_CACHE ?? join(process.env.HOME ?? '/root', '.cache/nwfilter-operator');
  process.env.KUBECONFIG = join(state, 'kubeconfig');
  process.env.PATH = `${join(cache, 'bin')}:${process.env.PATH ?? ''}`;
  project.provide('kubeconfig', process.env.KUBECONFIG);
}

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
  }
}
