import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** kubectl against the test cluster (KUBECONFIG from the kube global setup). */
export function kubectl(args: string[], input?: string): RunResult {
  const r = spawnSync('kubectl', args, { encoding: 'utf8', input, env: process.env, maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function kubectlOk(args: string[], input?: string): string {
  const r = kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

export function applyObjects(objects: object[], extra: string[] = []): string {
  return kubectlOk(['apply', '--server-side', '--force-conflicts', ...extra, '-f', '-'], objects.map((o) => stringify(o)).join('---\n'));
}

export function getJson<T = Record<string, unknown>>(args: string[]): T {
  return JSON.parse(kubectlOk(['get', ...args, '-o', 'json'])) as T;
}

/** Polls until `check` returns a value other than undefined, or throws after the timeout with the last state. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(intervalMs);
  }
}

/**
 * Replaces a CRD with `mutate` applied to its current definition (kubectl replace, so a concurrent
 * change makes it fail instead of being overwritten). Used to emulate an older, looser CRD.
 */
export function mutateCrd(name: string, mutate: (crd: Record<string, any>) => void): void {
  const crd = getJson<Record<string, any>>(['crd', name]);
  delete crd.metadata.managedFields;
  mutate(crd);
  kubectlOk(['replace', '-f', '-'], JSON.stringify(crd));
}

/** Re-applies the CRDs of crds/ (the strict, current schema) and waits until they are established. */
export function applyCrds(): void {
  kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', 'crds/']);
  kubectlOk(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
}
