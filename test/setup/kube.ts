import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

/**
 * Builds (or reuses) kube-apiserver, etcd and helm and starts the local cluster (both idempotent).
 * The cluster is left running for the next run, because a warm start still costs seconds and other
 * projects share it; tests create uniquely named objects instead of relying on an empty cluster.
 * NWF_KEEP_CLUSTER=0 stops it at teardown (hack/cluster-down.sh, data kept).
 */
export default function setup(project: TestProject): (() => void) | undefined {
  execFileSync('bash', ['hack/build-kube.sh'], { stdio: 'inherit' });
  execFileSync('bash', ['hack/cluster-up.sh'], { stdio: 'inherit' });
  const state = process.env.NWF_STATE ?? '/tmp/nwfilter-operator';
  const cache = process.env.NWF_CACHE ?? join(process.env.HOME ?? '/root', '.cache/nwfilter-operator');
  process.env.KUBECONFIG = join(state, 'kubeconfig');
  process.env.PATH = `${join(cache, 'bin')}:${process.env.PATH ?? ''}`;
  project.provide('kubeconfig', process.env.KUBECONFIG);
  if (process.env.NWF_KEEP_CLUSTER !== '0') return undefined;
  return () => {
    execFileSync('bash', ['hack/cluster-down.sh'], { stdio: 'inherit' });
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
  }
}
