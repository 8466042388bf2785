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

afterEach(async () => {
  for (const p of peers) p.destroy();
  peers = [];
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

describe('LibvirtClient handshake', () => {
  it('asks for auth types, opens the URI, registers for lifecycle events of all domains', async () => {
    const fake = await fakeLibvirtd({ [Proc.authList]: noAuth });
    const c = new LibvirtClient({ socketPath: fake.path, uri: 'nwfilter:///system' });
    await c.connect();
    expect(fake.calls.map((x) => x.proc)).toEqual([Proc.authList, Proc.connectOpen, Proc.connectDomainEventCallbackRegisterAny]);
    const open = new XdrReader(fake.calls[1]!.body);
    expect([open.optString(), open.uint()]).toEqual(['nwfilter:///system', 0]);
    const reg = new XdrReader(fake.calls[2]!.body);
    expect([reg.int(), reg.bool()]).toEqual([0, false]); // VIR_DOMAIN_EVENT_ID_LIFECYCLE, dom = NULL
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
