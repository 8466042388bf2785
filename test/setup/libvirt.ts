import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';

/** Starts (or reuses) the real libvirtd for the libvirt and e2e projects. It is left running. */
export default function setup(project: TestProject): void {
  execFileSync('bash', ['hack/libvirt-up.sh'], { stdio: 'inherit' });
  process.env.LIBVIRT_DEFAULT_URI ??= 'qemu:///system';
  process.env.NWF_LIBVIRT_SOCKET ??= '/var/run/libvirt/libvirt-sock';
  project.provide('libvirtSocket', process.env.NWF_LIBVIRT_SOCKET);
}

declare module 'vitest' {
  export interface ProvidedContext {
    libvirtSocket: string;
  }
}
