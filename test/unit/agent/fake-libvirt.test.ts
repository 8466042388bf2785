// The in-memory libvirt (test/helpers/fake-libvirt.ts) keeps the rules libvirtd 9.0 was seen to
// follow (its header says which were verified with virsh and which are assumed). Each test pins one
// rule down, so a fake that drifts from libvirt fails here before it lets an agent test pass.
import { describe, expect, it } from 'vitest';
import { domainInterfaces, interfaceXmlWithBinding } from '../../../src/agent/interfaces.js';
import type { DomainEvent } from '../../../src/agent/libvirt-port.js';
import { FakeLibvirt, FakeLibvirtError, xmlProblem, type FakeInterface } from '../../helpers/fake-libvirt.js';

const M1 = '52:54:00:fa:00:01';
const M2 = '52:54:00:fa:00:02';
const U1 = '0c6d0b1e-5a7e-4d3b-9c1f-2a3b4c5d6e7f';
const U2 = '11111111-2222-4333-8444-555555555555';
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A stable UUID per name, as the agent keeps them (libvirt refuses a redefinition without the existing UUID). */
const uuidOf = (name: string) => `00000000-0000-4000-8000-${Buffer.from(name).toString('hex').padStart(12, '0').slice(-12)}`;
/** A filter document; `uuid: null` leaves the <uuid> out. */
const fx = (name: string, o: { uuid?: string | null; refs?: string[]; body?: string } = {}) =>
  `<filter name='${name}' chain='root'>${o.uuid === null ? '' : `<uuid>${o.uuid ?? uuidOf(name)}</uuid>`}${(o.refs ?? []).map((r) => `<filterref filter='${r}'/>`).join('')}${o.body ?? "<rule action='drop' direction='inout' priority='1000'><all/></rule>"}</filter>`;
const ref = (filter: string, parameters: { name: string; value: string }[] = []) => ({ filter, parameters });

async function rejection(p: Promise<unknown>): Promise<FakeLibvirtError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof FakeLibvirtError)) throw new Error(`expected a FakeLibvirtError, got ${String(err)}`);
  return err;
}
const kindOf = async (lv: FakeLibvirt, p: Promise<unknown>) => lv.classify(await rejection(p));
const tick = () => new Promise((r) => setImmediate(r));
const ticks = async (n = 3) => {
  for (let i = 0; i < n; i++) await tick();
};
function recorder(lv: FakeLibvirt): DomainEvent[] {
  const seen: DomainEvent[] = [];
  lv.onDomainEvent((e) => seen.push(e));
  return seen;
}
/** An interface XML as the agent sends it: the domain's own interface with its filterref replaced. */
async function ifaceXml(lv: FakeLibvirt, uuid: string, mac: string, binding: { filter: string; parameters: { name: string; value: string }[] } | undefined, inactive: boolean) {
  const iface = domainInterfaces(await lv.domainXml(uuid, inactive)).find((i) => i.mac === mac)!;
  return interfaceXmlWithBinding(iface, binding);
}
async function running(lv: FakeLibvirt, interfaces: FakeInterface[], name = 'd'): Promise<string> {
  const uuid = lv.defineDomain({ name, interfaces });
  await lv.startDomain(uuid);
  return uuid;
}

