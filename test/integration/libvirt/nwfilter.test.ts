// nwfilters and nwfilter bindings through the RPC client, against the real libvirtd of hack/libvirt-up.sh.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, ErrorDomain, LibvirtError, isInUse, isInvalidXml, isLoop, isNotFound, isUuidMismatch, type LibvirtClient } from '../../../src/libvirt/index.js';
import { filterXml, newClient, prefix, rejection, removeFilters } from './support.js';

const P = prefix('nwf');
let client: LibvirtClient;
const calls: { op: string; ok: boolean; ms: number }[] = [];

beforeAll(async () => {
  client = newClient({ onCall: (op, ms, ok) => calls.push({ op, ok, ms }) });
  await client.connect();
});

afterAll(async () => {
  await removeFilters(client, P);
  await client.close();
});

describe("libvirt's own filters", () => {
  // The files libvirt-daemon-config-nwfilter ships (without UUIDs); libvirtd defined them at start.
  const dir = '/usr/share/libvirt/nwfilter';
  const shipped = readdirSync(dir).filter((f) => f.endsWith('.xml'));

  it('are all listed, and look up the same by name and by UUID', async () => {
    expect(shipped.length).toBeGreaterThan(20);
    const listed = await client.listFilters();
    for (const file of shipped) {
      const name = file.replace(/\.xml$/, '');
      const ref = listed.find((f) => f.name === name);
      expect(ref, name).toBeDefined();
      expect(await client.lookupFilterByName(name)).toEqual(ref);
      expect(await client.lookupFilterByUuid(ref!.uuid)).toEqual(ref);
    }
  });

  it('redefine from the shipped XML (no UUID) keeping their UUID, and read back the same rules', async () => {
    for (const file of shipped) {
      const original = readFileSync(`${dir}/${file}`, 'utf8');
      const name = file.replace(/\.xml$/, '');
      const before = await client.lookupFilterByName(name);
      const xmlBefore = await client.filterXml(before);
      expect(await client.defineFilter(original)).toEqual(before);
      const back = await client.filterXml(name);
      // libvirt loaded these same files at start: redefining them changes nothing, byte for byte
      expect(back, name).toBe(xmlBefore);
      expect(back).toContain(`<uuid>${before.uuid}</uuid>`);
      expect(back.match(/<rule /g)?.length ?? 0, name).toBe(original.match(/<rule /g)?.length ?? 0);
      // libvirt's own output (with its UUID) goes back in as it is
      expect(await client.defineFilter(back)).toEqual(before);
    }
    expect(await client.filterXml('clean-traffic')).toContain("<filterref filter='no-mac-spoofing'/>");
  });
});

describe('define, read, undefine', () => {
  it('defines with validation, keeps the UUID when the XML has none, and undefines', async () => {
    const name = `${P}-a`;
    const first = await client.defineFilter(filterXml(name));
    expect(first.name).toBe(name);
    const again = await client.defineFilter(filterXml(name, "<rule action='drop' direction='in' priority='10'><tcp dstportstart='23'/></rule>"));
    expect(again.uuid).toBe(first.uuid);
    expect(await client.filterXml(name)).toContain("dstportstart='23'");
    expect(await client.filterXml(first)).toContain("dstportstart='23'");
    await client.undefineFilter(name);
    expect(await client.filterXmlIfExists(name)).toBeUndefined();
    expect((await client.listFilters()).map((f) => f.name)).not.toContain(name);
  });

  it('keeps a UUID given in the XML for a new filter', async () => {
    const uuid = '0c6d0b1e-5a7e-4d3b-9c1f-2a3b4c5d6e7f';
    expect(await client.defineFilter(filterXml(`${P}-given`, undefined, uuid))).toEqual({ name: `${P}-given`, uuid });
  });

  it('reports another UUID for an existing name as isUuidMismatch, or adopts the existing one', async () => {
    const name = `${P}-uuid`;
    const first = await client.defineFilter(filterXml(name));
    const other = '11111111-2222-4333-8444-555555555555';
    const err = await rejection(client.defineFilter(filterXml(name, undefined, other), { adoptExistingUuid: false }));
    expect(err).toBeInstanceOf(LibvirtError);
    expect(isUuidMismatch(err)).toBe(true);
    expect(err).toMatchObject({ code: ErrorCode.operationFailed, domain: ErrorDomain.nwfilter, procedure: 'nwfilter-define' });
    expect([isNotFound(err), isInUse(err), isLoop(err), isInvalidXml(err)]).toEqual([false, false, false, false]);
    expect((await client.defineFilter(filterXml(name, undefined, other))).uuid).toBe(first.uuid);
    // the other way round: a new name with an existing filter's UUID
    const clash = await rejection(client.defineFilter(filterXml(`${name}-2`, undefined, first.uuid), { adoptExistingUuid: false }));
    expect(isUuidMismatch(clash)).toBe(true);
    expect(await client.filterXmlIfExists(`${name}-2`)).toBeUndefined();
  });
});

