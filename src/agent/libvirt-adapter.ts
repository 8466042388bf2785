import type { Logger } from 'pino';
import { LibvirtClient, isInUse, isNotFound, type DomainRef } from '../libvirt/index.js';
import type { Metrics } from '../runtime/metrics.js';
import type { AgentLibvirt, DomainEventKind } from './libvirt-port.js';

/** The agent's view of libvirt on top of the RPC client, with call latency and connection metrics. */
export async function connectAgentLibvirt(o: { socketPath: string; uri: string; log: Logger; metrics: Metrics }): Promise<AgentLibvirt & { isInUse: (e: unknown) => boolean; isNotFound: (e: unknown) => boolean }> {
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
    filterXml: (name) => client.filterXmlIfExists(name),
    defineFilter: async (xml) => {
      await client.defineFilter(xml);
    },
    undefineFilter: (name) => client.undefineFilter(name),
    listDomains: async () => (await client.listDomains()).map((d) => ({ name: d.name, uuid: d.uuid, active: d.active, persistent: d.persistent })),
    domainXml: async (uuid, inactive) => client.domainXml(await ref(uuid), inactive),
    updateDevice: async (uuid, xml, target) => client.updateDevice(await ref(uuid), xml, target),
    onDomainEvent: (handler) => {
      client.on('domain-event', (e: { domain: DomainRef; event: string }) => {
        const kind = (['defined', 'undefined', 'started', 'stopped', 'migrated'].includes(e.event) ? e.event : 'other') as DomainEventKind;
        handler({ uuid: e.domain.uuid, name: e.domain.name, kind });
      });
      // After a reconnect, events may have been missed: report a synthetic change for everything.
      client.on('connected', () => handler({ uuid: '', name: '', kind: 'other' }));
    },
    isConnected: () => client.connected,
    close: () => client.close(),
    isInUse,
    isNotFound,
  };
}