describe('filters: define', () => {
  it('gives a new filter without <uuid> a random one, keeps a given one (lower-cased), and stores the XML as given', async () => {
    const lv = new FakeLibvirt();
    const a = fx('a', { uuid: null });
    await lv.defineFilter(a);
    await lv.defineFilter(fx('b', { uuid: U1.toUpperCase() }));
    const listed = await lv.listFilters();
    expect(listed.map((f) => f.name)).toEqual(['a', 'b']);
    expect(listed[0]!.uuid).toMatch(UUID_V4);
    expect(listed[1]!.uuid).toBe(U1);
    expect(await lv.filterXml('a')).toBe(a);
    expect(await lv.filterXml('nope')).toBeUndefined();
  });

  it('redefines with the same UUID (any case) and refuses another UUID or none as invalid ("already exists with uuid"), keeping the old definition', async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('a', { uuid: U1 }));
    await lv.defineFilter(fx('a', { uuid: U1.toUpperCase(), body: '' }));
    expect(await lv.filterXml('a')).toBe(fx('a', { uuid: U1.toUpperCase(), body: '' }));
    for (const xml of [fx('a', { uuid: U2 }), fx('a', { uuid: null })]) {
      const err = await rejection(lv.defineFilter(xml));
      expect(lv.classify(err)).toBe('invalid');
      expect(err.message).toContain(`filter 'a' already exists with uuid ${U1}`);
    }
    expect(await lv.filterXml('a')).toBe(fx('a', { uuid: U1.toUpperCase(), body: '' }));
    expect(lv.filterUuid('a')).toBe(U1);
  });

  it("adoptExistingUuid models the production adapter: another or no UUID keeps the existing one and overwrites", async () => {
    const lv = new FakeLibvirt({ adoptExistingUuid: true });
    await lv.defineFilter(fx('a', { uuid: U1 }));
    await lv.defineFilter(fx('a', { uuid: U2, body: '' }));
    expect(lv.filterUuid('a')).toBe(U1);
    expect(lv.filterXmlSync('a')).toBe(fx('a', { uuid: U2, body: '' }));
    await lv.defineFilter(fx('a', { uuid: null }));
    expect(lv.filterUuid('a')).toBe(U1);
  });

  it('refuses a new name with the UUID of another filter', async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('a', { uuid: U1 }));
    const err = await rejection(lv.defineFilter(fx('b', { uuid: U1 })));
    expect(lv.classify(err)).toBe('invalid');
    expect(err.message).toContain("same UUID but different name ('a')");
    expect(lv.filterXmlSync('b')).toBeUndefined();
  });

  const refusedDocuments: [string, string][] = [
    ['not well-formed', "<filter name='x'><rule>"],
    ['mismatched tags', "<filter name='x'></rule>"],
    ['U+FFFE', "<filter name='x'><rule action='drop' direction='in' priority='10'><tcp comment='a\uFFFEb'/></rule></filter>"],
    ['U+FFFF', "<filter name='x'><rule action='drop' direction='in' priority='10'><tcp comment='a\uFFFFb'/></rule></filter>"],
    ['U+0001 in an attribute', "<filter name='x'><rule action='drop' direction='in' priority='10'><tcp comment='a\u0001b'/></rule></filter>"],
    ['U+001F in text', "<filter name='x'>\u001f</filter>"],
    ['U+0000', "<filter name='x'>\u0000</filter>"],
    ['&#1;', "<filter name='x'>&#1;</filter>"],
    ['&#xFFFE;', "<filter name='x'>&#xFFFE;</filter>"],
    ['an undefined entity', "<filter name='x'>&foo;</filter>"],
    ["a bare '&' in an attribute", "<filter name='x&y'/>"],
    ["'<' in an attribute", "<filter name='x<y'/>"],
    ['two roots', "<filter name='x'/><filter name='y'/>"],
    ['text after the root', "<filter name='x'/>x"],
    ['empty', ''],
    ['another root element', "<network name='x'/>"],
    ['no name', "<filter chain='root'/>"],
    ['a malformed uuid', "<filter name='x'><uuid>not-a-uuid</uuid></filter>"],
  ];
  it.each(refusedDocuments)('refuses a document with %s as invalid, and defines nothing', async (_what, xml) => {
    const lv = new FakeLibvirt();
    expect(await kindOf(lv, lv.defineFilter(xml))).toBe('invalid');
    expect(await lv.listFilters()).toEqual([]);
    expect(lv.writes).toBe(0);
  });

  it('accepts tab, LF, CR, a lone surrogate (UTF-8 turns it into U+FFFD), a prolog, comments, CDATA and predefined entities', async () => {
    const lv = new FakeLibvirt();
    const docs = [
      "<filter name='t'>\t\n\r<rule action='drop' direction='in' priority='10'><tcp comment='a\tb'/></rule></filter>",
      "<filter name='s'><rule action='drop' direction='in' priority='10'><tcp comment='a\uD800b'/></rule></filter>",
      "<?xml version='1.0'?>\n<!-- & < --><filter name='p'><![CDATA[ & < ]]><rule action='drop' direction='in' priority='10'><tcp comment='&amp;&lt;&gt;&apos;&quot;&#233;&#x1F600;'/></rule></filter>\n",
    ];
    for (const d of docs) expect(xmlProblem(d)).toBeUndefined();
    for (const d of docs) await lv.defineFilter(d);
    expect((await lv.listFilters()).map((f) => f.name)).toEqual(['t', 's', 'p']);
  });

  it('refuses a reference loop (self, two, three filters) as invalid ("would introduce a loop") and keeps the old definition', async () => {
    const lv = new FakeLibvirt();
    expect(await kindOf(lv, lv.defineFilter(fx('self', { refs: ['self'] })))).toBe('invalid');
    await lv.defineFilter(fx('a', { refs: ['b'] }));
    await lv.defineFilter(fx('b', { refs: ['c'] }));
    await lv.defineFilter(fx('c'));
    const err = await rejection(lv.defineFilter(fx('c', { refs: ['a'] })));
    expect(lv.classify(err)).toBe('invalid');
    expect(err.message).toContain('would introduce a loop');
    expect(lv.filterXmlSync('c')).toBe(fx('c'));
    expect(await kindOf(lv, lv.defineFilter(fx('b', { refs: ['a'] })))).toBe('invalid');
    // not a loop: two filters referencing the same one
    await lv.defineFilter(fx('d', { refs: ['c', 'b'] }));
  });

  it('accepts a reference to a filter that does not exist; the tree is open until it does', async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('a', { refs: ['b'] }));
    await lv.defineFilter(fx('b', { refs: ['c'] }));
    expect(lv.missingIn('a')).toEqual(['c']);
    expect(lv.isClosedTree('a')).toBe(false);
    expect(() => lv.treeOf('a')).toThrow("referenced filter 'c' is missing");
    expect(lv.missingIn('nope')).toEqual(['nope']);
    await lv.defineFilter(fx('c'));
    expect(lv.isClosedTree('a')).toBe(true);
    expect([...lv.treeOf('a')].sort()).toEqual(['a', 'b', 'c']);
  });

  it('refuses as invalid what the test lists in `refused`', async () => {
    const lv = new FakeLibvirt();
    lv.refused.add('a');
    expect(await kindOf(lv, lv.defineFilter(fx('a')))).toBe('invalid');
    lv.refused.clear();
    await lv.defineFilter(fx('a'));
  });
});

