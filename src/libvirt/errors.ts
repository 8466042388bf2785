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

// libvirt shares error codes between unrelated cases (OPERATION_FAILED covers both a loop and a
// UUID clash), so the helpers check the code and then libvirt's English message. hack/libvirt-up.sh
// starts libvirtd with LC_ALL=C; a libvirtd running under a translated locale would defeat them.

/** Undefine of a filter that an interface still uses: VIR_ERR_OPERATION_INVALID "nwfilter is in use". */
export function isInUse(err: unknown): boolean {
  const e = asLibvirt(err);
  return e !== undefined && e.code === ErrorCode.operationInvalid && /\bin use\b/i.test(e.message);
}

/**
 * A name/UUID clash, both ways: define of an existing name with another UUID ("already exists with
 * uuid") or of a new name with another filter's UUID ("same UUID but different name"), both
 * VIR_ERR_OPERATION_FAILED.
 */
export function isUuidMismatch(err: unknown): boolean {
  const e = asLibvirt(err);
  return e !== undefined && e.code === ErrorCode.operationFailed && /already exists with uuid|same UUID but different name/i.test(e.message);
}

/** Define that would create a reference cycle: VIR_ERR_OPERATION_FAILED "filter would introduce a loop". */
export function isLoop(err: unknown): boolean {
  const e = asLibvirt(err);
  return e !== undefined && e.code === ErrorCode.operationFailed && /introduce a loop/i.test(e.message);
}

/**
 * XML that libvirt refuses as such (schema validation, parse error, invalid nwfilter): retrying the
 * same document cannot succeed.
 */
export function isInvalidXml(err: unknown): boolean {
  const e = asLibvirt(err);
  // xmlDetail (35) is what libxml2's parse errors come as ("Premature end of data in tag ...").
  return e !== undefined && ([ErrorCode.xmlInvalidSchema, ErrorCode.xmlError, ErrorCode.xmlDetail, ErrorCode.invalidNwfilter] as number[]).includes(e.code);
}

export function isDisconnected(err: unknown): boolean {
  return err instanceof LibvirtDisconnectedError;
}
