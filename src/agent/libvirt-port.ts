/**
 * What the agent needs from libvirt, and nothing more. The production implementation adapts
 * src/libvirt's RPC client (libvirt-adapter.ts); the interface keeps the agent's logic readable and
 * lets a focused unit test count calls.
 */
export interface DomainInfo {
  name: string;
  uuid: string;
  active: boolean;
  persistent: boolean;
}

export type DomainEventKind = 'defined' | 'undefined' | 'started' | 'stopped' | 'migrated' | 'other';

export interface AgentLibvirt {
  listFilters(): Promise<{ name: string; uuid: string }[]>;
  /** The filter's XML, or undefined when no such filter exists. */
  filterXml(name: string): Promise<string | undefined>;
  defineFilter(xml: string): Promise<void>;
  undefineFilter(name: string): Promise<void>;
  listDomains(): Promise<DomainInfo[]>;
  domainXml(uuid: string, inactive: boolean): Promise<string>;
  /** virDomainUpdateDeviceFlags with AFFECT_LIVE and/or AFFECT_CONFIG. */
  updateDevice(uuid: string, deviceXml: string, target: { live: boolean; config: boolean }): Promise<void>;
  onDomainEvent(handler: (e: { uuid: string; name: string; kind: DomainEventKind }) => void): void;
  isConnected(): boolean;
  close(): Promise<void>;
}

/** libvirt error classification the agent acts on (implemented by the adapter). */
export interface LibvirtErrorInfo {
  inUse: boolean;
  notFound: boolean;
  disconnected: boolean;
}