describe('filters: undefine', () => {
  it('not found; referenced only by another filter: removed (libvirt accepts it)', async () => {
    const lv = new FakeLibvirt();
    expect(await kindOf(lv, lv.undefineFilter('nope'))).toBe('not-found');
    await lv.defineFilter(fx('a', { refs: ['b'] }));
    await lv.defineFilter(fx('b'));
    await lv.undefineFilter('b');
    expect(await lv.filterXml('b')).toBeUndefined();
    expect(lv.missingIn('a')).toEqual(['b']);
  });

  it("in use while in the filter tree of a running interface, directly or through other filters", async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('vm', { refs: ['dept'] }));
    await lv.defineFilter(fx('dept', { refs: ['global'] }));
    await lv.defineFilter(fx('global'));
    const uuid = await running(lv, [{ mac: M1, filterref: ref('vm') }]);
    for (const f of ['vm', 'dept', 'global']) {
      const err = await rejection(lv.undefineFilter(f));
      expect(lv.classify(err)).toBe('in-use');
      expect(err.message).toContain('nwfilter is in use');
    }
    expect((await lv.listFilters()).length).toBe(3);
    await lv.stopDomain(uuid);
    await lv.undefineFilter('global');
  });

  it("removed when only a domain's persistent definition references it (shut off, or running with another live filter)", async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('cfg', { refs: ['leaf'] }));
    await lv.defineFilter(fx('leaf'));
    await lv.defineFilter(fx('other'));
    const uuid = lv.defineDomain({ name: 'd', interfaces: [{ mac: M1, filterref: ref('cfg') }] });
    await lv.undefineFilter('leaf');
    await lv.defineFilter(fx('leaf'));
    await lv.startDomain(uuid);
    await lv.updateDevice(uuid, await ifaceXml(lv, uuid, M1, ref('other'), false), { live: true, config: false });
    expect(lv.bindingOf(uuid, M1, 'config')?.filter).toBe('cfg');
    await lv.undefineFilter('leaf');
    await lv.undefineFilter('cfg');
    expect(await kindOf(lv, lv.undefineFilter('other'))).toBe('in-use');
  });
});

describe('filters: redefinition under running interfaces', () => {
  it('counts a rebuild per running interface whose tree holds a changed filter; an unchanged XML or an unused filter rebuilds nothing', async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('vm1', { refs: ['dept'] }));
    await lv.defineFilter(fx('vm2', { refs: ['dept'] }));
    await lv.defineFilter(fx('dept'));
    await lv.defineFilter(fx('unused'));
    await running(lv, [{ mac: M1, filterref: ref('vm1') }, { mac: M2, filterref: ref('vm2') }]);
    await lv.defineFilter(fx('dept'));
    expect(lv.rebuilds).toBe(0);
    await lv.defineFilter(fx('dept', { body: '' }));
    expect(lv.rebuilds).toBe(2);
    await lv.defineFilter(fx('vm1', { refs: ['dept'], body: '' }));
    expect(lv.rebuilds).toBe(3);
    await lv.defineFilter(fx('unused', { body: '' }));
    expect(lv.rebuilds).toBe(3);
  });

  it('refuses a redefinition that leaves a running tree incomplete (kind other) and keeps the old one; without running users it is accepted', async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('vm', { refs: ['dept'] }));
    await lv.defineFilter(fx('dept'));
    await lv.defineFilter(fx('idle', { refs: ['dept'] }));
    const uuid = await running(lv, [{ mac: M1, filterref: ref('vm') }]);
    const err = await rejection(lv.defineFilter(fx('dept', { refs: ['ghost'] })));
    expect(lv.classify(err)).toBe('other');
    expect(err.message).toContain("referenced filter 'ghost' is missing");
    expect(lv.filterXmlSync('dept')).toBe(fx('dept'));
    await lv.defineFilter(fx('idle', { refs: ['ghost'] }));
    await lv.stopDomain(uuid);
    await lv.defineFilter(fx('dept', { refs: ['ghost'] }));
  });
});

describe("libvirt's shipped filters", () => {
  it('implicit (default): present for binding, not listed', async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('vm', { refs: ['clean-traffic'] }));
    expect(lv.isClosedTree('vm')).toBe(true);
    await running(lv, [{ mac: M1, filterref: ref('vm') }]);
    expect(await lv.listFilters()).toHaveLength(1);
  });

  it("'defined': listed, and in use through a running tree; 'none': absent", async () => {
    const lv = new FakeLibvirt({ builtinFilters: 'defined' });
    expect((await lv.listFilters()).map((f) => f.name)).toContain('no-mac-spoofing');
    await running(lv, [{ mac: M1, filterref: ref('clean-traffic', [{ name: 'IP', value: '10.0.0.1' }]) }]);
    expect(await kindOf(lv, lv.undefineFilter('no-mac-spoofing'))).toBe('in-use');
    await lv.undefineFilter('no-ip-multicast');
    const none = new FakeLibvirt({ builtinFilters: 'none' });
    const uuid = none.defineDomain({ name: 'd', interfaces: [{ mac: M1, filterref: ref('clean-traffic') }] });
    expect(await kindOf(none, none.startDomain(uuid))).toBe('other');
  });
});

