import type { DomainEventType, DomainState } from './protocol.js';

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

export type DomainEventName = (typeof DomainEventType)[number] | 'migrated';

export interface DomainLifecycleEvent {
  domain: DomainRef;
  event: DomainEventName;
  /** libvirt's detail code for the event (e.g. STARTED_BOOTED, STOPPED_DESTROYED). */
  detail: number;
}

export interface LibvirtClientOptions {
  /** Default /var/run/libvirt/libvirt-sock. */
  socketPath?: string;
  /** Default qemu:///system (the nwfilter driver is reached through it). */
  uri?: string;
  callTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Calls in flight at most; more wait in a queue. */
  concurrency?: number;
  reconnect?: { baseMs: number; maxMs: number };
  log?: import('pino').Logger;
  /** Called after every call: operation name, duration, success. For metrics. */
  onCall?: (op: string, durationMs: number, ok: boolean) => void;
  /** Called on every connection state change. */
  onConnectionChange?: (connected: boolean) => void;
}
