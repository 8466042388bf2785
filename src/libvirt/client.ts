import { EventEmitter, on } from 'node:events';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { backoffDelay } from '../runtime/backoff.js';
import { RpcConnection } from './connection.js';
import {
  LibvirtDisconnectedError,
  LibvirtError,
  LibvirtTimeoutError,
  LibvirtUnsupportedVersionError,
  NwFilterNotKeptError,
  isNotFound,
  isUnknownProcedure,
  isUuidMismatch,
} from './errors.js';
import { decodeDomainEvent, readDomain } from './events.js';
import {
  DOMAIN_AFFECT_CONFIG,
  DOMAIN_AFFECT_LIVE,
  DOMAIN_EVENT_ID_DEVICE_ADDED,
  DOMAIN_EVENT_ID_DEVICE_REMOVED,
  DOMAIN_EVENT_ID_LIFECYCLE,
  DOMAIN_XML_INACTIVE,
  DomainState,
  ErrorCode,
  MIN_LIBVIRT_VERSION,
  NWFILTER_DEFINE_VALIDATE,
  Proc,
} from './protocol.js';
import { filterDifferences } from './readback.js';
import { beyondSchema } from './schema-gap.js';
import type { DeviceTarget, DomainLifecycleEvent, DomainRef, DomainStateName, DomainSummary, LibvirtApi, LibvirtClientOptions, NwFilterBinding, NwFilterRef } from './types.js';
import { bytesToUuid, uuidToBytes } from './uuid.js';
import { XdrError, XdrReader, XdrWriter } from './xdr.js';

const readFilter = (r: XdrReader): NwFilterRef => ({ name: r.string(), uuid: bytesToUuid(r.fixedOpaque(16)) });
const readBinding = (r: XdrReader): NwFilterBinding => ({ portdev: r.string(), filter: r.string() });
const writeFilter = (w: XdrWriter, f: NwFilterRef): XdrWriter => w.string(f.name).fixedOpaque(uuidToBytes(f.uuid));
const writeDomain = (w: XdrWriter, d: DomainRef): XdrWriter => w.string(d.name).fixedOpaque(uuidToBytes(d.uuid)).int(d.id);

/** virConnectListAllDomainsFlags used by listDomains. */
const LIST_PERSISTENT = 4;
const LIST_RUNNING = 16;
const LIST_PAUSED = 32;
const LIST_SHUTOFF = 64;

/** remote_auth_type */
const AUTH_NONE = 0;
const AUTH_POLKIT = 2;

const UUID_IN_XML = /<uuid>\s*([0-9a-fA-F-]{32,36})\s*<\/uuid>/;
const FILTER_NAME = /<filter[^>]*\sname=["']([^"']+)["']/;

/** libvirt's version number (major * 1,000,000 + minor * 1,000 + micro) as text. */
const versionText = (v: number): string => `${Math.floor(v / 1_000_000)}.${Math.floor(v / 1000) % 1000}.${v % 1000}`;
const MIN_VERSION = MIN_LIBVIRT_VERSION.major * 1_000_000 + MIN_LIBVIRT_VERSION.minor * 1000 + MIN_LIBVIRT_VERSION.micro;

/**
 * What the client learnt about the daemon behind one connection. Replaced on every (re)connect: a
 * reconnect may land on an upgraded (or downgraded) libvirtd.
 */
interface Session {
  /** libvirtd's version ("9.0.0"), when CONNECT_GET_LIB_VERSION answered. */
  version?: string;
  /** false once the daemon answered that NWFILTER_DEFINE_XML_FLAGS is unknown (libvirt < 7.7). */
  defineFlags?: boolean;
}

/**
 * The daemon has no virNWFilterDefineXMLFlags: an older libvirtd answers the unknown procedure with
 * VIR_ERR_RPC "unknown procedure: 431"; VIR_ERR_NO_SUPPORT would be a driver without the API.
 */
const defineFlagsUnsupported = (err: unknown): boolean =>
  isUnknownProcedure(err, Proc.nwfilterDefineXmlFlags) || (err instanceof LibvirtError && err.code === ErrorCode.noSupport);