describe('domains: listing and XML', () => {
  it('lists name, uuid, active, persistent; renders each view so that the agent reads MAC, device and binding', async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('f'));
    const odd = { name: 'IP', value: `1'2"3&4<5>` };
    const uuid = lv.defineDomain({ name: 'vm & co', uuid: U1.toUpperCase(), interfaces: [{ mac: M1.toUpperCase(), filterref: ref('f', [odd, { name: 'IP', value: '10.0.0.2' }]) }, { mac: M2, type: 'bridge' }] });
    expect(uuid).toBe(U1);
    expect(await lv.listDomains()).toEqual([{ name: 'vm & co', uuid: U1, active: false, persistent: true }]);
    const shutOff = await lv.domainXml(U1, false);
    expect(shutOff).toBe(await lv.domainXml(U1, true));
    expect(shutOff).toContain('<name>vm &amp; co</name>');
    expect(domainInterfaces(shutOff)).toMatchObject([
      { mac: M1, device: undefined, filterref: { filter: 'f', parameters: [odd, { name: 'IP', value: '10.0.0.2' }] } },
      { mac: M2, device: undefined, filterref: undefined },
    ]);
    expect(shutOff).toContain("<interface type='network'>");
    expect(shutOff).toContain("<source network='default'/>");
    expect(shutOff).toContain("<source bridge='virbr0'/>");
    await lv.startDomain(uuid);
    const live = await lv.domainXml(uuid, false);
    expect(live).toMatch(/<domain type='kvm' id='\d+'>/);
    const [a, b] = domainInterfaces(live);
    expect(a!.device).toMatch(/^vnet\d+$/);
    expect(b!.device).toMatch(/^vnet\d+$/);
    expect(a!.device).not.toBe(b!.device);
    expect(live).toContain("<alias name='net0'/>");
    expect(live).toContain("<alias name='net1'/>");
    expect(domainInterfaces(await lv.domainXml(uuid, true)).map((i) => i.device)).toEqual([undefined, undefined]);
    expect(await lv.listDomains()).toEqual([{ name: 'vm & co', uuid: U1, active: true, persistent: true }]);
  });

  it('unknown UUID: not-found for domainXml and updateDevice', async () => {
    const lv = new FakeLibvirt();
    expect(await kindOf(lv, lv.domainXml(U2, false))).toBe('not-found');
    expect(await kindOf(lv, lv.updateDevice(U2, `<interface type='network'><mac address='${M1}'/></interface>`, { live: true, config: false }))).toBe('not-found');
  });

  it('a transient domain has only its running definition, also with the inactive flag (without runtime details)', async () => {
    const lv = new FakeLibvirt();
    const uuid = await lv.createTransient({ name: 't', interfaces: [{ mac: M1 }] });
    expect(lv.listDomainsSync()).toEqual([{ name: 't', uuid, active: true, persistent: false }]);
    expect(domainInterfaces(await lv.domainXml(uuid, false))[0]!.device).toMatch(/^vnet/);
    expect(domainInterfaces(await lv.domainXml(uuid, true))).toMatchObject([{ mac: M1, device: undefined }]);
    expect(lv.interfacesOf(uuid)).toMatchObject({ config: [], live: [{ mac: M1 }] });
  });

  it('keeps a user-given target and ua- alias in both views', async () => {
    const lv = new FakeLibvirt();
    const uuid = await running(lv, [{ mac: M1, type: 'ethernet', target: 'tap7', alias: 'ua-nic' }]);
    for (const inactive of [true, false]) {
      const xml = await lv.domainXml(uuid, inactive);
      expect(domainInterfaces(xml)[0]!.device).toBe('tap7');
      expect(xml).toContain("<alias name='ua-nic'/>");
      expect(xml).not.toContain('<source');
    }
  });
});

