// The RPC client against the real libvirtd of hack/libvirt-up.sh.
import { execFileSync, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LibvirtClient,
  LibvirtDisconnectedError,
  LibvirtError,
  isInUse,
  isLoop,
  isNotFound,
  isUuidMismatch,
  type DomainLifecycleEvent,
} from '../../../src/libvirt/index.js';
import { defineDomain, removeDomain, virsh } from '../../helpers/libvirt-cli.js';
import { sameFilter } from '../../../src/policy/index.js';

const P = `lvt${Date.now().toString(36)}`;
const filter = (name: string, body = "<rule action='accept' direction='in' priority='10'><tcp dstportstart='22'/></rule>", uuid?: string) =>
  `<filter name='${name}' chain='root'>${uuid ? `<uuid>${uuid}</uuid>` : ''}${body}</filter>`;

let client: LibvirtClient;
const calls: { op: string; ok: boolean }[] = [];

beforeAll(async () => {
  client = new LibvirtClient({ onCall: (op, _ms, ok) => calls.push({ op, ok }), reconnect: { baseMs: 100, maxMs: 1000 } });
  await client.connect();
});

afterAll(async () => {
  for (const f of (await client.listFilters().catch(() => [])).filter((f) => f.name.startsWith(P))) await client.undefineFilter(f).catch(() => undefined);
  await client.close();
});

