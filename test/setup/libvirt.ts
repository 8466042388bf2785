import { execFileSync, spawnSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';

/**
 * Starts (or reuses) the real libvirtd for the libvirt and e2e projects and provides its socket.
 * The daemon is left running at teardown: other projects and the demo share it.
 */
export default function setup(project: TestProject): void {
  process.env.LIBVIRT_DEFAULT_URI ??= 'qemu:///system';
  process.env.NWF_LIBVIRT_SOCKET ??= '/var/run/libvirt/libvirt-sock';
  // hack/libvirt-up.sh is idempotent, but skipping it when libvirtd already answers keeps a
  // re-run quiet and fast.
  const answers = spawnSync('virsh', ['-q', '-c', process.env.LIBVIRT_DEFAULT_URI, 'nwfilter-list'], { stdio: 'ignore', timeout: 10_000 }).status === 0;
  if (!answers) execFileSync('bash', ['hack/libvirt-up.sh'], { stdio: 'inherit' });
  project.provide('libvirtSocket', process.env.NWF_LIBVIRT_SOCKET);
}

declare module 'vitest' {
  export interface ProvidedContext {
    libvirtSocket: string;
  }
}
