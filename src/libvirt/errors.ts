import { ErrorCode, ErrorDomain } from './protocol.js';

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

/**
 * The daemon is older than the client supports (MIN_LIBVIRT_VERSION): connect() refuses it at the
 * handshake with this clear message instead of failing later on a procedure the daemon lacks. A
 * LibvirtDisconnectedError, because the client then is not connected (connectWithRetry keeps
 * trying: the daemon may be upgraded in place).
 */
export class LibvirtUnsupportedVersionError extends LibvirtDisconnectedError {
  override name = 'LibvirtUnsupportedVersionError';
  constructor(
    readonly version: string,
    readonly minimum: string,
  ) {
    super(`libvirtd ${version} is too old: the libvirt client needs libvirt >= ${minimum} (see docs/libvirt-client.md)`);
  }
}

/**
 * A define without VALIDATE (libvirt < 7.7) that libvirt accepted but did not keep as sent: the
 * read-back differs in `differences` (what was dropped or changed). It carries
 * VIR_ERR_XML_INVALID_SCHEMA because that is what libvirt with VALIDATE answers for such a document,
 * so isInvalidXml() is true and callers treat it as a refused document (retrying cannot help).
 * `restored`: the previous definition was put back (true), there was none and libvirt's version is
 * left defined (false, never undefined: an interface may already use the name), or putting it back
 * failed (the message says why; the filter libvirt kept stays defined).
 */
export class NwFilterNotKeptError extends LibvirtError {
  override name = 'NwFilterNotKeptError';
  constructor(
    readonly filter: string,
    readonly differences: string[],
    readonly restored: boolean,
    detail: string,
  ) {
    super(ErrorCode.xmlInvalidSchema, ErrorDomain.nwfilter, `libvirt did not keep filter '${filter}' as sent: ${differences.join('; ')}; ${detail}`, 'nwfilter-define');
  }
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

/**
 * libvirtd does not know the procedure: VIR_ERR_RPC (39), VIR_FROM_RPC (7), "unknown procedure: N"
 * (virNetServerProgramDispatchCall in src/rpc/virnetserverprogram.c), the answer of a daemon older
 * than the procedure; the connection stays usable. The number is checked, not the English words, so
 * a translated message still matches; RPC's other errors (decode, auth) carry no procedure number.
 */
export function isUnknownProcedure(err: unknown, procedure: number): boolean {
  const e = asLibvirt(err);
  return e !== undefined && e.code === ErrorCode.rpc && e.domain === ErrorDomain.rpc && new RegExp(`(?:^|\\D)${procedure}(?:\\D|$)`).test(e.message);
}

/** A define without VALIDATE whose read-back differs from what was sent (NwFilterNotKeptError). */
export function isNotKept(err: unknown): err is NwFilterNotKeptError {
  return err instanceof NwFilterNotKeptError;
}

export function isDisconnected(err: unknown): boolean {
  return err instanceof LibvirtDisconnectedError;
}
