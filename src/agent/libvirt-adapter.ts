import type { Logger } from 'pino';
import {
  LibvirtClient,
  LibvirtTimeoutError,
  isDisconnected,
  isInUse,
  isInvalidXml,
  isLoop,
  isNotFound,
  isUuidMismatch,
  type DomainRef,
} from '../libvirt/index.js';
import type { Metrics } from '../runtime/metrics.js';
import type { AgentLibvirt, DomainEventKind, LibvirtErrorKind } from './libvirt-port.js';

const EVENT_KINDS: readonly DomainEventKind[] = ['defined', 'undefined', 'started', 'stopped', 'migrated', 'device-added', 'device-removed'];

/** Maps the RPC client's typed errors onto what the agent acts on. */
export function classifyLibvirtError(err: unknown): LibvirtErrorKind {
  if (isDisconnected(err) || err instanceof LibvirtTimeoutError) return 'disconnected';
  if (isNotFound(err)) return 'not-found';
  if (isInUse(err)) return 'in-use';
  if (isInvalidXml(err) || isLoop(err) || isUuidMismatch(err)) return 'invalid';
  return 'other';
}

/** The agent's view of libvirt on top of the RPC client, with call latency and connection metrics. */
export async function connectAgentLibvirt(o: { socketPath: string; uri: string; log: Logger; metrics: Metrics }): Promise<AgentLibvirt> {
  const client = new LibvirtClient({
    socketPath: o.socketPath,
    uri: o.uri,
    log: o.log,
    onCall: (op, ms, ok) => o.metrics.libvirtCallDuration.observe({ op, ok: String(ok) }, ms / 1000),
    onConnectionChange: (up) => o.metrics.libvirtConnected.set(up ? 1 : 0),
  });
  // The agent starts even while libvirtd is down; it is not ready until connected.
  await client.connectWithRetry();
  const ref = (uuid: string): Promise<DomainRef> => client.lookupDomainByUuid(uuid);
  return {
    listFilters: () => client.listFilters(),
    filterXml: (name, options) => client.filterXmlIfExists(name, options ?? {}),
    defineFilter: async (xml, options) => {
      // Never take over the UUID of a filter of the same name: that filter is not ours (ours carry
      // the UUID derived from their name), and overwriting it would break the ownership promise.
      // libvirt's refusal becomes Applied=False/InvalidFilter.
      await client.defineFilter(xml, { adoptExistingUuid: false, ...(options?.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) });
    },
    undefineFilter: (name) => client.undefineFilter(name),
    listDomains: async () => (await client.listDomains()).map((d) => ({ name: d.name, uuid: d.uuid, active: d.active, persistent: d.persistent })),
    domainXml: async (uuid, inactive) => client.domainXml(await ref(uuid), inactive),
    updateDevice: async (uuid, xml, target) => client.updateDevice(await ref(uuid), xml, target),
    onDomainEvent: (handler) => {
      client.on('domain-event', (e: { domain: DomainRef; event: string }) => {
        const kind = (EVENT_KINDS as readonly string[]).includes(e.event) ? (e.event as DomainEventKind) : 'other';
        handler({ uuid: e.domain.uuid, name: e.domain.name, kind });
      });
      // After a reconnect, events may have been missed while disconnected.
      client.on('connected', () => handler({ uuid: '', name: '', kind: 'reconnected' }));
    },
    isConnected: () => client.connected,
    classify: classifyLibvirtError,
    close: () => client.close(),
  };
}
