import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';

/**
 * A real one-node Kubernetes for the node project: hack/node-up.sh (control plane, kubelet,
 * containerd, kube-proxy, pod network; builds what is missing) and hack/image-build.sh (the operator
 * image from the Dockerfile, loaded into the node's containerd). Both print how long each step took.
 * At teardown hack/node-down.sh stops everything and fails when anything is left behind (pods, mounts,
 * bridge, iptables chains, cgroups, sysctls). NWF_KEEP_NODE=1 keeps the node up to look at it.
 */
export default function setup(project: TestProject): () => void {
  const timed = (what: string, args: string[]): string => {
    const t0 = performance.now();
    const out = execFileSync('bash', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 1_800_000 });
    process.stdout.write(out);
    process.stdout.write(`node setup: ${what} took ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    return out;
  };
  timed('hack/node-up.sh', ['hack/node-up.sh']);
  const image = timed('hack/image-build.sh', ['hack/image-build.sh']).trim().split('\n').at(-1)!;
  project.provide('nodeImage', image);
  return () => {
    if (process.env.NWF_KEEP_NODE === '1') return;
    timed('hack/node-down.sh', ['hack/node-down.sh']);
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    nodeImage: string;
  }
}
