// Domains, interface updates and lifecycle events through the RPC client, with a real QEMU guest
// under software emulation (TCG; no disk, 64 MiB, one type='ethernet' tap interface: no bridge needed).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, isInUse, isNotFound, type DomainLifecycleEvent, type LibvirtClient } from '../../../src/libvirt/index.js';
import { filterXml, newClient, prefix, rejection, removeFilters, until, waitForEvent } from './support.js';

const P = prefix('dom');
const suffix = Date.now().toString(36).slice(-5);
let client: LibvirtClient;
const events: DomainLifecycleEvent[] = [];

const domainXml = (name: string, mac: string, tap: string) => `<domain type='qemu'><name>${name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><interface type='ethernet'><mac address='${mac}'/><target dev='${tap}' managed='yes'/><model type='virtio'/></interface>
<graphics type='vnc' port='-1' listen='127.0.0.1'/></devices></domain>`;

/** virsh define (persistent) or create (transient, running): the domain is made from outside the client. */
function virshDomain(verb: 'define' | 'create', name: string, mac: string, tap: string): void {
  const file = join(mkdtempSync(join(tmpdir(), 'nwf-dom-')), `${name}.xml`);
  writeFileSync(file, domainXml(name, mac, tap));
  execFileSync('virsh', ['-q', '-c', 'qemu:///system', verb, file], { stdio: 'pipe' });
}
const virsh = (...args: string[]) => spawnSync('virsh', ['-q', '-c', 'qemu:///system', ...args], { encoding: 'utf8' });
const iptables = () => execFileSync('iptables', ['-S'], { encoding: 'utf8' });
const ebtables = () => execFileSync('ebtables', ['-t', 'nat', '-L'], { encoding: 'utf8' });

const ops: string[] = [];

beforeAll(async () => {
  client = newClient({ onCall: (op) => ops.push(op) });
  await client.connect();
  client.on('domain-event', (e) => events.push(e));
});

afterAll(async () => {
  for (const d of [`${P}-vm`, `${P}-transient`]) {
    virsh('destroy', d);
    virsh('undefine', d);
  }
  await removeFilters(client, P);
  await client.close();
});