describe('domains: updateDevice', () => {
  it("changes the chosen views' binding by MAC (any case), removes it, and leaves other interfaces alone", async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('f'));
    const uuid = await running(lv, [{ mac: M1 }, { mac: M2, filterref: ref('f') }]);
    const b = ref('f', [{ name: 'IP', value: '10.0.0.1' }]);
    await lv.updateDevice(uuid, (await ifaceXml(lv, uuid, M1, b, false)).replace(M1, M1.toUpperCase()), { live: true, config: false });
    expect(lv.bindingOf(uuid, M1, 'live')).toEqual(b);
    expect(lv.bindingOf(uuid, M1, 'config')).toBeUndefined();
    await lv.updateDevice(uuid, await ifaceXml(lv, uuid, M1, b, true), { live: false, config: true });
    expect(lv.interfacesOf(uuid)).toMatchObject({ config: [{ filterref: b }, { filterref: ref('f') }], live: [{ filterref: b }, { filterref: ref('f') }] });
    await lv.updateDevice(uuid, await ifaceXml(lv, uuid, M1, undefined, false), { live: true, config: true });
    expect(lv.bindingOf(uuid, M1, 'live')).toBeUndefined();
    expect(lv.bindingOf(uuid, M1, 'config')).toBeUndefined();
    expect(lv.bindingOf(uuid, M2, 'live')).toEqual(ref('f'));
    expect(lv.writes).toBe(4);
  });

  it('live on a shut-off domain fails (other, "not running") and changes nothing, config included', async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('f'));
    const uuid = lv.defineDomain({ name: 'd', interfaces: [{ mac: M1 }] });
    const xml = await ifaceXml(lv, uuid, M1, ref('f'), true);
    for (const target of [{ live: true, config: false }, { live: true, config: true }]) {
      const err = await rejection(lv.updateDevice(uuid, xml, target));
      expect(lv.classify(err)).toBe('other');
      expect(err.message).toContain('domain is not running');
    }
    expect(lv.bindingOf(uuid, M1, 'config')).toBeUndefined();
    await lv.updateDevice(uuid, xml, { live: false, config: true });
    expect(lv.bindingOf(uuid, M1, 'config')).toEqual(ref('f'));
  });

  it('config on a transient domain fails (other)', async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('f'));
    const uuid = await lv.createTransient({ name: 't', interfaces: [{ mac: M1 }] });
    const xml = await ifaceXml(lv, uuid, M1, ref('f'), false);
    for (const target of [{ live: false, config: true }, { live: true, config: true }]) {
      const err = await rejection(lv.updateDevice(uuid, xml, target));
      expect(lv.classify(err)).toBe('other');
      expect(err.message).toContain('transient domains do not have any persistent config');
    }
    expect(lv.bindingOf(uuid, M1, 'live')).toBeUndefined();
    await lv.updateDevice(uuid, xml, { live: true, config: false });
    expect(lv.bindingOf(uuid, M1, 'live')).toEqual(ref('f'));
  });

  it('live with a missing filter or an incomplete tree fails (other) and changes neither view; config alone accepts it', async () => {
    const lv = new FakeLibvirt();
    await lv.defineFilter(fx('old'));
    await lv.defineFilter(fx('open', { refs: ['ghost'] }));
    const uuid = await running(lv, [{ mac: M1, filterref: ref('old') }]);
    const writes = lv.writes;
    for (const filter of ['ghost', 'open']) {
      for (const target of [{ live: true, config: false }, { live: true, config: true }]) {
        const err = await rejection(lv.updateDevice(uuid, await ifaceXml(lv, uuid, M1, ref(filter), false), target));
        expect(lv.classify(err)).toBe('other');
        expect(err.message).toContain('failed to add new filter rules');
        expect(lv.bindingOf(uuid, M1, 'live')).toEqual(ref('old'));
        expect(lv.bindingOf(uuid, M1, 'config')).toEqual(ref('old'));
      }
    }
    await lv.updateDevice(uuid, await ifaceXml(lv, uuid, M1, ref('ghost'), true), { live: false, config: true });
    expect(lv.bindingOf(uuid, M1, 'config')).toEqual(ref('ghost'));
    expect(lv.writes).toBe(writes + 1);
  });

  it('a MAC the view lacks fails (other); so does a device that is not an interface or not XML (invalid)', async () => {
    const lv = new FakeLibvirt();
    const uuid = await running(lv, [{ mac: M1 }]);
    await lv.hotplugInterface(uuid, { mac: M2 }, { live: true, config: false });
    const xml = `<interface type='network'><mac address='${M2}'/></interface>`;
    const err = await rejection(lv.updateDevice(uuid, xml, { live: true, config: true }));
    expect(lv.classify(err)).toBe('other');
    expect(err.message).toContain(`matching MAC address '${M2}'`);
    await lv.updateDevice(uuid, xml, { live: true, config: false });
    expect(await kindOf(lv, lv.updateDevice(uuid, "<interface type='network'/>", { live: true, config: false }))).toBe('other');
    expect(await kindOf(lv, lv.updateDevice(uuid, `<disk type='file'><mac address='${M1}'/></disk>`, { live: true, config: false }))).toBe('invalid');
    expect(await kindOf(lv, lv.updateDevice(uuid, `<interface type='network'><mac address='${M1}'/>`, { live: true, config: false }))).toBe('invalid');
  });
});

