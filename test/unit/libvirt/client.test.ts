// LibvirtClient against a scripted libvirtd: the handshake it sends, UUID adoption on define, and
// that a throwing listener or metrics hook never breaks the connection. The real daemon is covered
// in test/integration/libvirt; this fake lets the test see the exact procedures and arguments.
import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LibvirtClient } from '../../../src/libvirt/client.js';
import { encodePacket, PacketReader, type Header } from '../../../src/libvirt/connection.js';
import { LibvirtDisconnectedError } from '../../../src/libvirt/errors.js';
import { MessageStatus, MessageType, Proc } from '../../../src/libvirt/protocol.js';
import type { DomainLifecycleEvent } from '../../../src/libvirt/types.js';
import { uuidToBytes } from '../../../src/libvirt/uuid.js';
import { XdrReader, XdrWriter } from '../../../src/libvirt/xdr.js';

const UUID = '6f1c3c1e-3b7a-4a5e-9d2a-1b2c3d4e5f60';
type Handler = (body: Buffer) => { ok: Buffer } | { err: Buffer };
let server: Server | undefined;
let peers: Socket[] = [];

/** A fake libvirtd answering each procedure with `handlers`; records the calls it got. */
async function fakeLibvirtd(handlers: Partial<Record<number, Handler>>): Promise<{ path: string; calls: { proc: number; body: Buffer }[] }> {
  const path = join(mkdtempSync(join(tmpdir(), 'nwf-fake-')), 'sock');
  const calls: { proc: number; body: Buffer }[] = [];
  server = createServer((s) => {
    peers.push(s);
    const reader = new PacketReader();
    s.on('error', () => undefined);
    s.on('data', (d) =>
      reader.push(d, (h: Header, body) => {
        calls.push({ proc: h.procedure, body });
        const r = (handlers[h.procedure] ?? (() => ({ ok: Buffer.alloc(0) })))(body);
        const ok = 'ok' in r;
        s.write(encodePacket({ ...h, type: MessageType.reply, status: ok ? MessageStatus.ok : MessageStatus.error }, ok ? r.ok : r.err));
      }),
    );
  });
  await new Promise<void>((r) => server!.listen(path, r));
  return { path, calls };
}

const noAuth: Handler = () => ({ ok: new XdrWriter().uint(1).int(0).bytes() }); // [REMOTE_AUTH_NONE]
const libvirtError = (code: number, msg: string) => ({ err: new XdrWriter().int(code).int(33).optString(msg).int(2).bytes() });
const filterRef = (name: string, uuid: string) => new XdrWriter().string(name).fixedOpaque(uuidToBytes(uuid)).bytes();
/** [eventID, dom != NULL] of every event registration among `calls`. */
const registrations = (calls: { proc: number; body: Buffer }[]) =>
  calls.filter((x) => x.proc === Proc.connectDomainEventCallbackRegisterAny).map((x) => {
    const r = new XdrReader(x.body);
    return [r.int(), r.bool()];
  });
/** A message (an event) from libvirtd to the client. */
const sendEvent = (peer: Socket, procedure: number, body: Buffer) =>
  peer.write(encodePacket({ program: 0x20008086, version: 1, procedure, type: MessageType.message, serial: 0, status: 0 }, body));
