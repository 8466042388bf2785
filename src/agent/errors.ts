import type { LibvirtErrorKind } from './libvirt-port.js';

/**
 * A libvirt call of the realizer failed. `terminal` errors (libvirt refuses the document itself:
 * invalid XML, a reference loop, a UUID clash) get a reason of their own and are not retried until
 * something changes; the others are retried with backoff (quietly while libvirtd is unreachable).
 */
export class RealizeError extends Error {
  override name = 'RealizeError';
  constructor(
    readonly kind: LibvirtErrorKind,
    readonly op: string,
    override readonly cause: unknown,
  ) {
    super(`${op}: ${String((cause as Error)?.message ?? cause)}`);
  }

  get terminal(): boolean {
    return this.kind === 'invalid';
  }

  get transient(): boolean {
    return this.kind === 'disconnected';
  }
}

/** A status write or another Kubernetes call failed: never reported as a libvirt error. */
export class KubernetesError extends Error {
  override name = 'KubernetesError';
  constructor(
    readonly op: string,
    override readonly cause: unknown,
  ) {
    super(`${op}: ${String((cause as Error)?.message ?? cause)}`);
  }
}