/** Hot-plug events registered besides lifecycle events; each arrives as its own procedure (see decodeDomainEvent). */
const DEVICE_EVENT_IDS = [
  { id: DOMAIN_EVENT_ID_DEVICE_ADDED, name: 'device-added' },
  { id: DOMAIN_EVENT_ID_DEVICE_REMOVED, name: 'device-removed' },
] as const;

/**
 * A client of libvirt's remote RPC protocol over its unix socket, in TypeScript: no native build,
 * many calls multiplexed on one connection, per-call typed errors, lifecycle and device hot-plug
 * events, automatic reconnection with jittered exponential backoff (src/runtime/backoff.ts). Calls
 * made while disconnected fail at once with LibvirtDisconnectedError; a call in flight when the
 * connection drops fails the same way.
 *
 * Events: 'connected' (after the handshake and the event registrations, on every (re)connection),
 * 'disconnected', 'domain-event' (DomainLifecycleEvent: a lifecycle change, or 'device-added' /
 * 'device-removed' with the device's alias).
 */
export class LibvirtClient extends EventEmitter implements LibvirtApi {
  private conn: RpcConnection | undefined;
  private readonly queue: PQueue;
  private readonly log: Logger | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closing = false;
  private connecting: Promise<void> | undefined;
  private session: Session = {};
  readonly socketPath: string;
  readonly uri: string;
  private readonly callTimeoutMs: number;

  constructor(private readonly options: LibvirtClientOptions = {}) {
    super();
    this.socketPath = options.socketPath ?? '/var/run/libvirt/libvirt-sock';
    this.uri = options.uri ?? 'qemu:///system';
    this.queue = new PQueue({ concurrency: options.concurrency ?? 8 });
    this.log = options.log;
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
  }

  get connected(): boolean {
    return this.conn?.isOpen ?? false;
  }

  /** The connected libvirtd's version ("9.0.0"); undefined before connecting or when it did not say. */
  get daemonVersion(): string | undefined {
    return this.session.version;
  }

  /** Calls being executed right now (at most `concurrency`); more wait in `queued`. */
  get inFlight(): number {
    return this.queue.pending;
  }

  get queued(): number {
    return this.queue.size;
  }

  /** Connects (once); resolves when connected, rejects with LibvirtDisconnectedError otherwise. */
  connect(): Promise<void> {
    this.closing = false;
    return this.open();
  }

