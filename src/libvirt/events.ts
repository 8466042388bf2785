import { DomainEventType, Proc, STARTED_MIGRATED, STOPPED_MIGRATED } from './protocol.js';
import type { DomainDeviceEvent, DomainDeviceEventName, DomainLifecycleEvent, DomainRef, DomainStateEvent } from './types.js';
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
export function decodeLifecycleEvent(body: Buffer): DomainStateEvent & { callbackId: number } {
  const r = new XdrReader(body);
  const callbackId = r.int();
  const domain = readDomain(r);
  const type = r.int();
  const detail = r.int();
  const migrated = (type === STARTED && detail === STARTED_MIGRATED) || (type === STOPPED && detail === STOPPED_MIGRATED);
  return { callbackId, domain, event: migrated ? 'migrated' : (DomainEventType[type] ?? 'other'), detail };
}

/**
 * remote_domain_event_callback_device_added_msg: callbackID, remote_nonnull_domain dom,
 * remote_nonnull_string devAlias. remote_domain_event_callback_device_removed_msg is callbackID
 * followed by a nested remote_domain_event_device_removed_msg { dom, devAlias }: XDR does not
 * mark nesting, so both have the same bytes.
 */
export function decodeDeviceEvent(body: Buffer, event: DomainDeviceEventName): DomainDeviceEvent & { callbackId: number } {
  const r = new XdrReader(body);
  const callbackId = r.int();
  const domain = readDomain(r);
  const alias = r.string();
  return { callbackId, domain, event, alias };
}

/**
 * The domain event a message of procedure `proc` carries, or undefined when the procedure is not a
 * domain event the client registers for. Throws XdrError on a truncated body.
 */
export function decodeDomainEvent(proc: number, body: Buffer): (DomainLifecycleEvent & { callbackId: number }) | undefined {
  switch (proc) {
    case Proc.domainEventCallbackLifecycle:
      return decodeLifecycleEvent(body);
    case Proc.domainEventCallbackDeviceAdded:
      return decodeDeviceEvent(body, 'device-added');
    case Proc.domainEventCallbackDeviceRemoved:
      return decodeDeviceEvent(body, 'device-removed');
    default:
      return undefined;
  }
}
