import type { DomainEventType, DomainState } from './protocol.js';
import type { Logger } from 'pino';

export interface NwFilterRef {
  name: string;
  uuid: string;
}

export interface DomainRef {
  name: string;
  uuid: string;
  /** Hypervisor id; -1 when the domain is not running. */
  id: number;
}

export type DomainStateName = (typeof DomainState)[number];

export interface DomainSummary extends DomainRef {
  state: DomainStateName;
  active: boolean;
  persistent: boolean;
}

export interface NwFilterBinding {
  portdev: string;
  filter: string;
}

/** What a VIR_DOMAIN_EVENT_ID_LIFECYCLE event is reported as. */
export type DomainStateEventName = (typeof DomainEventType)[number] | 'migrated' | 'other';
/** VIR_DOMAIN_EVENT_ID_DEVICE_ADDED / VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED: a device hot-plugged into or unplugged from a running domain. */
export type DomainDeviceEventName = 'device-added' | 'device-removed';
export type DomainEventName = DomainStateEventName | DomainDeviceEventName;

/** A lifecycle change: defined, started, stopped, migrated, ... */
export interface DomainStateEvent {
  domain: DomainRef;
  event: DomainStateEventName;
  /** libvirt's detail code for the event (e.g. STARTED_BOOTED, STOPPED_DESTROYED). */
  detail: number;
}

/**
 * A device attached to or detached from the running domain (live). libvirt reports
 * device-removed only once the hypervisor has really removed the device: for a PCI device that is
 * when the guest acknowledged the unplug, which may be never.
 */
export interface DomainDeviceEvent {
  domain: DomainRef;
  event: DomainDeviceEventName;
  /** The device's alias (`<alias name=.../>` in the live XML, e.g. 'net1' or a user's 'ua-...'). */
  alias: string;
}

/**
 * What the client's 'domain-event' carries: switch on `event` (the union narrows to a lifecycle
 * change with `detail` or a device event with `alias`). The name predates device events.
 */
export type DomainLifecycleEvent = DomainStateEvent | DomainDeviceEvent;

export interface LibvirtClientOptions {
  /** Default /var/run/libvirt/libvirt-sock. */
  socketPath?: string;
  /** Default qemu:///system (the nwfilter driver is reached through it). */
  uri?: string;
  /**
   * Deadline of one call in ms, counted from the moment it is made (time spent waiting for a
   * concurrency slot included). Default 30 s. A call past it rejects with LibvirtTimeoutError.
   */
  callTimeoutMs?: number;
  /** Deadline of connecting and the handshake (auth, connect-open, event registration). Default 5 s. */
  connectTimeoutMs?: number;
  /** Calls in flight at most; more wait in a queue. */
  concurrency?: number;
  /**
   * Backoff between reconnect attempts: baseMs doubling up to maxMs, jittered into the upper half
   * (src/runtime/backoff.ts). Default 250 ms to 10 s.
   */
  reconnect?: { baseMs: number; maxMs: number };
  log?: Logger;
  /** Called after every call: operation name, duration, success. For metrics. */
  onCall?: (op: string, durationMs: number, ok: boolean) => void;
  /** Called on every connection state change. */
  onConnectionChange?: (connected: boolean) => void;
  /**
   * false: define filters with the plain NWFILTER_DEFINE_XML and the read-back check, as on a
   * libvirtd older than 7.7 (which the client detects by itself). For tests of that path on a newer
   * libvirtd. Default true: NWFILTER_DEFINE_XML_FLAGS with VALIDATE where the daemon has it.
   */
  nwfilterDefineFlags?: boolean;
}

/** Where an interface update goes: the running instance (AFFECT_LIVE) and/or the persistent definition (AFFECT_CONFIG). */
export interface DeviceTarget {
  live: boolean;
  config: boolean;
}

/**
 * Everything the operator does with libvirt, behind one interface (implemented by LibvirtClient over
 * libvirt's remote RPC protocol). Every method rejects with LibvirtError (libvirt said no),
 * LibvirtDisconnectedError (no connection; never a hang) or LibvirtTimeoutError (no reply in time).
 */
export interface LibvirtApi {
  readonly connected: boolean;
  /** Connects once; rejects with LibvirtDisconnectedError when libvirtd cannot be reached. */
  connect(): Promise<void>;
  /** Like connect(), but keeps retrying in the background with backoff when the first attempt fails. */
  connectWithRetry(): Promise<void>;
  /** Closes the connection and stops reconnecting; pending calls reject with LibvirtDisconnectedError. */
  close(): Promise<void>;

  listFilters(): Promise<NwFilterRef[]>;
  lookupFilterByName(name: string): Promise<NwFilterRef>;
  lookupFilterByUuid(uuid: string): Promise<NwFilterRef>;
  filterXml(filter: string | NwFilterRef): Promise<string>;
  filterXmlIfExists(name: string): Promise<string | undefined>;
  /**
   * virNWFilterDefineXMLFlags(VALIDATE); keeps the existing UUID of a filter of the same name. On
   * libvirt < 7.7, virNWFilterDefineXML with a read-back check (NwFilterNotKeptError).
   */
  defineFilter(xml: string, options?: { adoptExistingUuid?: boolean; validate?: boolean }): Promise<NwFilterRef>;
  undefineFilter(filter: string | NwFilterRef): Promise<void>;

  listBindings(): Promise<NwFilterBinding[]>;
  createBinding(xml: string): Promise<NwFilterBinding>;
  deleteBinding(binding: NwFilterBinding): Promise<void>;

  listDomains(): Promise<DomainSummary[]>;
  lookupDomainByName(name: string): Promise<DomainRef>;
  lookupDomainByUuid(uuid: string): Promise<DomainRef>;
  domainState(domain: DomainRef): Promise<DomainStateName>;
  domainXml(domain: DomainRef, inactive?: boolean): Promise<string>;
  updateDevice(domain: DomainRef, deviceXml: string, target: DeviceTarget): Promise<void>;
  /** update-device with LIVE and/or CONFIG chosen from the domain's state; returns the choice. */
  updateInterface(domain: DomainRef, interfaceXml: string): Promise<DeviceTarget>;

  /** Domain lifecycle and device events as an async iterator (ends when `signal` aborts). */
  domainEvents(signal?: AbortSignal): AsyncIterable<DomainLifecycleEvent>;
  on(event: 'domain-event', listener: (e: DomainLifecycleEvent) => void): this;
  on(event: 'connected' | 'disconnected', listener: () => void): this;
  off(event: 'domain-event', listener: (e: DomainLifecycleEvent) => void): this;
  off(event: 'connected' | 'disconnected', listener: () => void): this;
}
