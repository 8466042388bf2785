// Decoding of the domain event messages the client registers for, from hand-built XDR bodies laid out
// as in libvirt's src/remote/remote_protocol.x.
import { describe, expect, it } from 'vitest';
import { decodeDeviceEvent, decodeDomainEvent } from '../../../src/libvirt/events.js';
import { DOMAIN_EVENT_ID_DEVICE_ADDED, DOMAIN_EVENT_ID_DEVICE_REMOVED, Proc } from '../../../src/libvirt/protocol.js';
import { uuidToBytes } from '../../../src/libvirt/uuid.js';
import { XdrError, XdrWriter } from '../../../src/libvirt/xdr.js';

const uuid = '0b3d1c2e-4f5a-4b6c-8d7e-9f0a1b2c3d4e';

/** callbackID, remote_nonnull_domain { name, uuid[16], id }, remote_nonnull_string devAlias. */
const deviceMsg = (callbackId: number, name: string, id: number, alias: string) =>
  new XdrWriter().int(callbackId).string(name).fixedOpaque(uuidToBytes(uuid)).int(id).string(alias).bytes();

describe('device event decoding', () => {
  it('uses the procedure and event numbers of libvirt', () => {
    // REMOTE_PROC_DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED = 333, _DEVICE_ADDED = 354;
    // VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED = 15, _DEVICE_ADDED = 19.
    expect([Proc.domainEventCallbackDeviceRemoved, Proc.domainEventCallbackDeviceAdded]).toEqual([333, 354]);
    expect([DOMAIN_EVENT_ID_DEVICE_REMOVED, DOMAIN_EVENT_ID_DEVICE_ADDED]).toEqual([15, 19]);
  });

  it('decodes remote_domain_event_callback_device_added_msg', () => {
    const body = deviceMsg(4, 'vm-a', 12, 'net1');
    // 4 (callbackID) + 4+4 (name, padded) + 16 (uuid) + 4 (id) + 4+4 (alias)
    expect(body.length).toBe(40);
    expect(decodeDeviceEvent(body, 'device-added')).toEqual({ callbackId: 4, domain: { name: 'vm-a', uuid, id: 12 }, event: 'device-added', alias: 'net1' });
  });

  it('decodes remote_domain_event_callback_device_removed_msg (callbackID, then the nested dom and devAlias)', () => {
    // An alias whose length is not a multiple of 4: the string is padded to 12 bytes.
    const body = deviceMsg(5, 'a-longer-vm-name', 3, 'ua-hotnic0');
    expect(decodeDeviceEvent(body, 'device-removed')).toEqual({
      callbackId: 5,
      domain: { name: 'a-longer-vm-name', uuid, id: 3 },
      event: 'device-removed',
      alias: 'ua-hotnic0',
    });
  });

  it('picks the decoder by procedure; other procedures are not domain events of the client', () => {
    const device = deviceMsg(1, 'vm-b', 2, 'net0');
    expect(decodeDomainEvent(Proc.domainEventCallbackDeviceAdded, device)).toMatchObject({ event: 'device-added', alias: 'net0' });
    expect(decodeDomainEvent(Proc.domainEventCallbackDeviceRemoved, device)).toMatchObject({ event: 'device-removed', alias: 'net0' });
    const lifecycle = new XdrWriter().int(1).string('vm-b').fixedOpaque(uuidToBytes(uuid)).int(2).int(5).int(1).bytes(); // STOPPED_DESTROYED
    expect(decodeDomainEvent(Proc.domainEventCallbackLifecycle, lifecycle)).toEqual({ callbackId: 1, domain: { name: 'vm-b', uuid, id: 2 }, event: 'stopped', detail: 1 });
    // REMOTE_PROC_DOMAIN_EVENT_DEVICE_REMOVED (311), the old form without callbackID, is never registered for.
    expect(decodeDomainEvent(311, device)).toBeUndefined();
  });

  it('rejects a truncated body', () => {
    const body = deviceMsg(1, 'vm-c', 2, 'net0');
    for (const cut of [3, 20, body.length - 1]) expect(() => decodeDeviceEvent(body.subarray(0, cut), 'device-added')).toThrow(XdrError);
  });
});