describe('domains: lifecycle (test controls)', () => {
  it('start copies the definition with devices (event started); a missing filter, directly or deeper, fails the start with no event', async () => {
    const lv = new FakeLibvirt();
    const events = recorder(lv);
    await lv.defineFilter(fx('vm', { refs: ['dept'] }));
    const uuid = lv.defineDomain({ name: 'd', interfaces: [{ mac: M1, filterref: ref('vm') }] });
    await ticks();
    expect(events).toEqual([{ uuid, name: 'd', kind: 'defined' }]);
    const err = await rejection(lv.startDomain(uuid));
    expect(lv.classify(err)).toBe('other');
    expect(err.message).toContain("referenced filter 'dept' is missing");
    const other = lv.defineDomain({ name: 'e', interfaces: [{ mac: M2, filterref: ref('nope') }] });
    expect(await kindOf(lv, lv.startDomain(other))).toBe('other');
    await ticks();
    expect(lv.listDomainsSync().map((d) => d.active)).toEqual([false, false]);
    expect(events.map((e) => e.kind)).toEqual(['defined', 'defined']);
    await lv.defineFilter(fx('dept'));
    await lv.startDomain(uuid);
    expect(lv.interfacesOf(uuid, 'live')).toMatchObject([{ mac: M1, filterref: ref('vm'), target: expect.stringMatching(/^vnet\d+$/) }]);
    expect(await kindOf(lv, lv.startDomain(uuid))).toBe('other');
    await ticks();
    expect(events.map((e) => e.kind)).toEqual(['defined', 'defined', 'started']);
  });

  it('stop: a persistent domain is shut off, a transient one gone (event stopped)', async () => {
    const lv = new FakeLibvirt();
    const events = recorder(lv);
    const p = await running(lv, [{ mac: M1 }], 'p');
    const t = await lv.createTransient({ name: 't', interfaces: [{ mac: M2 }] });
    await lv.stopDomain(p);
    await lv.stopDomain(t);
    expect(lv.listDomainsSync()).toEqual([{ name: 'p', uuid: p, active: false, persistent: true }]);
    expect(lv.interfacesOf(p, 'live')).toEqual([]);
    expect(await kindOf(lv, lv.stopDomain(p))).toBe('other');
    expect(await kindOf(lv, lv.domainXml(t, false))).toBe('not-found');
    expect(events.filter((e) => e.kind === 'stopped').map((e) => e.name)).toEqual(['p', 't']);
  });

  it('undefine: shut off -> gone, running -> transient (event undefined), transient -> refused', async () => {
    const lv = new FakeLibvirt();
    const events = recorder(lv);
    const off = lv.defineDomain({ name: 'off', interfaces: [] });
    const on = await running(lv, [{ mac: M1 }], 'on');
    await lv.undefineDomain(off);
    await lv.undefineDomain(on);
    expect(lv.listDomainsSync()).toEqual([{ name: 'on', uuid: on, active: true, persistent: false }]);
    expect(lv.interfacesOf(on)).toMatchObject({ config: [], live: [{ mac: M1 }] });
    expect(await kindOf(lv, lv.undefineDomain(on))).toBe('other');
    await ticks();
    expect(events.filter((e) => e.kind === 'undefined').map((e) => e.name)).toEqual(['off', 'on']);
  });

  it('define of an existing UUID updates the definition only (event defined); a name another UUID has is refused', async () => {
    const lv = new FakeLibvirt();
    const events = recorder(lv);
    const uuid = await running(lv, [{ mac: M1 }]);
    lv.defineDomain({ name: 'd', uuid, interfaces: [{ mac: M1 }, { mac: M2 }] });
    expect(lv.interfacesOf(uuid, 'config')).toHaveLength(2);
    expect(lv.interfacesOf(uuid, 'live')).toHaveLength(1);
    expect(() => lv.defineDomain({ name: 'd', uuid: U2, interfaces: [] })).toThrow(FakeLibvirtError);
    await ticks();
    expect(events.map((e) => e.kind)).toEqual(['defined', 'started', 'defined']);
  });

  it('createTransient with a missing filter fails and creates nothing', async () => {
    const lv = new FakeLibvirt();
    const events = recorder(lv);
    expect(await kindOf(lv, lv.createTransient({ name: 't', interfaces: [{ mac: M1, filterref: ref('nope') }] }))).toBe('other');
    await ticks();
    expect(lv.listDomainsSync()).toEqual([]);
    expect(events).toEqual([]);
  });
});