describe('a persistent domain, shut off and then running', () => {
  const dom = `${P}-vm`;
  const tap = `nwfv${suffix}`;
  const filter = `${P}-vmf`;
  let iface = '';

  it('is listed with its state, looked up by name and UUID, and its XML read', async () => {
    virshDomain('define', dom, '52:54:00:aa:00:01', tap);
    await waitForEvent(events, dom, 'defined');
    const mine = (await client.listDomains()).find((d) => d.name === dom);
    expect(mine).toMatchObject({ state: 'shutoff', active: false, persistent: true, id: -1 });
    const byName = await client.lookupDomainByName(dom);
    expect(await client.lookupDomainByUuid(mine!.uuid)).toEqual(byName);
    expect(await client.domainState(byName)).toBe('shutoff');
    const xml = await client.domainXml(byName, true);
    expect(xml).toContain(`<target dev='${tap}'`);
    iface = /<interface[\s\S]*?<\/interface>/.exec(xml)![0];
  });

  it('not found: lookup by name, by UUID, and a domain that went away', async () => {
    for (const call of [() => client.lookupDomainByName(`${P}-nope`), () => client.lookupDomainByUuid('99999999-8888-4777-8666-555555555555')]) {
      const err = await rejection(call());
      expect(isNotFound(err)).toBe(true);
      expect(err).toMatchObject({ code: ErrorCode.noDomain });
    }
  });

  it('gets a filterref in its definition only while shut off (update-device CONFIG)', async () => {
    await client.defineFilter(filterXml(filter, "<rule action='accept' direction='in' priority='10'><tcp dstportstart='22'/></rule><rule action='drop' direction='inout' priority='1000'><all/></rule>"));
    const d = await client.lookupDomainByName(dom);
    const withRef = iface.replace('</interface>', `<filterref filter='${filter}'><parameter name='IP' value='10.99.0.5'/></filterref></interface>`);
    expect(await client.updateInterface(d, withRef)).toEqual({ live: false, config: true });
    expect(await client.domainXml(d, true)).toContain(`<filterref filter='${filter}'>`);
  });

  it("starts under TCG (events: started); its tap gets the filter's firewall rules", async () => {
    expect(virsh('start', dom).status).toBe(0);
    await waitForEvent(events, dom, 'started');
    const running = await client.lookupDomainByName(dom);
    expect(running.id).toBeGreaterThan(0);
    expect(await client.domainState(running)).toBe('running');
    expect((await client.listDomains()).find((x) => x.name === dom)).toMatchObject({ state: 'running', active: true, persistent: true });
    const rules = await until('iptables rules of the tap', () => iptables().includes(`FO-${tap}`) && iptables());
    expect(rules).toMatch(new RegExp(`-A FO-${tap} -p tcp -m tcp --dport 22 .*-j ACCEPT`));
    expect(rules).toContain(`-A FO-${tap} -j DROP`);
    expect(isInUse(await rejection(client.undefineFilter(filter)))).toBe(true);
  });

  it('loses the filterref live and in its definition (LIVE|CONFIG): the rules go away', async () => {
    const d = await client.lookupDomainByName(dom);
    expect(await client.updateInterface(d, iface)).toEqual({ live: true, config: true });
    expect(await client.domainXml(d)).not.toContain('filterref');
    expect(await client.domainXml(d, true)).not.toContain('filterref');
    expect(iptables()).not.toContain(`FO-${tap}`);
  });

  it("gets libvirt's clean-traffic live: ebtables rules appear (MAC/ARP layer), then go again", async () => {
    const d = await client.lookupDomainByName(dom);
    const withClean = iface.replace('</interface>', "<filterref filter='clean-traffic'><parameter name='IP' value='10.99.0.5'/></filterref></interface>");
    await client.updateDevice(d, withClean, { live: true, config: false });
    expect(await client.domainXml(d)).toContain("<filterref filter='clean-traffic'>");
    expect(await client.domainXml(d, true)).not.toContain('filterref');
    const chains = await until('ebtables chains of the tap', () => ebtables().includes(`libvirt-I-${tap}`) && ebtables());
    // no-mac-spoofing and no-arp-ip-spoofing, with the interface's MAC and the IP parameter filled in
    expect(chains).toMatch(new RegExp(`Bridge chain: I-${tap}-mac.*\\n-s 52:54:00:aa:00:01 -j RETURN\\n-j DROP`));
    expect(chains).toMatch(new RegExp(`Bridge chain: I-${tap}-arp-ip.*\\n-p ARP --arp-ip-src 10.99.0.5 -j RETURN`));
    await client.updateDevice(d, iface, { live: true, config: false });
    expect(ebtables()).not.toContain(tap);
    await client.undefineFilter(filter);
  });

  it('is listed as paused while suspended, in five listings and no per-domain state call (events: suspended, resumed)', async () => {
    expect(virsh('suspend', dom).status).toBe(0);
    await waitForEvent(events, dom, 'suspended');
    ops.length = 0;
    const list = await client.listDomains();
    expect(list.find((x) => x.name === dom)).toMatchObject({ state: 'paused', active: true, persistent: true });
    expect(ops.filter((o) => o === 'domain-list')).toHaveLength(5);
    expect(ops).not.toContain('domain-get-state');
    expect(await client.domainState(await client.lookupDomainByName(dom))).toBe('paused');
    expect(virsh('resume', dom).status).toBe(0);
    await waitForEvent(events, dom, 'resumed');
    expect((await client.listDomains()).find((x) => x.name === dom)).toMatchObject({ state: 'running' });
  });

  it('stops and is undefined (events: stopped, undefined)', async () => {
    expect(virsh('destroy', dom).status).toBe(0);
    await waitForEvent(events, dom, 'stopped');
    const d = (await client.listDomains()).find((x) => x.name === dom);
    expect(d).toMatchObject({ state: 'shutoff', active: false });
    expect(virsh('undefine', dom).status).toBe(0);
    await waitForEvent(events, dom, 'undefined');
    expect(isNotFound(await rejection(client.lookupDomainByName(dom)))).toBe(true);
  });
});

describe('a transient running domain', () => {
  it('is updated live only, and its events arrive through the async iterator too', async () => {
    const dom = `${P}-transient`;
    const tap = `nwfx${suffix}`;
    const ac = new AbortController();
    const seen: string[] = [];
    const reading = (async () => {
      for await (const e of client.domainEvents(ac.signal)) if (e.domain.name === dom) seen.push(e.event);
    })();
    virshDomain('create', dom, '52:54:00:aa:00:02', tap);
    await waitForEvent(events, dom, 'started');
    const d = await client.lookupDomainByName(dom);
    expect((await client.listDomains()).find((x) => x.name === dom)).toMatchObject({ active: true, persistent: false, state: 'running' });
    const iface = /<interface[\s\S]*?<\/interface>/.exec(await client.domainXml(d))![0];
    const withRef = iface.replace('</interface>', "<filterref filter='allow-arp'/></interface>");
    expect(await client.updateInterface(d, withRef)).toEqual({ live: true, config: false });
    expect(await client.domainXml(d)).toContain("<filterref filter='allow-arp'/>");
    expect(virsh('destroy', dom).status).toBe(0);
    await waitForEvent(events, dom, 'stopped');
    await until('the iterator to see stopped', () => seen.includes('stopped'));
    ac.abort();
    await reading;
    expect(seen).toEqual(expect.arrayContaining(['started', 'stopped']));
    // a transient domain is gone once stopped
    expect(isNotFound(await rejection(client.lookupDomainByUuid(d.uuid)))).toBe(true);
  });
});