  /** One connection attempt at a time, shared by connect() and the reconnect timer. */
  private open(): Promise<void> {
    if (this.conn?.isOpen) return Promise.resolve();
    this.connecting ??= this.openOnce().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** Like connect(), but keeps retrying with backoff in the background when the first attempt fails. */
  async connectWithRetry(): Promise<void> {
    try {
      await this.connect();
    } catch (err) {
      this.scheduleReconnect(err);
    }
  }

  private async openOnce(): Promise<void> {
    const timeout = this.options.connectTimeoutMs ?? 5000;
    const conn = await RpcConnection.open(this.socketPath, timeout);
    const session: Session = {};
    try {
      await this.authenticate(conn, timeout);
      await conn.call(Proc.connectOpen, 'connect-open', new XdrWriter().optString(this.uri).uint(0).bytes(), timeout);
      // Before registering events: a daemon too old for them gets a clear refusal, not "unknown procedure: 316".
      const version = await this.readVersion(conn, timeout);
      if (version !== undefined && version < MIN_VERSION) throw new LibvirtUnsupportedVersionError(versionText(version), versionText(MIN_VERSION));
      session.version = version === undefined ? undefined : versionText(version);
      // Listening before registering: an event may arrive in the same read as the register reply.
      conn.on('message', (proc: number, body: Buffer) => this.onMessage(proc, body));
      // Registered on every new connection, so events resume by themselves after a reconnect.
      // remote_connect_domain_event_callback_register_any_args: eventID, remote_domain dom (NULL = all).
      // The callback ids in the replies are not kept: each event id arrives as a procedure of its own.
      const register = (eventId: number) =>
        conn.call(Proc.connectDomainEventCallbackRegisterAny, 'event-register', new XdrWriter().int(eventId).bool(false).bytes(), timeout);
      await register(DOMAIN_EVENT_ID_LIFECYCLE);
      for (const { id, name } of DEVICE_EVENT_IDS) {
        try {
          await register(id);
        } catch (err) {
          // A libvirtd that refuses the event id (DEVICE_ADDED is libvirt >= 1.2.15) still gives
          // lifecycle events; hot-plugs are then only seen by a resync. Anything else fails the attempt.
          if (!(err instanceof LibvirtError)) throw err;
          this.log?.warn({ err: err.message, event: name }, 'libvirtd refused a device event registration; hot-plug is not reported');
        }
      }
      // close() while this attempt was under way: do not come back to life.
      if (this.closing) throw new LibvirtDisconnectedError('client closed while connecting');
    } catch (err) {
      conn.close();
      // A handshake timeout means libvirtd is not answering: same as not reachable for callers.
      throw err instanceof LibvirtTimeoutError ? new LibvirtDisconnectedError(err.message) : err;
    }
    conn.on('close', () => this.onConnectionLost(conn));
    this.conn = conn;
    this.session = session;
    this.failures = 0;
    this.log?.info({ socket: this.socketPath, uri: this.uri, version: session.version }, 'connected to libvirtd');
    this.hook(this.options.onConnectionChange, true);
    this.safeEmit('connected');
  }

  /**
   * libvirtd's version number, or undefined when the daemon does not say (an error reply or an
   * undecodable one): the version check is a courtesy, never a reason to refuse a daemon that works.
   * A timeout or a lost connection fails the attempt as any handshake call does.
   */
  private async readVersion(conn: RpcConnection, timeout: number): Promise<number | undefined> {
    try {
      return decodeVersion(new XdrReader(await conn.call(Proc.connectGetLibVersion, 'connect-get-lib-version', Buffer.alloc(0), timeout)));
    } catch (err) {
      if (!(err instanceof LibvirtError) && !(err instanceof XdrError)) throw err;
      this.log?.warn({ err: err.message }, 'libvirtd did not tell its version; not checked');
      return undefined;
    }
  }

  /**
   * Debian's libvirtd asks for polkit authentication on the read-write socket; for root (and for
   * anyone polkit allows) the AUTH_POLKIT call completes at once, as virsh does it. SASL is not
   * supported: use the unix socket.
   */
  private async authenticate(conn: RpcConnection, timeout: number): Promise<void> {
    const types = new XdrReader(await conn.call(Proc.authList, 'auth-list', Buffer.alloc(0), timeout)).array((r) => r.int());
    if (types.length === 0 || types.includes(AUTH_NONE)) return;
    if (!types.includes(AUTH_POLKIT)) throw new LibvirtDisconnectedError(`libvirtd requires authentication types ${types.join(',')}; only none and polkit are supported`);
    await conn.call(Proc.authPolkit, 'auth-polkit', Buffer.alloc(0), timeout);
  }

  private onConnectionLost(conn: RpcConnection): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    this.hook(this.options.onConnectionChange, false);
    this.safeEmit('disconnected');
    if (this.closing) return;
    this.log?.warn({ socket: this.socketPath }, 'connection to libvirtd lost; reconnecting');
    this.scheduleReconnect();
  }