describe('domains: migration (test controls)', () => {
  it('migrateIn refuses a domain whose filters are missing here: it never appears, no event', async () => {
    const [src, dst] = [new FakeLibvirt(), new FakeLibvirt()];
    const events = recorder(dst);
    await src.defineFilter(fx('vm', { refs: ['dept'] }));
    await src.defineFilter(fx('dept'));
    const uuid = await running(src, [{ mac: M1, filterref: ref('vm', [{ name: 'IP', value: '10.0.0.1' }]) }]);
    await dst.defineFilter(fx('vm', { refs: ['dept'] }));
    const err = await rejection(dst.migrateIn(src.snapshot(uuid)));
    expect(dst.classify(err)).toBe('other');
    expect(err.message).toContain("'dept' is missing");
    await ticks();
    expect(dst.listDomainsSync()).toEqual([]);
    expect(events).toEqual([]);
  });

  it('migrateIn arrives running and persistent (events migrated, defined); migrateOut removes it from the source (event migrated), or keeps it shut off', async () => {
    const [src, dst] = [new FakeLibvirt(), new FakeLibvirt()];
    const srcEvents = recorder(src);
    const dstEvents = recorder(dst);
    for (const lv of [src, dst]) await lv.defineFilter(fx('vm'));
    const b = ref('vm', [{ name: 'IP', value: '10.0.0.1' }]);
    const uuid = await running(src, [{ mac: M1, filterref: b }]);
    await dst.migrateIn(src.snapshot(uuid));
    await src.migrateOut(uuid);
    expect(src.listDomainsSync()).toEqual([]);
    expect(dst.listDomainsSync()).toEqual([{ name: 'd', uuid, active: true, persistent: true }]);
    expect(dst.interfacesOf(uuid)).toMatchObject({ config: [{ mac: M1, filterref: b }], live: [{ mac: M1, filterref: b, target: expect.stringMatching(/^vnet/) }] });
    expect(dst.interfacesOf(uuid, 'config')[0]!.target).toBeUndefined();
    await ticks();
    expect(dstEvents.map((e) => e.kind)).toEqual(['migrated', 'defined']);
    expect(srcEvents.map((e) => e.kind)).toEqual(['defined', 'started', 'migrated']);
    // back again, keeping the source's definition this time
    await src.migrateIn(dst.snapshot(uuid), { persistent: false });
    await dst.migrateOut(uuid, { keepSource: true });
    expect(dst.listDomainsSync()).toEqual([{ name: 'd', uuid, active: false, persistent: true }]);
    expect(src.listDomainsSync()).toEqual([{ name: 'd', uuid, active: true, persistent: false }]);
    // a domain that already runs here cannot arrive again
    expect(await kindOf(src, src.migrateIn({ name: 'd', uuid, interfaces: [] }))).toBe('other');
  });
});

describe('hot-plug (test controls)', () => {
  it('live: device-added, with a device; config only: no event; a missing filter fails live only; unplug live: device-removed', async () => {
    const lv = new FakeLibvirt();
    const events = recorder(lv);
    const uuid = await running(lv, [{ mac: M1 }]);
    await ticks();
    events.length = 0;
    await lv.hotplugInterface(uuid, { mac: M2 }, { live: false, config: true });
    await ticks();
    expect(events).toEqual([]);
    expect(lv.interfacesOf(uuid, 'config').map((i) => i.mac)).toEqual([M1, M2]);
    expect(await kindOf(lv, lv.hotplugInterface(uuid, { mac: M2, filterref: ref('nope') }, { live: true, config: false }))).toBe('other');
    expect(lv.interfacesOf(uuid, 'live')).toHaveLength(1);
    await lv.hotplugInterface(uuid, { mac: M2 }, { live: true, config: false });
    await ticks();
    expect(events).toEqual([{ uuid, name: 'd', kind: 'device-added' }]);
    expect(lv.interfacesOf(uuid, 'live')[1]).toMatchObject({ mac: M2, target: expect.stringMatching(/^vnet/), alias: 'net1' });
    expect(await kindOf(lv, lv.hotplugInterface(uuid, { mac: M2 }, { live: true, config: false }))).toBe('other');
    await lv.unplugInterface(uuid, M2, { live: false, config: true });
    await ticks();
    expect(events).toHaveLength(1);
    await lv.unplugInterface(uuid, M2);
    await ticks();
    expect(events.map((e) => e.kind)).toEqual(['device-added', 'device-removed']);
    expect(lv.interfacesOf(uuid)).toMatchObject({ config: [{ mac: M1 }], live: [{ mac: M1 }] });
    expect(await kindOf(lv, lv.unplugInterface(uuid, M2))).toBe('other');
  });
});

describe('connection', () => {
  it('while disconnected every call rejects as disconnected and no event arrives, queued ones included; reconnect sends one reconnected', async () => {
    const lv = new FakeLibvirt();
    const events = recorder(lv);
    await lv.defineFilter(fx('f'));
    const uuid = lv.defineDomain({ name: 'd', interfaces: [{ mac: M1 }] });
    lv.disconnect(); // the 'defined' above is still queued: lost
    expect(lv.isConnected()).toBe(false);
    const calls = [lv.listFilters(), lv.filterXml('f'), lv.defineFilter(fx('g')), lv.undefineFilter('f'), lv.listDomains(), lv.domainXml(uuid, true), lv.updateDevice(uuid, `<interface type='network'><mac address='${M1}'/></interface>`, { live: false, config: true })];
    for (const c of calls) expect(await kindOf(lv, c)).toBe('disconnected');
    await lv.startDomain(uuid); // the host goes on
    await ticks();
    expect(events).toEqual([]);
    expect(lv.filterXmlSync('g')).toBeUndefined();
    expect(lv.writes).toBe(1);
    lv.reconnect();
    lv.reconnect();
    await ticks();
    expect(events).toEqual([{ uuid: '', name: '', kind: 'reconnected' }]);
    expect(await lv.listDomains()).toEqual([{ name: 'd', uuid, active: true, persistent: true }]);
  });

  it('an event queued when the connection drops is lost even if it is back at once', async () => {
    const lv = new FakeLibvirt();
    const events = recorder(lv);
    lv.defineDomain({ name: 'd', interfaces: [] });
    lv.disconnect();
    lv.reconnect();
    await ticks();
    expect(events).toEqual([{ uuid: '', name: '', kind: 'reconnected' }]);
  });

  it('a call in flight when the connection drops rejects as disconnected and has no effect', async () => {
    const lv = new FakeLibvirt({ delayMs: 5 });
    const p = lv.defineFilter(fx('f'));
    lv.disconnect();
    expect(await kindOf(lv, p)).toBe('disconnected');
    lv.reconnect();
    expect(await lv.filterXml('f')).toBeUndefined();
  });

  it('close: not connected any more, calls reject as disconnected', async () => {
    const lv = new FakeLibvirt();
    await lv.close();
    expect(lv.isConnected()).toBe(false);
    expect(await kindOf(lv, lv.listFilters())).toBe('disconnected');
    expect(() => lv.reconnect()).toThrow();
  });

  it('classify: the kind of a fake error, other for anything else', () => {
    const lv = new FakeLibvirt();
    expect(lv.classify(new FakeLibvirtError('in-use', 'x'))).toBe('in-use');
    expect(lv.classify(new Error('x'))).toBe('other');
    expect(lv.classify('x')).toBe('other');
  });
});