const until = async (what: string, f: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

afterEach(async () => {
  for (const p of peers) p.destroy();
  peers = [];
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

describe('LibvirtClient handshake', () => {
  it('asks for auth types, opens the URI, registers for lifecycle and device events of all domains', async () => {
    const fake = await fakeLibvirtd({ [Proc.authList]: noAuth });
    const c = new LibvirtClient({ socketPath: fake.path, uri: 'nwfilter:///system' });
    await c.connect();
    const reg = Proc.connectDomainEventCallbackRegisterAny;
    expect(fake.calls.map((x) => x.proc)).toEqual([Proc.authList, Proc.connectOpen, reg, reg, reg]);
    const open = new XdrReader(fake.calls[1]!.body);
    expect([open.optString(), open.uint()]).toEqual(['nwfilter:///system', 0]);
    // VIR_DOMAIN_EVENT_ID_LIFECYCLE, _DEVICE_ADDED, _DEVICE_REMOVED, each with dom = NULL (all domains)
    expect(registrations(fake.calls)).toEqual([
      [0, false],
      [19, false],
      [15, false],
    ]);
    await c.close();
    expect(fake.calls.at(-1)!.proc).toBe(Proc.connectClose);
  });

  it('answers polkit when libvirtd asks for it, and refuses SASL-only servers', async () => {
    const polkit = await fakeLibvirtd({ [Proc.authList]: () => ({ ok: new XdrWriter().uint(1).int(2).bytes() }) });
    const c = new LibvirtClient({ socketPath: polkit.path });
    await c.connect();
    expect(polkit.calls.map((x) => x.proc).slice(0, 2)).toEqual([Proc.authList, Proc.authPolkit]);
    await c.close();
    await new Promise((r) => server!.close(r));
    const sasl = await fakeLibvirtd({ [Proc.authList]: () => ({ ok: new XdrWriter().uint(1).int(1).bytes() }) });
    await expect(new LibvirtClient({ socketPath: sasl.path }).connect()).rejects.toBeInstanceOf(LibvirtDisconnectedError);
  });
});

describe('defineFilter', () => {
  it('sends VALIDATE, and on "already exists with uuid" repeats once with the existing UUID put in', async () => {
    const defined: string[] = [];
    const fake = await fakeLibvirtd({
      [Proc.authList]: noAuth,
      [Proc.nwfilterDefineXmlFlags]: (body) => {
        const r = new XdrReader(body);
        const xml = r.string();
        expect(r.uint()).toBe(1); // VIR_NWFILTER_DEFINE_VALIDATE
        defined.push(xml);
        return xml.includes(UUID) ? { ok: filterRef('f1', UUID) } : libvirtError(9, `operation failed: filter 'f1' already exists with uuid ${UUID}`);
      },
      [Proc.nwfilterLookupByName]: () => ({ ok: filterRef('f1', UUID) }),
    });
    const c = new LibvirtClient({ socketPath: fake.path });
    await c.connect();
    expect(await c.defineFilter("<filter name='f1' chain='root'><rule action='accept' direction='in'><all/></rule></filter>")).toEqual({ name: 'f1', uuid: UUID });
    expect(defined).toHaveLength(2);
    expect(defined[1]).toBe(`<filter name='f1' chain='root'><uuid>${UUID}</uuid><rule action='accept' direction='in'><all/></rule></filter>`);
    // a wrong UUID is replaced, not duplicated
    defined.length = 0;
    await c.defineFilter("<filter name='f1'><uuid>11111111-2222-4333-8444-555555555555</uuid></filter>");
    expect(defined[1]).toBe(`<filter name='f1'><uuid>${UUID}</uuid></filter>`);
    await c.close();
  });
});

describe('listener and hook failures', () => {
  it('a throwing domain-event listener or onCall hook breaks neither the connection nor the call', async () => {
    const fake = await fakeLibvirtd({ [Proc.authList]: noAuth, [Proc.nwfilterLookupByName]: () => ({ ok: filterRef('f1', UUID) }) });
    const c = new LibvirtClient({
      socketPath: fake.path,
      onCall: () => {
        throw new Error('metrics broke');
      },
    });
    await c.connect();
    const seen: string[] = [];
    c.on('domain-event', (e) => seen.push(e.event));
    c.on('domain-event', () => {
      throw new Error('listener broke');
    });
    const event = new XdrWriter().int(1).string('vm1').fixedOpaque(uuidToBytes(UUID)).int(3).int(2).int(0).bytes(); // started
    peers[0]!.write(encodePacket({ program: 0x20008086, version: 1, procedure: Proc.domainEventCallbackLifecycle, type: MessageType.message, serial: 0, status: 0 }, event));
    expect(await c.lookupFilterByName('f1')).toEqual({ name: 'f1', uuid: UUID });
    expect(c.connected).toBe(true);
    expect(seen).toEqual(['started']);
    await c.close();
  });
});

describe('device hot-plug events', () => {
  const vm1 = () => new XdrWriter().string('vm1').fixedOpaque(uuidToBytes(UUID)).int(7);

  it("emits 'device-added' and 'device-removed' with the alias on 'domain-event', in order with lifecycle events", async () => {
    const fake = await fakeLibvirtd({ [Proc.authList]: noAuth, [Proc.nwfilterLookupByName]: () => ({ ok: filterRef('f1', UUID) }) });
    const c = new LibvirtClient({ socketPath: fake.path });
    await c.connect();
    const seen: DomainLifecycleEvent[] = [];
    c.on('domain-event', (e) => seen.push(e));
    const peer = peers[0]!;
    // callbackID, remote_nonnull_domain, devAlias
    sendEvent(peer, Proc.domainEventCallbackDeviceAdded, Buffer.concat([new XdrWriter().int(2).bytes(), vm1().string('net1').bytes()]));
    sendEvent(peer, Proc.domainEventCallbackLifecycle, Buffer.concat([new XdrWriter().int(1).bytes(), vm1().int(3).int(0).bytes()])); // suspended
    sendEvent(peer, Proc.domainEventCallbackDeviceRemoved, Buffer.concat([new XdrWriter().int(3).bytes(), vm1().string('ua-nic').bytes()]));
    // a reply after the events: the client has read them all once the call returns
    await c.lookupFilterByName('f1');
    const domain = { name: 'vm1', uuid: UUID, id: 7 };
    expect(seen).toEqual([
      { domain, event: 'device-added', alias: 'net1' },
      { domain, event: 'suspended', detail: 0 },
      { domain, event: 'device-removed', alias: 'ua-nic' },
    ]);
    // what a consumer does: switch on event, the union narrows
    const described = seen.map((e) => {
      switch (e.event) {
        case 'device-added':
        case 'device-removed':
          return `${e.event} ${e.alias}`;
        default:
          return `${e.event}/${e.detail}`;
      }
    });
    expect(described).toEqual(['device-added net1', 'suspended/0', 'device-removed ua-nic']);
    await c.close();
  });

  it('drops an undecodable event or one of an unknown procedure and keeps the connection', async () => {
    const fake = await fakeLibvirtd({ [Proc.authList]: noAuth, [Proc.nwfilterLookupByName]: () => ({ ok: filterRef('f1', UUID) }) });
    const c = new LibvirtClient({ socketPath: fake.path });
    await c.connect();
    const seen: string[] = [];
    c.on('domain-event', (e) => seen.push(e.event));
    const peer = peers[0]!;
    // devAlias cut off after its length word
    sendEvent(peer, Proc.domainEventCallbackDeviceAdded, Buffer.concat([new XdrWriter().int(2).bytes(), vm1().uint(8).bytes()]));
    sendEvent(peer, 355, Buffer.concat([new XdrWriter().int(2).bytes(), vm1().string('x').bytes()])); // REMOTE_PROC_DOMAIN_ADD_IOTHREAD: not an event of ours
    sendEvent(peer, Proc.domainEventCallbackDeviceRemoved, Buffer.concat([new XdrWriter().int(3).bytes(), vm1().string('net0').bytes()]));
    expect(await c.lookupFilterByName('f1')).toEqual({ name: 'f1', uuid: UUID });
    expect(c.connected).toBe(true);
    expect(seen).toEqual(['device-removed']);
    await c.close();
  });

  it('connects when libvirtd refuses a device event id (lifecycle events still flow), fails when it refuses lifecycle', async () => {
    const refuse = (ids: number[]): Handler => (body) =>
      ids.includes(new XdrReader(body).int()) ? { err: new XdrWriter().int(8).int(0).optString('invalid argument: unsupported event ID').int(2).bytes() } : { ok: new XdrWriter().int(1).bytes() };
    const fake = await fakeLibvirtd({ [Proc.authList]: noAuth, [Proc.connectDomainEventCallbackRegisterAny]: refuse([19]) });
    const c = new LibvirtClient({ socketPath: fake.path });
    let connected = 0;
    c.on('connected', () => connected++);
    await c.connect();
    expect(connected).toBe(1);
    expect(registrations(fake.calls).map(([id]) => id)).toEqual([0, 19, 15]);
    await c.close();
    await new Promise((r) => server!.close(r));
    const strict = await fakeLibvirtd({ [Proc.authList]: noAuth, [Proc.connectDomainEventCallbackRegisterAny]: refuse([0]) });
    await expect(new LibvirtClient({ socketPath: strict.path }).connect()).rejects.toMatchObject({ name: 'LibvirtError' });
  });

  it('registers all three again on a new connection after libvirtd dropped the old one', async () => {
    const fake = await fakeLibvirtd({ [Proc.authList]: noAuth });
    const c = new LibvirtClient({ socketPath: fake.path, reconnect: { baseMs: 10, maxMs: 20 } });
    let connected = 0;
    c.on('connected', () => connected++);
    await c.connect();
    peers[0]!.destroy();
    await until('reconnect', () => connected === 2 && c.connected);
    expect(registrations(fake.calls).map(([id]) => id)).toEqual([0, 19, 15, 0, 19, 15]);
    const seen: DomainLifecycleEvent[] = [];
    c.on('domain-event', (e) => seen.push(e));
    sendEvent(peers[1]!, Proc.domainEventCallbackDeviceAdded, Buffer.concat([new XdrWriter().int(5).bytes(), vm1().string('net2').bytes()]));
    await until('event on the new connection', () => seen.length === 1);
    expect(seen[0]).toMatchObject({ event: 'device-added', alias: 'net2' });
    await c.close();
  });
});
