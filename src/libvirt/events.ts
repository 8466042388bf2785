import { DomainEventType, STARTED_MIGRATED, STOPPED_MIGRATED } from './protocol.js';
import type { DomainLifecycleEvent, DomainRef } from './types.js';
import { bytesToUuid } from './uuid.js';
import { XdrReader } from './xdr.js';

export const readDomain = (r: XdrReader): DomainRef => ({ name: r.string(), uuid: bytesToUuid(r.fixedOpaque(16)), id: r.int() });

const STARTED = DomainEventType.indexOf('started');
const STOPPED = DomainEventType.indexOf('stopped');

/**
 * remote_domain_event_callback_lifecycle_msg: callbackID, remote_nonnull_domain, event, detail.
 * A migration shows up as STARTED/MIGRATED on the target host and STOPPED/MIGRATED on the source:
 * both are reported as 'migrated' so that a consumer does not mistake the source's stop for a VM
 * that went away for good. Unknown future event types map to 'other'.
 */
export function decodeLifecycleEvent(body: Buffer): DomainLifecycleEvent & { callbackId: number } {
  const r = new XdrReader(body);
  const callbackId = r.int();
  const domain = readDomain(r);
  const type = r.int();
  const detail = r.int();
  const migrated = (type === STARTED && detail === STARTED_MIGRATED) || (type === STOPPED && detail === STOPPED_MIGRATED);
  return { callbackId, domain, event: migrated ? 'migrated' : (DomainEventType[type] ?? 'other'), detail };
}
