// LibvirtClient against a scripted libvirtd: the handshake it sends (with the version check), UUID
// adoption on define, the fallback to the plain define with read-back validation on libvirt < 7.7,
// and that a throwing listener or metrics hook never breaks the connection. The real daemon is
// covered in test/integration/libvirt; this fake lets the test see the exact procedures and arguments.
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { classifyLibvirtError } from '../../../src/agent/libvirt-adapter.js';
import { LibvirtClient } from '../../../src/libvirt/client.js';
import { encodePacket, PacketReader, type Header } from '../../../src/libvirt/connection.js';
import { LibvirtDisconnectedError, LibvirtUnsupportedVersionError, NwFilterNotKeptError, isInvalidXml, isNotKept } from '../../../src/libvirt/errors.js';
import { MessageStatus, MessageType, Proc } from '../../../src/libvirt/protocol.js';
import type { DomainLifecycleEvent } from '../../../src/libvirt/types.js';
import { uuidToBytes } from '../../../src/libvirt/uuid.js';
import { XdrReader, XdrWriter } from '../../../src/libvirt/xdr.js';

const UUID = '6f1c3c1e-3b7a-4a5e-9d2a-1b2c3d4e5f60';
type Handler = (body: Buffer) => { ok: Buffer } | { err: Buffer };
let server: Server | undefined;
let peers: Socket[] = [];

/** remote_connect_get_lib_version_ret for a libvirt version number (major * 1,000,000 + minor * 1,000 + micro). */
const libVersion = (v: number): Handler => () => ({ ok: new XdrWriter().uint(0).uint(v).bytes() });

/**
 * A fake libvirtd answering each procedure with `handlers` (CONNECT_GET_LIB_VERSION says 9.0.0 unless
 * given; anything else without a handler gets an empty reply); records the calls it got.
 */
