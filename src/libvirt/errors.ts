import { ErrorCode } from './protocol.js';

/** An error libvirt returned for one call, with its code and domain (virErrorNumber, virErrorDomain). */
export class LibvirtError extends Error {
  override name = 'LibvirtError';
  constructor(
    readonly code: number,
    readonly domain: number,
    message: string,
    readonly procedure?: string,
  ) {
    super(message);
  }
}

/** The connection to libvirtd is down (never connected, lost, or closed); calls fail fast with it. */
export class LibvirtDisconnectedError extends Error {
  override name = 'LibvirtDisconnectedError';
}

/** A call got no reply within its timeout. */
export class LibvirtTimeoutError extends Error {
  override name = 'LibvirtTimeoutError';
}

const asLibvirt = (err: unknown): LibvirtError | undefined => (err instanceof LibvirtError ? err : undefined);

/** No such filter, domain or binding. */
export function isNotFound(err: unknown): boolean {
  const e = asLibvirt(err);
  return e !== undefined && [ErrorCode.noNwfilter, ErrorCode.noDomain, ErrorCode.noNwfilterBinding].includes(e.code as never);
}

/** Undefine of a filter that an interface still uses ("nwfilter is in use"). */
export function isInUse(err: unknown): boolean {
  const e = asLibvirt(err);
  return e !== undefined && e.code === ErrorCode.operationInvalid && /in use/i.test(e.message);
}

/** Define of an existing name with another UUID ("already exists with uuid"). */
export function isUuidMismatch(err: unknown): boolean {
  const e = asLibvirt(err);
  return e !== undefined && /already exists with uuid/i.test(e.message);
}

/** Define that would create a reference cycle ("would introduce a loop"). */
export function isLoop(err: unknown): boolean {
  const e = asLibvirt(err);
  return e !== undefined && /loop/i.test(e.message);
}

export function isDisconnected(err: unknown): boolean {
  return err instanceof LibvirtDisconnectedError;
}