  private scheduleReconnect(err?: unknown): void {
    if (this.closing || this.reconnectTimer) return;
    this.failures++;
    const { baseMs, maxMs } = this.options.reconnect ?? { baseMs: 250, maxMs: 10_000 };
    const delay = backoffDelay({ baseMs, maxMs }, this.failures);
    if (err) this.log?.warn({ err: String((err as Error).message ?? err), retryInMs: delay }, 'cannot connect to libvirtd');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.open().catch((e: unknown) => this.scheduleReconnect(e));
    }, delay);
  }

  private onMessage(proc: number, body: Buffer): void {
    let event: DomainLifecycleEvent;
    try {
      // One callback per event id and connection, and each event id has its own procedure: the
      // callback id needs no routing.
      const decoded = decodeDomainEvent(proc, body);
      if (!decoded) return;
      const { callbackId: _, ...e } = decoded;
      event = e;
    } catch (err) {
      this.log?.warn({ err, proc }, 'undecodable libvirt event');
      return;
    }
    this.safeEmit('domain-event', event);
  }

  /**
   * emit() for our own events: a throwing listener must neither reach the socket's data handler
   * (that would drop the connection) nor fail a connect that succeeded.
   */
  private safeEmit(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      this.log?.error({ err, event }, 'libvirt client listener threw');
    }
  }

  /** Calls a user hook (metrics, connection state) so that its failure never changes a call's outcome. */
  private hook<A extends unknown[]>(f: ((...a: A) => void) | undefined, ...args: A): void {
    try {
      f?.(...args);
    } catch (err) {
      this.log?.error({ err }, 'libvirt client hook threw');
    }
  }

  /** Lifecycle and device events as an async iterator; buffers events the consumer has not read yet. */
  async *domainEvents(signal?: AbortSignal): AsyncIterable<DomainLifecycleEvent> {
    try {
      for await (const [e] of on(this, 'domain-event', signal ? { signal } : undefined)) yield e as DomainLifecycleEvent;
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    }
  }

  /**
   * One RPC call, bounded by the concurrency limit, reported to onCall. Its deadline counts from
   * now, so time spent waiting for a slot is included: a caller never waits longer than
   * callTimeoutMs, even behind a queue of calls to a daemon that stopped answering.
   */
  private call(proc: number, op: string, args: XdrWriter = new XdrWriter(0), timeoutMs = this.callTimeoutMs): Promise<XdrReader> {
    if (!this.conn?.isOpen) return Promise.reject(new LibvirtDisconnectedError(`${op}: not connected to libvirtd`));
    const deadline = performance.now() + timeoutMs;
    return this.queue.add(async () => {
      const conn = this.conn;
      if (!conn?.isOpen) throw new LibvirtDisconnectedError(`${op}: not connected to libvirtd`);
      const start = performance.now();
      try {
        if (deadline <= start) throw new LibvirtTimeoutError(`${op}: no free slot within ${timeoutMs} ms`);
        const body = await conn.call(proc, op, args.bytes(), deadline - start);
        this.hook(this.options.onCall, op, performance.now() - start, true);
        return new XdrReader(body);
      } catch (err) {
        this.hook(this.options.onCall, op, performance.now() - start, false);
        throw err;
      }
    }) as Promise<XdrReader>;
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    // An attempt under way fails by itself once it sees `closing`.
    await this.connecting?.catch(() => undefined);
    const conn = this.conn;
    if (!conn) return;
    try {
      await conn.call(Proc.connectClose, 'connect-close', Buffer.alloc(0), 2000);
    } catch {
      // closing anyway
    }
    conn.close();
  }

  // ---- nwfilters -------------------------------------------------------------------------

  async listFilters(): Promise<NwFilterRef[]> {
    const r = await this.call(Proc.connectListAllNwfilters, 'nwfilter-list', new XdrWriter().int(1).uint(0));
    return r.array(readFilter);
  }

  async lookupFilterByName(name: string): Promise<NwFilterRef> {
    return readFilter(await this.call(Proc.nwfilterLookupByName, 'nwfilter-lookup-by-name', new XdrWriter().string(name)));
  }

  async lookupFilterByUuid(uuid: string): Promise<NwFilterRef> {
    return readFilter(await this.call(Proc.nwfilterLookupByUuid, 'nwfilter-lookup-by-uuid', new XdrWriter().fixedOpaque(uuidToBytes(uuid))));
  }

  /**
   * `timeoutMs` overrides the call deadline: libvirtd answers a filter read only after a define in
   * progress (which rebuilds every interface using the filter) has finished.
   */
  async filterXml(filter: string | NwFilterRef, options: { timeoutMs?: number } = {}): Promise<string> {
    const ref = typeof filter === 'string' ? await this.lookupFilterByName(filter) : filter;
    return (await this.call(Proc.nwfilterGetXmlDesc, 'nwfilter-get-xml', writeFilter(new XdrWriter(), ref).uint(0), options.timeoutMs)).string();
  }

  /** The filter's XML, or undefined when there is no filter of that name. */
  async filterXmlIfExists(name: string, options: { timeoutMs?: number } = {}): Promise<string | undefined> {
    try {
      return await this.filterXml(name, options);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Defines (or redefines) a filter with libvirt's validation on. libvirt requires the existing
   * UUID on redefinition: when the XML has none or another one, libvirt answers "already exists
   * with uuid", and the existing UUID is put in and the call repeated. A new filter or one whose
   * XML carries the right UUID (the agent's always do) costs a single call.
   *
   * libvirt < 7.7 has no virNWFilterDefineXMLFlags (so no VALIDATE): the daemon answers "unknown
   * procedure", which is remembered for the connection, and the filter is defined with the plain
   * NWFILTER_DEFINE_XML and validated on our side: read back and compared with what was sent
   * (readback.ts). When libvirt did not keep it, NwFilterNotKeptError (isInvalidXml) says what was
   * dropped, after the previous definition was put back (a new filter stays as libvirt kept it:
   * never undefined, see definePlain). That path costs a read before and one after the define.
   *
   * A filter with IPv6 rules that carry `state` or `ipset` goes the same way on every libvirt:
   * libvirt's schema refuses them although its driver instantiates them (schema-gap.ts).
   *
   * `validate: false` drops the VALIDATE flag (and the read-back): libvirt then silently "repairs"
   * bad input (an unknown attribute is dropped, not refused), so it exists only to measure what
   * validation costs (about 2 ms per call in libvirtd).
   * `timeoutMs` overrides the call deadline: libvirtd rebuilds the firewall of every running
   * interface that uses the filter inside this call (seconds per interface).
   */
  async defineFilter(xml: string, options: DefineOptions = {}): Promise<NwFilterRef> {
    const session = this.session;
    if (this.options.nwfilterDefineFlags === false) this.noteNoDefineFlags(session);
    // libvirt's schema would refuse what its driver does (schema-gap.ts): checked by reading back instead.
    if (options.validate !== false && beyondSchema(xml)) return this.definePlain(xml, options);
    if (session.defineFlags !== false) {
      const flags = options.validate === false ? 0 : NWFILTER_DEFINE_VALIDATE;
      const define = async (text: string) =>
        readFilter(await this.call(Proc.nwfilterDefineXmlFlags, 'nwfilter-define', new XdrWriter().string(text).uint(flags), options.timeoutMs));
      try {
        return await this.adoptingUuid(xml, options, define);
      } catch (err) {
        if (!defineFlagsUnsupported(err)) throw err;
        this.noteNoDefineFlags(session, (err as Error).message);
      }
    }
    return this.definePlain(xml, options);
  }

  /**
   * Remembers for this connection that defines go through the plain procedure, and says so once per
   * connection: at warn with the daemon's answer when detected (an operator should know that
   * libvirt's own validation is off), at info when the client was told so (`reason` undefined).
   */
  private noteNoDefineFlags(session: Session, reason?: string): void {
    if (session.defineFlags === false) return;
    session.defineFlags = false;
    const libvirtVersion = session.version ?? 'unknown';
    if (reason === undefined) this.log?.info({ libvirtVersion }, 'nwfilterDefineFlags is false: filters are defined without VALIDATE and checked by reading them back');
    else this.log?.warn({ libvirtVersion, reason }, 'libvirtd has no virNWFilterDefineXMLFlags (libvirt < 7.7): filters are defined without VALIDATE and checked by reading them back');
  }

  /**
   * One define, repeated once with the existing filter's UUID put in when libvirt answers "already
   * exists with uuid" (unless adoptExistingUuid is false).
   */
  private async adoptingUuid(xml: string, options: DefineOptions, define: (text: string) => Promise<NwFilterRef>): Promise<NwFilterRef> {
    try {
      return await define(xml);
    } catch (err) {
      const name = FILTER_NAME.exec(xml)?.[1];
      if (!isUuidMismatch(err) || !name || options.adoptExistingUuid === false) throw err;
      const existing = await this.lookupFilterByName(name);
      const uuid = `<uuid>${existing.uuid}</uuid>`;
      return define(UUID_IN_XML.test(xml) ? xml.replace(UUID_IN_XML, uuid) : xml.replace(/(<filter[^>]*>)/, `$1${uuid}`));
    }
  }

  /**
   * NWFILTER_DEFINE_XML (no flags) with validation on our side. What libvirt held before is read
   * first, so that a filter libvirt does not keep as sent can be put back as it was: that mirrors
   * VALIDATE, whose refusal leaves the old definition untouched, and the old one is what libvirt
   * understood (it came from libvirt). libvirt applies a define to every running interface at once,
   * so the mangled version protected them meanwhile (a dropped rule may have opened or closed
   * traffic for that moment). A filter that did not exist before is left as libvirt kept it: an
   * interface may reference it by name already, and a filter that exists keeps such an interface
   * protected (undefining would leave it with a dangling reference, or be refused while in use).
   * Assumes no one else defines the same filter meanwhile (the agent serializes per name); someone
   * who does makes the read-back differ, reported as not kept.
   */
  private async definePlain(xml: string, options: DefineOptions): Promise<NwFilterRef> {
    const define = async (text: string) =>
      readFilter(await this.call(Proc.nwfilterDefineXml, 'nwfilter-define', new XdrWriter().string(text), options.timeoutMs));
    if (options.validate === false) return this.adoptingUuid(xml, options, define);
    const name = FILTER_NAME.exec(xml)?.[1];
    // The read waits for a define of this filter in progress, as long as such a define may take.
    const read = { ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) };
    const previous = name ? await this.filterXmlIfExists(name, read) : undefined;
    const ref = await this.adoptingUuid(xml, options, define);
    const differences = filterDifferences(xml, await this.filterXml(ref, read));
    if (differences.length === 0) return ref;
    let restored = false;
    let detail: string;
    if (previous === undefined) {
      detail = 'the filter did not exist before and stays defined as libvirt kept it';
    } else {
      try {
        await define(previous);
        restored = true;
        detail = 'the previous definition was put back';
      } catch (err) {
        detail = `putting back the previous definition failed (${(err as Error).message}); the filter stays defined as libvirt kept it`;
      }
    }
    this.log?.warn({ filter: ref.name, differences, restored }, 'libvirt did not keep the filter as sent (defined without VALIDATE)');
    throw new NwFilterNotKeptError(ref.name, differences, restored, detail);
  }

  async undefineFilter(filter: string | NwFilterRef): Promise<void> {
    const ref = typeof filter === 'string' ? await this.lookupFilterByName(filter) : filter;
    await this.call(Proc.nwfilterUndefine, 'nwfilter-undefine', writeFilter(new XdrWriter(), ref));
  }

  // ---- nwfilter bindings -----------------------------------------------------------------

  async listBindings(): Promise<NwFilterBinding[]> {
    const r = await this.call(Proc.connectListAllNwfilterBindings, 'nwfilter-binding-list', new XdrWriter().int(1).uint(0));
    return r.array(readBinding);
  }

  async createBinding(xml: string): Promise<NwFilterBinding> {
    return readBinding(await this.call(Proc.nwfilterBindingCreateXml, 'nwfilter-binding-create', new XdrWriter().string(xml).uint(0)));
  }

  async deleteBinding(binding: NwFilterBinding): Promise<void> {
    await this.call(Proc.nwfilterBindingDelete, 'nwfilter-binding-delete', new XdrWriter().string(binding.portdev).string(binding.filter));
  }

  // ---- domains ---------------------------------------------------------------------------

  async listDomainRefs(flags = 0): Promise<DomainRef[]> {
    const r = await this.call(Proc.connectListAllDomains, 'domain-list', new XdrWriter().int(1).uint(flags));
    return r.array(readDomain);
  }

  /**
   * Every domain with its state, in five listings whatever the number of domains: all, and those
   * PERSISTENT, RUNNING, PAUSED and SHUTOFF (virConnectListAllDomains filters). Only a domain in
   * another state (blocked, crashed, pmsuspended, ...) or one that changed state between the
   * listings costs a state call; one that vanished meanwhile is left out.
   */
  async listDomains(): Promise<DomainSummary[]> {
    const uuids = async (flags: number) => new Set((await this.listDomainRefs(flags)).map((d) => d.uuid));
    const [all, persistent, running, paused, shutoff] = await Promise.all([
      this.listDomainRefs(0),
      uuids(LIST_PERSISTENT),
      uuids(LIST_RUNNING),
      uuids(LIST_PAUSED),
      uuids(LIST_SHUTOFF),
    ]);
    const listed = (d: DomainRef): DomainStateName | undefined =>
      running.has(d.uuid) ? 'running' : paused.has(d.uuid) ? 'paused' : shutoff.has(d.uuid) ? 'shutoff' : undefined;
    const out = await Promise.all(
      all.map(async (d): Promise<DomainSummary | undefined> => {
        let state = listed(d);
        if (!state) {
          try {
            state = await this.domainState(d);
          } catch (err) {
            if (isNotFound(err)) return undefined;
            throw err;
          }
        }
        return { ...d, state, active: d.id !== -1, persistent: persistent.has(d.uuid) };
      }),
    );
    return out.filter((d): d is DomainSummary => d !== undefined);
  }

  async lookupDomainByName(name: string): Promise<DomainRef> {
    return readDomain(await this.call(Proc.domainLookupByName, 'domain-lookup-by-name', new XdrWriter().string(name)));
  }

  async lookupDomainByUuid(uuid: string): Promise<DomainRef> {
    return readDomain(await this.call(Proc.domainLookupByUuid, 'domain-lookup-by-uuid', new XdrWriter().fixedOpaque(uuidToBytes(uuid))));
  }

  async domainState(domain: DomainRef): Promise<DomainSummary['state']> {
    const r = await this.call(Proc.domainGetState, 'domain-get-state', writeDomain(new XdrWriter(), domain).uint(0));
    return DomainState[r.int()] ?? 'nostate';
  }

  async isPersistent(domain: DomainRef): Promise<boolean> {
    return (await this.call(Proc.domainIsPersistent, 'domain-is-persistent', writeDomain(new XdrWriter(), domain))).int() === 1;
  }

  async isActive(domain: DomainRef): Promise<boolean> {
    return (await this.call(Proc.domainIsActive, 'domain-is-active', writeDomain(new XdrWriter(), domain))).int() === 1;
  }

  /** The domain's XML; `inactive` gives the persistent definition instead of the running one. */
  async domainXml(domain: DomainRef, inactive = false): Promise<string> {
    const r = await this.call(Proc.domainGetXmlDesc, 'domain-get-xml', writeDomain(new XdrWriter(), domain).uint(inactive ? DOMAIN_XML_INACTIVE : 0));
    return r.string();
  }

  /** virDomainUpdateDeviceFlags with explicit AFFECT_LIVE / AFFECT_CONFIG. */
  async updateDevice(domain: DomainRef, deviceXml: string, target: DeviceTarget): Promise<void> {
    const flags = (target.live ? DOMAIN_AFFECT_LIVE : 0) | (target.config ? DOMAIN_AFFECT_CONFIG : 0);
    await this.call(Proc.domainUpdateDeviceFlags, 'domain-update-device', writeDomain(new XdrWriter(), domain).string(deviceXml).uint(flags));
  }

  /**
   * Updates an interface where the domain has it: the running instance when active, the
   * persistent definition when persistent (both for a running persistent domain).
   */
  async updateInterface(domain: DomainRef, interfaceXml: string): Promise<DeviceTarget> {
    const [active, persistent] = await Promise.all([this.isActive(domain), this.isPersistent(domain)]);
    const target = interfaceTarget(active, persistent);
    await this.updateDevice(domain, interfaceXml, target);
    return target;
  }

  async libVersion(): Promise<string> {
    return versionText(decodeVersion(await this.call(Proc.connectGetLibVersion, 'connect-get-lib-version')));
  }
}

/** remote_connect_get_lib_version_ret: an unsigned hyper (two 32-bit words). */
function decodeVersion(r: XdrReader): number {
  const hi = r.uint();
  const lo = r.uint();
  return hi * 2 ** 32 + lo;
}

/** Options of LibvirtClient.defineFilter. */
export interface DefineOptions {
  adoptExistingUuid?: boolean;
  validate?: boolean;
  timeoutMs?: number;
}

/**
 * Where an interface change must go for a domain in this state: a running domain's live interface
 * (AFFECT_LIVE), a persistent domain's definition (AFFECT_CONFIG) so the change survives a restart,
 * both for a running persistent domain. An inactive transient domain does not exist, so one of the
 * two is always true.
 */
export function interfaceTarget(active: boolean, persistent: boolean): DeviceTarget {
  return { live: active, config: persistent };
}