async function fakeLibvirtd(given: Partial<Record<number, Handler>>): Promise<{ path: string; calls: { proc: number; body: Buffer }[] }> {
  const handlers: Partial<Record<number, Handler>> = { [Proc.connectGetLibVersion]: libVersion(9_000_000), ...given };
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
    expect(fake.calls.map((x) => x.proc)).toEqual([Proc.authList, Proc.connectOpen, Proc.connectGetLibVersion, reg, reg, reg]);
    expect(c.daemonVersion).toBe('9.0.0');
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

describe('libvirt version at connect', () => {
  it(`refuses a libvirtd older than 1.2.2 with a clear error before registering events, accepts 1.2.2`, async () => {
    const old = await fakeLibvirtd({ [Proc.authList]: noAuth, [Proc.connectGetLibVersion]: libVersion(1_002_001) });
    const err = await new LibvirtClient({ socketPath: old.path }).connect().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LibvirtUnsupportedVersionError);
    expect(err).toBeInstanceOf(LibvirtDisconnectedError); // connect()'s contract: not connected
    expect(err).toMatchObject({ version: '1.2.1', minimum: '1.2.2' });
    expect((err as Error).message).toBe('libvirtd 1.2.1 is too old: the libvirt client needs libvirt >= 1.2.2 (see docs/libvirt-client.md)');
    expect(old.calls.map((x) => x.proc)).toEqual([Proc.authList, Proc.connectOpen, Proc.connectGetLibVersion]);
    await new Promise((r) => server!.close(r));
    const oldest = await fakeLibvirtd({ [Proc.authList]: noAuth, [Proc.connectGetLibVersion]: libVersion(1_002_002) });
    const c = new LibvirtClient({ socketPath: oldest.path });
    await c.connect();
    expect(c.daemonVersion).toBe('1.2.2');
    await c.close();
  });

  it('connects without a version when libvirtd answers the version call with an error (the check is a courtesy)', async () => {
    const fake = await fakeLibvirtd({ [Proc.authList]: noAuth, [Proc.connectGetLibVersion]: () => libvirtError(1, 'internal error') });
    const c = new LibvirtClient({ socketPath: fake.path });
    await c.connect();
    expect(c.connected).toBe(true);
    expect(c.daemonVersion).toBeUndefined();
    await c.close();
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

// ---- libvirt < 7.7: no NWFILTER_DEFINE_XML_FLAGS ------------------------------------------------

const fixture = (name: string): string => readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8');
/** What libvirtd older than the procedure answers (VIR_ERR_RPC, VIR_FROM_RPC, VIR_ERR_ERROR), as libvirt 9.0 does for an unknown number. */
const unknownProcedure = (proc: number) => ({ err: new XdrWriter().int(39).int(7).optString(`unknown procedure: ${proc}`).int(2).bytes() });
const notFound = (name: string) => libvirtError(62, `Network filter not found: no nwfilter with matching name '${name}'`);
const nameOf = (xml: string) => /<filter[^>]*\sname=["']([^"']+)["']/.exec(xml)![1]!;
const uuidOf = (xml: string) => /<uuid>([^<]+)<\/uuid>/.exec(xml)?.[1];

/**
 * A libvirtd of libvirt < 7.7 for nwfilters: NWFILTER_DEFINE_XML_FLAGS is an unknown procedure, the
 * plain define stores a filter (refusing another UUID for an existing name, as libvirt does) and
 * the XML read answers what `keep` says libvirt kept of a document (by default the document itself).
 */
async function oldNwfilterDaemon(
  o: {
    version?: number;
    keep?: (sent: string) => string;
    /** An error message for the nth plain define (1-based), or undefined to accept it. */
    refuse?: (xml: string, nth: number) => string | undefined;
    filters?: Record<string, { uuid: string; xml: string }>;
  } = {},
) {
  const filters = new Map(Object.entries(o.filters ?? {}));
  const defined: string[] = [];
  let n = 0;
  const fake = await fakeLibvirtd({
    [Proc.authList]: noAuth,
    [Proc.connectGetLibVersion]: libVersion(o.version ?? 6_000_000),
    [Proc.nwfilterDefineXmlFlags]: () => unknownProcedure(Proc.nwfilterDefineXmlFlags),
    [Proc.nwfilterLookupByName]: (body) => {
      const name = new XdrReader(body).string();
      const f = filters.get(name);
      return f ? { ok: filterRef(name, f.uuid) } : notFound(name);
    },
    [Proc.nwfilterGetXmlDesc]: (body) => {
      const name = new XdrReader(body).string();
      const f = filters.get(name);
      return f ? { ok: new XdrWriter().string(f.xml).bytes() } : notFound(name);
    },
    [Proc.nwfilterDefineXml]: (body) => {
      const xml = new XdrReader(body).string();
      defined.push(xml);
      const refused = o.refuse?.(xml, defined.length);
      if (refused) return libvirtError(1, refused);
      const name = nameOf(xml);
      const existing = filters.get(name);
      const uuid = uuidOf(xml) ?? `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
      if (existing && existing.uuid !== uuid) return libvirtError(9, `operation failed: filter '${name}' already exists with uuid ${existing.uuid}`);
      const kept = (o.keep ?? ((x: string) => x))(xml);
      filters.set(name, { uuid, xml: uuidOf(kept) ? kept : kept.replace(/(<filter[^>]*>)/, `$1<uuid>${uuid}</uuid>`) });
      return { ok: filterRef(name, uuid) };
    },
  });
  return { ...fake, filters, defined };
}

/** A pino logger whose lines land in `lines`. */
function capturingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

const procs = (calls: { proc: number }[], from = 0) => calls.slice(from).map((x) => x.proc);
const after = (calls: { proc: number }[], proc: number) => calls.findLastIndex((x) => x.proc === proc) + 1;

describe('defineFilter on libvirt < 7.7 (no NWFILTER_DEFINE_XML_FLAGS)', () => {
  const web = { sent: fixture('vm-eng-web-01.sent.xml'), kept: fixture('vm-eng-web-01.libvirt-9.0.0.xml') };
  const dept = { sent: fixture('dept-engineering.sent.xml'), kept: fixture('dept-engineering.libvirt-9.0.0.xml') };
  /** libvirt 9's re-serialization of our two rendered filters, the document itself otherwise. */
  const libvirt9 = (sent: string) => (sent === web.sent ? web.kept : sent === dept.sent ? dept.kept : sent);

  it('falls back to NWFILTER_DEFINE_XML on "unknown procedure", once per connection, and tries the flags again after a reconnect', async () => {
    const fake = await oldNwfilterDaemon({ keep: libvirt9 });
    const { log, lines } = capturingLogger();
    const c = new LibvirtClient({ socketPath: fake.path, log, reconnect: { baseMs: 10, maxMs: 20 } });
    let connected = 0;
    c.on('connected', () => connected++);
    await c.connect();
    expect(c.daemonVersion).toBe('6.0.0');

    const start = after(fake.calls, Proc.connectDomainEventCallbackRegisterAny);
    expect(await c.defineFilter(web.sent)).toEqual({ name: 'nwf-vm-eng-web-01', uuid: '31b4c212-6cf7-5c8e-91d8-3ab18dd83444' });
    // flags refused; what libvirt had (nothing); the plain define; the read-back (libvirt 9's
    // re-serialized XML: single quotes, attributes reordered) found equivalent
    expect(procs(fake.calls, start)).toEqual([Proc.nwfilterDefineXmlFlags, Proc.nwfilterLookupByName, Proc.nwfilterDefineXml, Proc.nwfilterGetXmlDesc]);
    expect(fake.defined).toEqual([web.sent]);

    // detected: the next defines go straight to the plain procedure, concurrent ones too
    const second = fake.calls.length;
    await Promise.all([c.defineFilter(dept.sent), c.defineFilter(web.sent)]);
    expect(procs(fake.calls, second)).not.toContain(Proc.nwfilterDefineXmlFlags);
    expect(procs(fake.calls, second).filter((p) => p === Proc.nwfilterDefineXml)).toHaveLength(2);
    const warned = lines.filter((l) => String(l.msg).includes('no virNWFilterDefineXMLFlags'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, libvirtVersion: '6.0.0', reason: 'unknown procedure: 431' });

    // a new connection may be an upgraded daemon: the flags are tried again, and the fallback said again
    peers[0]!.destroy();
    await until('reconnect', () => connected === 2 && c.connected);
    const third = fake.calls.length;
    await c.defineFilter(web.sent);
    expect(procs(fake.calls, third)[0]).toBe(Proc.nwfilterDefineXmlFlags);
    expect(lines.filter((l) => String(l.msg).includes('no virNWFilterDefineXMLFlags'))).toHaveLength(2);
    await c.close();
  });

  it('takes VIR_ERR_NO_SUPPORT (a driver without the API) as "no flags procedure" too, but no other error', async () => {
    let answer = () => libvirtError(3, 'this function is not supported by the connection driver: virNWFilterDefineXMLFlags');
    const fake = await fakeLibvirtd({
      [Proc.authList]: noAuth,
      [Proc.nwfilterDefineXmlFlags]: () => answer(),
      [Proc.nwfilterLookupByName]: (body) => notFound(new XdrReader(body).string()),
      [Proc.nwfilterDefineXml]: () => ({ ok: filterRef('f1', UUID) }),
      [Proc.nwfilterGetXmlDesc]: () => ({ ok: new XdrWriter().string(`<filter name='f1' chain='root'><uuid>${UUID}</uuid></filter>`).bytes() }),
    });
    const c = new LibvirtClient({ socketPath: fake.path });
    await c.connect();
    expect(await c.defineFilter("<filter name='f1' chain='root'/>")).toEqual({ name: 'f1', uuid: UUID });
    expect(procs(fake.calls)).toContain(Proc.nwfilterDefineXml);
    await c.close();
    // another RPC error (not about procedure 431) is no reason to define without validation
    answer = () => ({ err: new XdrWriter().int(39).int(7).optString('Unable to decode message payload').int(2).bytes() });
    const d = new LibvirtClient({ socketPath: fake.path });
    await d.connect();
    const before = fake.calls.length;
    await expect(d.defineFilter("<filter name='f1' chain='root'/>")).rejects.toMatchObject({ code: 39, message: 'Unable to decode message payload' });
    expect(procs(fake.calls, before)).not.toContain(Proc.nwfilterDefineXml);
    await d.close();
  });

  it('adopts the existing UUID on the fallback path (and keeps adoptExistingUuid: false)', async () => {
    const existing = `<filter name='f1' chain='root'><uuid>${UUID}</uuid><rule action='accept' direction='in' priority='500'><all/></rule></filter>`;
    const fake = await oldNwfilterDaemon({ filters: { f1: { uuid: UUID, xml: existing } } });
    const c = new LibvirtClient({ socketPath: fake.path });
    await c.connect();
    const xml = "<filter name='f1' chain='root'><rule action='drop' direction='in'><tcp dstportstart='22'/></rule></filter>";
    expect(await c.defineFilter(xml)).toEqual({ name: 'f1', uuid: UUID });
    expect(fake.defined).toEqual([xml, `<filter name='f1' chain='root'><uuid>${UUID}</uuid><rule action='drop' direction='in'><tcp dstportstart='22'/></rule></filter>`]);
    expect(fake.filters.get('f1')!.xml).toContain("dstportstart='22'");
    // a wrong UUID is replaced, not duplicated
    fake.defined.length = 0;
    await c.defineFilter("<filter name='f1'><uuid>11111111-2222-4333-8444-555555555555</uuid></filter>");
    expect(fake.defined[1]).toBe(`<filter name='f1'><uuid>${UUID}</uuid></filter>`);
    // the agent's setting: the clash is reported, nothing adopted
    fake.defined.length = 0;
    await expect(c.defineFilter(xml, { adoptExistingUuid: false })).rejects.toMatchObject({ code: 9, procedure: 'nwfilter-define' });
    expect(fake.defined).toEqual([xml]);
    await c.close();
  });

  describe('read-back validation', () => {
    const bad = { sent: fixture('vm-bad.sent.xml'), kept: fixture('vm-bad.libvirt-9.0.0.xml') };
    // What libvirt 9 kept of vm-bad.sent.xml, with the UUID the fake gives it.
    const keepBad = (sent: string) =>
      nameOf(sent) === 'nwf-vm-eng-web-bad' && sent.includes('dstportstrat') ? bad.kept.replace(/<uuid>[^<]+<\/uuid>/, `<uuid>${uuidOf(sent) ?? UUID}</uuid>`) : sent;
    const expected = [
      "element <rulle> was dropped",
      "rule 2 <icmpv6>: attribute statematch='false' was dropped",
      'rule 6: protocol element <udp> was dropped',
      "rule 7 <tcp>: attribute dstportstrat='80' was dropped",
      "rule 8: priority='5000' became priority='500'",
    ];

    it('catches dropped attributes, protocol elements and rules, puts the previous definition back, and the agent sees a define failure', async () => {
      const previous = bad.kept.replace(/<uuid>[^<]+<\/uuid>/, `<uuid>${UUID}</uuid>`).replace("dstportend='80'", "dstportstart='80' dstportend='80'");
      const fake = await oldNwfilterDaemon({ keep: keepBad, filters: { 'nwf-vm-eng-web-bad': { uuid: UUID, xml: previous } } });
      const c = new LibvirtClient({ socketPath: fake.path });
      await c.connect();
      const sent = bad.sent.replace('<filter name="nwf-vm-eng-web-bad" chain="root">', `<filter name="nwf-vm-eng-web-bad" chain="root"><uuid>${UUID}</uuid>`);
      const err = await c.defineFilter(sent).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NwFilterNotKeptError);
      const e = err as NwFilterNotKeptError;
      expect(e.differences).toEqual(expected);
      expect(e).toMatchObject({ filter: 'nwf-vm-eng-web-bad', restored: true, code: 92, procedure: 'nwfilter-define' });
      expect(e.message).toBe(`libvirt did not keep filter 'nwf-vm-eng-web-bad' as sent: ${expected.join('; ')}; the previous definition was put back`);
      // a refused document for the agent: Applied=False/InvalidFilter, not retried until it changes
      expect([isNotKept(e), isInvalidXml(e), classifyLibvirtError(e)]).toEqual([true, true, 'invalid']);
      // define, read back, define the previous XML again; never an undefine
      expect(fake.defined).toEqual([sent, previous]);
      expect(fake.filters.get('nwf-vm-eng-web-bad')!.xml).toBe(previous);
      expect(procs(fake.calls)).not.toContain(Proc.nwfilterUndefine);
      await c.close();
    });

    it('leaves a new filter defined as libvirt kept it (never undefined) and says so', async () => {
      const fake = await oldNwfilterDaemon({ keep: keepBad });
      const c = new LibvirtClient({ socketPath: fake.path });
      await c.connect();
      const err = (await c.defineFilter(bad.sent).catch((x: unknown) => x)) as NwFilterNotKeptError;
      expect(err).toBeInstanceOf(NwFilterNotKeptError);
      expect(err.differences).toEqual(expected);
      expect(err.restored).toBe(false);
      expect(err.message).toMatch(/the filter did not exist before and stays defined as libvirt kept it$/);
      expect(fake.defined).toEqual([bad.sent]);
      expect(fake.filters.has('nwf-vm-eng-web-bad')).toBe(true);
      expect(procs(fake.calls)).not.toContain(Proc.nwfilterUndefine);
      await c.close();
    });

    it('says so when putting the previous definition back fails, and the filter stays as libvirt kept it', async () => {
      const previous = `<filter name='nwf-vm-eng-web-bad' chain='root'><uuid>${UUID}</uuid></filter>`;
      // the second define (the restore) fails in libvirt
      const fake = await oldNwfilterDaemon({
        keep: keepBad,
        refuse: (_xml, nth) => (nth === 2 ? 'internal error: out of luck' : undefined),
        filters: { 'nwf-vm-eng-web-bad': { uuid: UUID, xml: previous } },
      });
      const c = new LibvirtClient({ socketPath: fake.path });
      await c.connect();
      const sent = bad.sent.replace('chain="root">', `chain="root"><uuid>${UUID}</uuid>`);
      const err = (await c.defineFilter(sent).catch((x: unknown) => x)) as NwFilterNotKeptError;
      expect(err).toBeInstanceOf(NwFilterNotKeptError);
      expect(err.restored).toBe(false);
      expect(err.message).toMatch(/putting back the previous definition failed \(internal error: out of luck\); the filter stays defined as libvirt kept it$/);
      expect(fake.filters.get('nwf-vm-eng-web-bad')!.xml).toContain('nwf-vm-eng-web-bad');
      expect(fake.filters.get('nwf-vm-eng-web-bad')!.xml).not.toBe(previous);
      await c.close();
    });

    it("passes libvirt's re-serialized but equivalent XML", async () => {
      const equivalent = { sent: fixture('equivalent.sent.xml'), kept: fixture('equivalent.libvirt-9.0.0.xml') };
      const fake = await oldNwfilterDaemon({ keep: (sent) => (sent === equivalent.sent ? equivalent.kept : libvirt9(sent)) });
      const c = new LibvirtClient({ socketPath: fake.path });
      await c.connect();
      for (const sent of [web.sent, dept.sent, equivalent.sent]) expect((await c.defineFilter(sent)).name).toBe(nameOf(sent));
      expect(fake.defined).toEqual([web.sent, dept.sent, equivalent.sent]);
      await c.close();
    });

    it('validate: false skips the read-back (and the read before)', async () => {
      const fake = await oldNwfilterDaemon({ keep: keepBad });
      const c = new LibvirtClient({ socketPath: fake.path });
      await c.connect();
      const start = after(fake.calls, Proc.connectDomainEventCallbackRegisterAny);
      expect((await c.defineFilter(bad.sent, { validate: false })).name).toBe('nwf-vm-eng-web-bad');
      expect(procs(fake.calls, start)).toEqual([Proc.nwfilterDefineXmlFlags, Proc.nwfilterDefineXml]);
      await c.close();
    });
  });

  it('nwfilterDefineFlags: false uses the plain procedure on a daemon that has the flags one', async () => {
    const fake = await fakeLibvirtd({
      [Proc.authList]: noAuth,
      [Proc.nwfilterLookupByName]: (body) => notFound(new XdrReader(body).string()),
      [Proc.nwfilterDefineXml]: () => ({ ok: filterRef('f1', UUID) }),
      [Proc.nwfilterGetXmlDesc]: () => ({ ok: new XdrWriter().string(`<filter name='f1' chain='root'><uuid>${UUID}</uuid></filter>`).bytes() }),
    });
    const c = new LibvirtClient({ socketPath: fake.path, nwfilterDefineFlags: false });
    await c.connect();
    await c.defineFilter("<filter name='f1' chain='root'/>");
    expect(procs(fake.calls)).not.toContain(Proc.nwfilterDefineXmlFlags);
    expect(procs(fake.calls)).toContain(Proc.nwfilterDefineXml);
    await c.close();
  });
});
