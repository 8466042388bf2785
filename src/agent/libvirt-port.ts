/**
 * What the agent needs from libvirt, and nothing more. The production implementation adapts
 * src/libvirt's RPC client (libvirt-adapter.ts); test/helpers/fake-libvirt.ts implements the same
 * port in memory for unit and model-based tests.
 */
export interface DomainInfo {
  name: string;
  uuid: string;
  active: boolean;
  persistent: boolean;
}

/**
 * Lifecycle events, plus device hot-plug ('device-added' / 'device-removed': a NIC attached to or
 * detached from a running domain). 'reconnected' carries no domain: events may have been missed.
 */
export type DomainEventKind = 'defined' | 'undefined' | 'started' | 'stopped' | 'migrated' | 'device-added' | 'device-removed' | 'other';

export interface DomainEvent {
  uuid: string;
  name: string;
  kind: DomainEventKind | 'reconnected';
}

/**
 * How the agent treats a failed libvirt call:
 * - `not-found`: the filter or domain is gone (often fine: someone else removed it);
 * - `in-use`: undefine of a filter an interface or another filter still uses (retry later);
 * - `invalid`: libvirt refuses the document itself (bad XML, reference loop, UUID clash):
 *   retrying the same input cannot succeed, so it is a terminal error with a reason of its own;
 * - `disconnected`: libvirtd is unreachable or did not answer in time: retried quietly;
 * - `other`: anything else, retried with backoff.
 */
export type LibvirtErrorKind = 'not-found' | 'in-use' | 'invalid' | 'disconnected' | 'other';

export interface AgentLibvirt {
  listFilters(): Promise<{ name: string; uuid: string }[]>;
  /**
   * The filter's XML, or undefined when no such filter exists. `timeoutMs` overrides the call
   * deadline (libvirtd answers only after a define of the filter in progress has finished).
   */
  filterXml(name: string, options?: { timeoutMs?: number }): Promise<string | undefined>;
  /** `timeoutMs` overrides the call deadline: the define rebuilds every running interface using the filter. */
  defineFilter(xml: string, options?: { timeoutMs?: number }): Promise<void>;
  undefineFilter(name: string): Promise<void>;
  listDomains(): Promise<DomainInfo[]>;
  domainXml(uuid: string, inactive: boolean): Promise<string>;
  /** virDomainUpdateDeviceFlags with AFFECT_LIVE and/or AFFECT_CONFIG. */
  updateDevice(uuid: string, deviceXml: string, target: { live: boolean; config: boolean }): Promise<void>;
  onDomainEvent(handler: (e: DomainEvent) => void): void;
  isConnected(): boolean;
  classify(err: unknown): LibvirtErrorKind;
  close(): Promise<void>;
}
