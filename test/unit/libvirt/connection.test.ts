// RpcConnection against a scripted peer on a unix socket: a focused fake, so that reply ordering,
// timeouts and a dropped socket can be forced (the real daemon is in test/integration/libvirt).
import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodePacket, PacketReader, RpcConnection, type Header } from '../../../src/libvirt/connection.js';
import { LibvirtDisconnectedError, LibvirtError, LibvirtTimeoutError } from '../../../src/libvirt/errors.js';
import { decodeLifecycleEvent } from '../../../src/libvirt/events.js';
import { interfaceTarget } from '../../../src/libvirt/client.js';
import { MessageStatus, MessageType, REMOTE_PROGRAM } from '../../../src/libvirt/protocol.js';
import { uuidToBytes } from '../../../src/libvirt/uuid.js';
import { XdrReader, XdrWriter } from '../../../src/libvirt/xdr.js';

type Call = { h: Header; body: Buffer; peer: Socket };
let server: Server | undefined;

/** A peer that records calls and lets the test answer them in any order. */
async function peer(): Promise<{ path: string; calls: Call[]; next: () => Promise<Call> }> {
  const path = join(mkdtempSync(join(tmpdir(), 'nwf-rpc-')), 'sock');
  const calls: Call[] = [];
  const waiters: ((c: Call) => void)[] = [];
  server = createServer((s) => {
    const reader = new PacketReader();
    s.on('data', (d) =>
      reader.push(d, (h, body) => {
        const c = { h, body, peer: s };
        const w = waiters.shift();
        if (w) w(c);
        else calls.push(c);
      }),
    );
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server!.listen(path, r));
  const next = () => new Promise<Call>((r) => (calls.length ? r(calls.shift()!) : waiters.push(r)));
  return { path, calls, next };
}

const reply = (c: Call, body: Buffer, status: number = MessageStatus.ok) =>
  c.peer.write(encodePacket({ ...c.h, type: MessageType.reply, status }, body));

afterEach(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

describe('RpcConnection', () => {
  it('matches replies to calls by serial, whatever their order', async () => {
    const p = await peer();
    const conn = await RpcConnection.open(p.path, 1000);
    const a = conn.call(175, 'a', new XdrWriter().string('first').bytes(), 1000);
    const b = conn.call(175, 'b', new XdrWriter().string('second').bytes(), 1000);
    const ca = await p.next();
    const cb = await p.next();
    expect(ca.h).toMatchObject({ program: REMOTE_PROGRAM, version: 1, procedure: 175, type: MessageType.call });
    expect(cb.h.serial).not.toBe(ca.h.serial);
    reply(cb, new XdrWriter().string('for b').bytes());
    reply(ca, new XdrWriter().string('for a').bytes());
    expect(new XdrReader(await a).string()).toBe('for a');
    expect(new XdrReader(await b).string()).toBe('for b');
    expect(conn.inFlight).toBe(0);
    conn.close();
  });

  it('turns an error reply into a LibvirtError with code, domain and message', async () => {
    const p = await peer();
    const conn = await RpcConnection.open(p.path, 1000);
    const call = conn.call(181, 'nwfilter-undefine', Buffer.alloc(0), 1000);
    reply(await p.next(), new XdrWriter().int(55).int(19).optString('nwfilter is in use').bytes(), MessageStatus.error);
    await expect(call).rejects.toMatchObject({ name: 'LibvirtError', code: 55, domain: 19, message: 'nwfilter is in use', procedure: 'nwfilter-undefine' });
    await expect(call).rejects.toBeInstanceOf(LibvirtError);
    conn.close();
  });

  it('times a call out without disturbing the others; a late reply is dropped', async () => {
    const p = await peer();
    const conn = await RpcConnection.open(p.path, 1000);
    const slow = conn.call(1, 'slow', Buffer.alloc(0), 50);
    const fast = conn.call(1, 'fast', Buffer.alloc(0), 2000);
    const cs = await p.next();
    const cf = await p.next();
    await expect(slow).rejects.toBeInstanceOf(LibvirtTimeoutError);
    reply(cs, Buffer.alloc(0));
    reply(cf, new XdrWriter().int(7).bytes());
    expect(new XdrReader(await fast).int()).toBe(7);
    conn.close();
  });

  it('rejects every pending call at once when the peer goes away, and new calls fast', async () => {
    const p = await peer();
    const conn = await RpcConnection.open(p.path, 1000);
    const closed = new Promise((r) => conn.once('close', r));
    const pending = [conn.call(1, 'x', Buffer.alloc(0), 60_000), conn.call(1, 'y', Buffer.alloc(0), 60_000)];
    (await p.next()).peer.destroy();
    const t0 = Date.now();
    for (const c of pending) await expect(c).rejects.toBeInstanceOf(LibvirtDisconnectedError);
    await closed;
    await expect(conn.call(1, 'z', Buffer.alloc(0), 60_000)).rejects.toBeInstanceOf(LibvirtDisconnectedError);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('emits asynchronous messages (events) instead of matching them to calls', async () => {
    const p = await peer();
    const conn = await RpcConnection.open(p.path, 1000);
    const got = new Promise<[number, Buffer]>((r) => conn.once('message', (proc: number, body: Buffer) => r([proc, body])));
    const call = conn.call(1, 'x', Buffer.alloc(0), 1000);
    const c = await p.next();
    c.peer.write(encodePacket({ ...c.h, procedure: 318, type: MessageType.message, serial: 0 }, Buffer.from([1, 2, 3, 4])));
    reply(c, Buffer.alloc(0));
    const [proc, body] = await got;
    expect(proc).toBe(318);
    expect([...body]).toEqual([1, 2, 3, 4]);
    await call;
    conn.close();
  });

  it('fails to open a missing socket with LibvirtDisconnectedError', async () => {
    await expect(RpcConnection.open('/nonexistent/libvirt-sock', 1000)).rejects.toBeInstanceOf(LibvirtDisconnectedError);
  });
});

describe('lifecycle events', () => {
  const uuid = '6f1c3c1e-3b7a-4a5e-9d2a-1b2c3d4e5f60';
  const msg = (type: number, detail: number) => new XdrWriter().int(3).string('vm1').fixedOpaque(uuidToBytes(uuid)).int(-1).int(type).int(detail).bytes();

  it('decodes remote_domain_event_callback_lifecycle_msg', () => {
    expect(decodeLifecycleEvent(msg(0, 0))).toEqual({ callbackId: 3, domain: { name: 'vm1', uuid, id: -1 }, event: 'defined', detail: 0 });
    expect(decodeLifecycleEvent(msg(1, 0)).event).toBe('undefined');
    expect(decodeLifecycleEvent(msg(2, 0)).event).toBe('started'); // STARTED_BOOTED
    expect(decodeLifecycleEvent(msg(5, 1)).event).toBe('stopped'); // STOPPED_DESTROYED
    expect(decodeLifecycleEvent(msg(42, 0)).event).toBe('other');
  });

  it('reports both ends of a migration as migrated', () => {
    expect(decodeLifecycleEvent(msg(2, 1)).event).toBe('migrated'); // STARTED_MIGRATED (target)
    expect(decodeLifecycleEvent(msg(5, 3)).event).toBe('migrated'); // STOPPED_MIGRATED (source)
  });
});

describe('interfaceTarget', () => {
  it('updates the live interface of a running domain and the definition of a persistent one', () => {
    expect(interfaceTarget(true, true)).toEqual({ live: true, config: true });
    expect(interfaceTarget(true, false)).toEqual({ live: true, config: false });
    expect(interfaceTarget(false, true)).toEqual({ live: false, config: true });
  });
});