describe('nwfilters', () => {
  it("lists libvirt's own filters and reads them back; redefining one unchanged keeps its UUID", async () => {
    const all = await client.listFilters();
    const names = all.map((f) => f.name);
    expect(names).toEqual(expect.arrayContaining(['clean-traffic', 'no-mac-spoofing', 'no-ip-spoofing', 'allow-arp']));
    const byName = await client.lookupFilterByName('clean-traffic');
    const byUuid = await client.lookupFilterByUuid(byName.uuid);
    expect(byUuid).toEqual(byName);
    const xml = await client.filterXml('clean-traffic');
    expect(xml).toContain("<filterref filter='no-mac-spoofing'/>");
    expect(await client.defineFilter(xml)).toEqual(byName);
    expect(sameFilter(await client.filterXml(byName), xml)).toBe(true);
  });

  it('defines with validation, keeps the UUID when the XML has none, and undefines', async () => {
    const name = `${P}-a`;
    const first = await client.defineFilter(filter(name));
    const again = await client.defineFilter(filter(name, "<rule action='drop' direction='in' priority='10'><tcp dstportstart='23'/></rule>"));
    expect(again.uuid).toBe(first.uuid);
    expect(await client.filterXml(name)).toContain("dstportstart='23'");
    await client.undefineFilter(name);
    expect(await client.filterXmlIfExists(name)).toBeUndefined();
  });

  it('reports a different UUID as a typed error, or adopts the existing one', async () => {
    const name = `${P}-uuid`;
    const first = await client.defineFilter(filter(name));
    const other = '11111111-2222-4333-8444-555555555555';
    const err = await client.defineFilter(filter(name, undefined, other), { adoptExistingUuid: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect(isUuidMismatch(err)).toBe(true);
    expect((await client.defineFilter(filter(name, undefined, other))).uuid).toBe(first.uuid);
  });

  it('types the errors the agent handles: not found, loop, invalid XML', async () => {
    const notFound = await client.lookupFilterByName(`${P}-missing`).catch((e: unknown) => e);
    expect(isNotFound(notFound)).toBe(true);
    expect(notFound).toMatchObject({ code: 62, procedure: 'nwfilter-lookup-by-name' });
    await client.defineFilter(filter(`${P}-loop-a`, `<filterref filter='${P}-loop-b'/>`));
    const loop = await client.defineFilter(filter(`${P}-loop-b`, `<filterref filter='${P}-loop-a'/>`)).catch((e: unknown) => e);
    expect(isLoop(loop)).toBe(true);
    const invalid = await client.defineFilter(`<filter name='${P}-bad'><rule action='maybe' direction='in'><tcp/></rule></filter>`).catch((e: unknown) => e);
    expect(invalid).toBeInstanceOf(LibvirtError);
    expect((invalid as LibvirtError).code).not.toBe(0);
  });

  it('keeps many calls in flight and bounds them', async () => {
    const limited = new LibvirtClient({ concurrency: 3 });
    await limited.connect();
    let maxInFlight = 0;
    const timer = setInterval(() => (maxInFlight = Math.max(maxInFlight, limited.inFlight)), 0);
    const results = await Promise.all(Array.from({ length: 60 }, () => limited.lookupFilterByName('clean-traffic')));
    clearInterval(timer);
    expect(new Set(results.map((r) => r.uuid)).size).toBe(1);
    expect(maxInFlight).toBeLessThanOrEqual(3);
    expect(maxInFlight).toBeGreaterThan(1);
    await limited.close();
  });

  it('reports every call to onCall with its outcome', () => {
    expect(calls.some((c) => c.op === 'nwfilter-define' && c.ok)).toBe(true);
    expect(calls.some((c) => c.op === 'nwfilter-lookup-by-name' && !c.ok)).toBe(true);
  });
});

describe('nwfilter bindings on a plain tap device', () => {
  const tap = `nwft${Date.now().toString(36).slice(-6)}`;
  beforeAll(() => execFileSync('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']));
  afterAll(() => spawnSync('ip', ['link', 'del', tap]));

  it('creates, lists and deletes a binding; a bound filter cannot be undefined', async () => {
    const name = `${P}-bound`;
    await client.defineFilter(filter(name));
    const xml = `<filterbinding><owner><name>${P}-owner</name><uuid>6f1c3c1e-3b7a-4a5e-9d2a-1b2c3d4e5f60</uuid></owner>
      <portdev name='${tap}'/><mac address='52:54:00:12:34:56'/><filterref filter='${name}'/></filterbinding>`;
    const b = await client.createBinding(xml);
    expect(b).toEqual({ portdev: tap, filter: name });
    expect(await client.listBindings()).toContainEqual(b);
    expect(execFileSync('iptables', ['-S'], { encoding: 'utf8' })).toContain(tap);
    const inUse = await client.undefineFilter(name).catch((e: unknown) => e);
    expect(isInUse(inUse)).toBe(true);
    await client.deleteBinding(b);
    expect(await client.listBindings()).not.toContainEqual(b);
    await client.undefineFilter(name);
  });
});

describe('domains and a real VM (QEMU under TCG)', () => {
  const dom = `${P}-vm`;
  const tap = `nwfv${Date.now().toString(36).slice(-6)}`;
  const events: DomainLifecycleEvent[] = [];
  const onEvent = (e: DomainLifecycleEvent) => e.domain.name === dom && events.push(e);
  beforeAll(() => client.on('domain-event', onEvent));
  afterAll(() => {
    client.off('domain-event', onEvent);
    removeDomain(dom);
  });

  it('lists, looks up and reads domains; sees lifecycle events', async () => {
    defineDomain(dom, '52:54:00:aa:00:01', tap);
    const list = await client.listDomains();
    const mine = list.find((d) => d.name === dom)!;
    expect(mine).toMatchObject({ state: 'shutoff', active: false, persistent: true, id: -1 });
    expect(await client.lookupDomainByName(dom)).toEqual(await client.lookupDomainByUuid(mine.uuid));
    expect(await client.domainXml(mine, true)).toContain(`<target dev='${tap}'`);
    expect(virsh('start', dom).code).toBe(0);
    const running = await client.lookupDomainByName(dom);
    expect(running.id).toBeGreaterThan(0);
    expect(await client.domainState(running)).toBe('running');
    await waitForEvent(events, 'started');
    expect(events.map((e) => e.event)).toContain('defined');
    const missing = await client.lookupDomainByName(`${P}-nope`).catch((e: unknown) => e);
    expect(isNotFound(missing)).toBe(true);
  });

  it('puts a filterref on the live interface and the persistent definition; firewall rules exist; removes it again', async () => {
    const name = `${P}-vmf`;
    await client.defineFilter(filter(name, "<rule action='accept' direction='in' priority='10'><tcp dstportstart='22'/></rule><rule action='drop' direction='inout' priority='1000'><all/></rule>"));
    const d = await client.lookupDomainByName(dom);
    const live = await client.domainXml(d);
    const iface = /<interface[\s\S]*?<\/interface>/.exec(live)![0];
    const withRef = iface.replace('</interface>', `<filterref filter='${name}'><parameter name='IP' value='10.99.0.5'/></filterref></interface>`);
    expect(await client.updateInterface(d, withRef)).toEqual({ live: true, config: true });
    expect(await client.domainXml(d)).toContain(`<filterref filter='${name}'>`);
    expect(await client.domainXml(d, true)).toContain(`<filterref filter='${name}'>`);
    const rules = execFileSync('iptables', ['-S'], { encoding: 'utf8' });
    expect(rules).toMatch(new RegExp(`-A FO-${tap} -p tcp -m tcp --dport 22 .*-j ACCEPT`));
    expect(rules).toContain(`-A FO-${tap} -j DROP`);
    expect(isInUse(await client.undefineFilter(name).catch((e: unknown) => e))).toBe(true);

    await client.updateInterface(d, iface);
    expect(await client.domainXml(d)).not.toContain('filterref');
    expect(execFileSync('iptables', ['-S'], { encoding: 'utf8' })).not.toContain(`FO-${tap}`);
    await client.undefineFilter(name);
  });

  it('sees the VM stop', async () => {
    expect(virsh('destroy', dom).code).toBe(0);
    await waitForEvent(events, 'stopped');
  });
});

describe('reconnect', () => {
  it('fails calls fast while libvirtd is down, then reconnects by itself and receives events again', async () => {
    const lost = new Promise<void>((r) => client.once('disconnected', () => r()));
    execFileSync('bash', ['hack/libvirt-down.sh'], { stdio: 'ignore' });
    await lost;
    const t0 = Date.now();
    const err = await client.listFilters().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtDisconnectedError);
    expect(Date.now() - t0).toBeLessThan(1000);
    const back = new Promise<void>((r) => client.once('connected', () => r()));
    execFileSync('bash', ['hack/libvirt-up.sh'], { stdio: 'ignore' });
    await back;
    expect((await client.listFilters()).length).toBeGreaterThan(0);
    const events: DomainLifecycleEvent[] = [];
    client.on('domain-event', (e) => events.push(e));
    const dom = `${P}-after`;
    defineDomain(dom, '52:54:00:aa:00:02', `nwfr${Date.now().toString(36).slice(-6)}`);
    await waitForEvent(events, 'defined');
    removeDomain(dom);
  });
});

async function waitForEvent(events: DomainLifecycleEvent[], name: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (events.some((e) => e.event === name)) return;
    await sleep(100);
  }
  throw new Error(`no ${name} event; got ${events.map((e) => e.event).join(', ')}`);
}