describe('events and timing', () => {
  it('events are delivered asynchronously, in order, to every handler', async () => {
    const lv = new FakeLibvirt();
    const a = recorder(lv);
    const b = recorder(lv);
    const uuid = lv.defineDomain({ name: 'd', interfaces: [] });
    await lv.startDomain(uuid);
    expect(a).toEqual([]);
    await ticks();
    expect(a.map((e) => e.kind)).toEqual(['defined', 'started']);
    expect(b).toEqual(a);
    expect(lv.delivered).toEqual(a);
  });

  it('delayMs: a call takes that long, and an event of the meantime arrives before its answer', async () => {
    const lv = new FakeLibvirt({ delayMs: 30 });
    const order: string[] = [];
    lv.onDomainEvent((e) => order.push(`event ${e.kind}`));
    const t0 = performance.now();
    const listing = lv.listDomains().then((l) => order.push(`listed ${l.length}`));
    lv.defineDomain({ name: 'd', interfaces: [] });
    await listing;
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
    expect(order).toEqual(['event defined', 'listed 1']);
    lv.delayMs = 0;
    const t1 = performance.now();
    await lv.listFilters();
    expect(performance.now() - t1).toBeLessThan(25);
  });

  it('holdListDomains: a listing made before a define answers without it after the event; one made after the release sees it', async () => {
    const lv = new FakeLibvirt();
    const order: string[] = [];
    lv.onDomainEvent((e) => order.push(`event ${e.kind} ${e.name}`));
    const release = lv.holdListDomains();
    const held = lv.listDomains().then((l) => order.push(`held listing: ${l.map((d) => d.name).join(',')}`));
    lv.defineDomain({ name: 'd', interfaces: [] });
    await ticks(5);
    expect(order).toEqual(['event defined d']);
    release();
    await held;
    expect(order).toEqual(['event defined d', 'held listing: ']);
    expect((await lv.listDomains()).map((d) => d.name)).toEqual(['d']);
  });
});

describe('fault injection and counters', () => {
  it('failNext fails the next call of that operation once, with that kind and no effect; afterEffect lets it take effect', async () => {
    const lv = new FakeLibvirt();
    lv.failNext('defineFilter', 'other');
    expect(await kindOf(lv, lv.defineFilter(fx('a')))).toBe('other');
    expect(lv.filterXmlSync('a')).toBeUndefined();
    expect(lv.writes).toBe(0);
    await lv.defineFilter(fx('a'));
    lv.failNext('undefineFilter', 'disconnected', { afterEffect: true });
    await lv.listFilters(); // another operation is not affected
    expect(await kindOf(lv, lv.undefineFilter('a'))).toBe('disconnected');
    expect(lv.filterXmlSync('a')).toBeUndefined();
    expect(lv.writes).toBe(2);
    lv.failNext('listDomains', 'not-found');
    expect(await kindOf(lv, lv.listDomains())).toBe('not-found');
    expect(await lv.listDomains()).toEqual([]);
  });

  it('counts calls per method (failed ones too) and successful writes, and calls onWrite after each write', async () => {
    const lv = new FakeLibvirt();
    const writes: string[] = [];
    lv.onWrite = (w) => writes.push(`${w} (${lv.filterXmlSync('a') === undefined ? 'absent' : 'present'})`);
    await lv.defineFilter(fx('a'));
    await lv.filterXml('a');
    await lv.filterXml('b');
    await rejection(lv.undefineFilter('b'));
    const uuid = await running(lv, [{ mac: M1 }]);
    await lv.domainXml(uuid, false);
    await lv.updateDevice(uuid, await ifaceXml(lv, uuid, M1, ref('a'), false), { live: true, config: false });
    await rejection(lv.undefineFilter('a'));
    await lv.listDomains();
    expect(lv.calls).toEqual({ defineFilter: 1, filterXml: 2, undefineFilter: 2, domainXml: 2, updateDevice: 1, listDomains: 1 });
    expect(lv.writes).toBe(2);
    expect(writes).toEqual(['define a (present)', `update-device d ${M1} live (present)`]);
  });
});