describe('errors the agent handles', () => {
  it('not found: lookup by name and by UUID, XML, undefine', async () => {
    const missing = `${P}-missing`;
    for (const call of [
      () => client.lookupFilterByName(missing),
      () => client.lookupFilterByUuid('99999999-8888-4777-8666-555555555555'),
      () => client.filterXml(missing),
      () => client.undefineFilter(missing),
    ]) {
      const err = await rejection(call());
      expect(isNotFound(err)).toBe(true);
      expect(err).toMatchObject({ code: ErrorCode.noNwfilter });
      expect([isInUse(err), isUuidMismatch(err), isLoop(err)]).toEqual([false, false, false]);
    }
  });

  it('loop: a reference cycle is refused', async () => {
    await client.defineFilter(filterXml(`${P}-loop-a`, `<filterref filter='${P}-loop-b'/>`));
    await client.defineFilter(filterXml(`${P}-loop-b`));
    const err = await rejection(client.defineFilter(filterXml(`${P}-loop-b`, `<filterref filter='${P}-loop-a'/>`)));
    expect(isLoop(err)).toBe(true);
    expect(err).toMatchObject({ code: ErrorCode.operationFailed, domain: ErrorDomain.nwfilter });
    expect([isNotFound(err), isInUse(err), isUuidMismatch(err), isInvalidXml(err)]).toEqual([false, false, false, false]);
    // the refused definition left the old one in place
    expect(await client.filterXml(`${P}-loop-b`)).not.toContain('filterref');
  });

  it('validation: invalid XML is refused with a LibvirtError, not silently fixed', async () => {
    const bad = await rejection(client.defineFilter(`<filter name='${P}-bad'><rule action='maybe' direction='in'><tcp/></rule></filter>`));
    expect(bad).toBeInstanceOf(LibvirtError);
    expect(bad).toMatchObject({ code: ErrorCode.xmlInvalidSchema });
    expect(isInvalidXml(bad)).toBe(true);
    expect([isNotFound(bad), isInUse(bad), isUuidMismatch(bad), isLoop(bad)]).toEqual([false, false, false, false]);
    expect(await client.filterXmlIfExists(`${P}-bad`)).toBeUndefined();
    // not even well-formed: libxml2's parse error comes as VIR_ERR_XML_DETAIL
    const malformed = await rejection(client.defineFilter(`<filter name='${P}-malformed' chain='root'><rule action='accept'`));
    expect(malformed).toMatchObject({ code: ErrorCode.xmlDetail });
    expect(isInvalidXml(malformed)).toBe(true);
    // priority 5000 is out of range: without VALIDATE libvirt would store 500
    const range = await rejection(client.defineFilter(filterXml(`${P}-prio`, "<rule action='accept' direction='in' priority='5000'><tcp/></rule>")));
    expect(isInvalidXml(range)).toBe(true);
  });
});

describe('concurrency and metrics', () => {
  it('multiplexes many calls on one connection and bounds those in flight', async () => {
    const limited = newClient({ concurrency: 3 });
    await limited.connect();
    let maxInFlight = 0;
    const timer = setInterval(() => (maxInFlight = Math.max(maxInFlight, limited.inFlight)), 0);
    const names = Array.from({ length: 40 }, (_, i) => `${P}-many-${i}`);
    const defined = await Promise.all(names.map((n) => limited.defineFilter(filterXml(n))));
    const looked = await Promise.all(names.map((n) => limited.lookupFilterByName(n)));
    clearInterval(timer);
    expect(looked).toEqual(defined);
    expect(new Set(defined.map((d) => d.uuid)).size).toBe(names.length);
    expect(maxInFlight).toBeLessThanOrEqual(3);
    expect(maxInFlight).toBeGreaterThan(1);
    await limited.close();
  });

  it('reports every call to onCall with operation, duration and outcome', () => {
    expect(calls.some((c) => c.op === 'nwfilter-define' && c.ok)).toBe(true);
    expect(calls.some((c) => c.op === 'nwfilter-lookup-by-name' && !c.ok)).toBe(true);
    expect(calls.every((c) => c.ms >= 0 && c.ms < 60_000)).toBe(true);
  });
});

describe('nwfilter bindings on a plain tap device (no VM)', () => {
  const tap = `nwft${Date.now().toString(36).slice(-6)}`;
  beforeAll(() => execFileSync('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']));
  afterAll(() => spawnSync('ip', ['link', 'del', tap]));

  it('creates, lists and deletes a binding; the firewall follows; a bound filter is in use', async () => {
    const name = `${P}-bound`;
    await client.defineFilter(filterXml(name, "<rule action='accept' direction='in' priority='10'><tcp dstportstart='2222'/></rule>"));
    const xml = `<filterbinding><owner><name>${P}-owner</name><uuid>6f1c3c1e-3b7a-4a5e-9d2a-1b2c3d4e5f60</uuid></owner>
      <portdev name='${tap}'/><mac address='52:54:00:12:34:56'/><filterref filter='${name}'/></filterbinding>`;
    const b = await client.createBinding(xml);
    expect(b).toEqual({ portdev: tap, filter: name });
    expect(await client.listBindings()).toContainEqual(b);
    expect(execFileSync('iptables', ['-S'], { encoding: 'utf8' })).toMatch(new RegExp(`-A FO-${tap} -p tcp -m tcp --dport 2222 .*-j ACCEPT`));

    const inUse = await rejection(client.undefineFilter(name));
    expect(isInUse(inUse)).toBe(true);
    expect(inUse).toMatchObject({ code: ErrorCode.operationInvalid });
    expect([isNotFound(inUse), isUuidMismatch(inUse), isLoop(inUse)]).toEqual([false, false, false]);

    await client.deleteBinding(b);
    expect(await client.listBindings()).not.toContainEqual(b);
    expect(execFileSync('iptables', ['-S'], { encoding: 'utf8' })).not.toContain(`FO-${tap}`);
    const gone = await rejection(client.deleteBinding(b));
    expect(isNotFound(gone)).toBe(true);
    expect(gone).toMatchObject({ code: ErrorCode.noNwfilterBinding });
    await client.undefineFilter(name);
  });
});
