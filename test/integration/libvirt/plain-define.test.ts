// The define path of libvirt < 7.7 (no NWFILTER_DEFINE_XML_FLAGS, so no VALIDATE) forced on the real
// libvirtd with `nwfilterDefineFlags: false`: NWFILTER_DEFINE_XML, then the read-back comparison.
// Proves on real libvirt output that every rule shape the project renders, and every filter libvirt
// ships, reads back as equivalent, and that what libvirt silently drops is caught and put back.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NwFilterNotKeptError, filterDifferences, isInvalidXml, type LibvirtClient } from '../../../src/libvirt/index.js';
import { canonicalFilter, filterUuid, quarantineFilter, renderFilterXml, type NwFilter, type NwRule } from '../../../src/policy/index.js';
import { newClient, prefix, removeFilters } from './support.js';

const P = prefix('plain');
let client: LibvirtClient;

beforeAll(async () => {
  client = newClient({ nwfilterDefineFlags: false });
  await client.connect();
});

afterAll(async () => {
  await removeFilters(client, P);
  await client.close();
});

/** The filter under this run's prefix (nwf-x -> P-x in its name and its references) with the UUID of that name. */
function renamed(xml: string): { name: string; xml: string } {
  const name = `${P}-${/<filter name="nwf-([^"]+)"/.exec(xml)![1]!}`;
  const out = xml
    .replace(/(<filter name=|<filterref filter=)"nwf-/g, `$1"${P}-`)
    .replace(/<uuid>[^<]+<\/uuid>/, `<uuid>${filterUuid(name)}</uuid>`);
  return { name, xml: out };
}

/** Defines through the plain path (it resolves only when the read-back matched) and checks libvirt's XML once more. */
async function defineAndCompare(xml: string, name: string): Promise<void> {
  const ref = await client.defineFilter(xml);
  expect(ref.name).toBe(name);
  const kept = await client.filterXml(ref);
  expect(kept, name).not.toBe(xml); // libvirt did re-serialize it
  expect(filterDifferences(xml, kept), name).toEqual([]);
}

describe('plain define with read-back on a real libvirtd', () => {
  it('knows the daemon version from the handshake', () => {
    expect(client.daemonVersion).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('every filter rendered from examples/ (render code of the CLI) reads back equivalent', async () => {
    const out = mkdtempSync(join(tmpdir(), 'nwf-plain-render-'));
    execFileSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'render', '-f', 'examples', '-o', out]);
    // referenced filters first: global, departments, then VMs
    const order = (f: string) => (f.startsWith('nwf-global') ? 0 : f.startsWith('nwf-dept-') ? 1 : 2);
    const files = readdirSync(out)
      .filter((f) => f.endsWith('.xml'))
      .sort((a, b) => order(a) - order(b) || (a < b ? -1 : 1));
    expect(files.length).toBe(7);
    for (const file of files) {
      const { name, xml } = renamed(readFileSync(join(out, file), 'utf8'));
      await defineAndCompare(xml, name);
      // the agent's own comparison agrees
      expect(canonicalFilter(await client.filterXml(name))).toBe(canonicalFilter(xml));
    }
  });

  it('every rule shape render.ts emits (each protocol with its attributes, state lists, statematch, actions, directions) reads back equivalent', async () => {
    const origin = { kind: 'default', level: 'vm', owner: 't' } as const;
    const base = { action: 'accept', direction: 'in', priority: 0, comment: 'shape', origin } as const;
    const shapes: Omit<NwRule, 'origin' | 'comment'>[] = [];
    for (const protocol of ['tcp', 'udp', 'sctp'] as const) {
      shapes.push({ ...base, protocol, dstPortStart: 22 });
      shapes.push({ ...base, protocol, dstPortStart: 8000, dstPortEnd: 8080, src: { address: '10.0.0.0', prefix: 8 } });
      shapes.push({ ...base, protocol, dstPortStart: 443, dst: { address: '192.168.1.7', prefix: 32 }, state: ['NEW'] });
      shapes.push({ ...base, protocol, src: { address: '172.16.0.0', prefix: 12 }, dst: { address: '10.1.0.0', prefix: 16 }, state: ['ESTABLISHED', 'RELATED'] });
    }
    shapes.push({ ...base, protocol: 'icmp' });
    shapes.push({ ...base, protocol: 'icmp', icmpType: 8, src: { address: '10.0.0.0', prefix: 8 } });
    shapes.push({ ...base, protocol: 'icmp', icmpType: 0, dst: { address: '0.0.0.0', prefix: 0 }, state: ['NEW', 'ESTABLISHED', 'RELATED', 'INVALID'] });
    shapes.push({ ...base, protocol: 'all', dst: { address: '169.254.169.254', prefix: 32 }, state: ['NEW'] });
    shapes.push({ ...base, protocol: 'all', direction: 'inout', state: ['RELATED'] });
    shapes.push({ ...base, protocol: 'all', action: 'drop', direction: 'inout', priority: 1000 });
    shapes.push({ ...base, protocol: 'all-ipv6', action: 'drop', direction: 'inout', priority: 1000 });
    shapes.push({ ...base, protocol: 'all-ipv6', state: ['INVALID'] });
    shapes.push({ ...base, protocol: 'icmpv6', icmpType: 135, priority: -1000, noStateMatch: true });
    shapes.push({ ...base, protocol: 'icmpv6', icmpType: 136, direction: 'out', priority: -1000, noStateMatch: true });
    shapes.push({ ...base, protocol: 'tcp', dstPortStart: 25, action: 'reject', direction: 'out', priority: -790, state: ['NEW'] });
    shapes.push({ ...base, protocol: 'udp', dstPortStart: 53, action: 'drop', direction: 'inout', priority: -1000, noStateMatch: true });
    const name = `${P}-shapes`;
    const filter: NwFilter = {
      name,
      uuid: filterUuid(name),
      level: 'vm',
      refs: ['clean-traffic'],
      rules: shapes.map((r, i) => ({ ...r, comment: `shape ${i + 1} (it's <${r.protocol}>)`, origin })),
    };
    await defineAndCompare(renderFilterXml(filter), name);
    const q = renamed(quarantineFilter('q').xml);
    await defineAndCompare(q.xml, q.name);
  });

  it("every filter libvirt ships reads back equivalent when redefined from its file (MAC, ARP, IP, variables, chains)", async () => {
    const dir = '/usr/share/libvirt/nwfilter';
    const shipped = readdirSync(dir).filter((f) => f.endsWith('.xml'));
    expect(shipped.length).toBeGreaterThan(20);
    for (const file of shipped) {
      const xml = readFileSync(join(dir, file), 'utf8');
      const before = await client.filterXml(file.replace(/\.xml$/, ''));
      // no UUID in the file: adopted on the plain path too, and nothing changes
      await client.defineFilter(xml);
      expect(await client.filterXml(file.replace(/\.xml$/, '')), file).toBe(before);
    }
  });

  it('what libvirt drops is caught: an existing filter gets its previous definition back, a new one stays as libvirt kept it', async () => {
    const name = `${P}-bad`;
    const good = `<filter name='${name}' chain='root'><rule action='accept' direction='in' priority='-580'><tcp dstportstart='80' dstportend='80'/></rule></filter>`;
    await client.defineFilter(good);
    const previous = await client.filterXml(name);
    // a misspelt attribute (the rule would accept every TCP port up to 80), statematch misplaced,
    // a priority out of range, a second protocol element, a misspelt rule element
    const bad = `<filter name='${name}' chain='root'>
      <rule action='accept' direction='in' priority='-580'><tcp dstportstrat='80' dstportend='80'/></rule>
      <rule action='accept' direction='in' priority='-1000'><icmpv6 type='135' statematch='false'/></rule>
      <rule action='accept' direction='in' priority='5000'><tcp dstportstart='443'/></rule>
      <rule action='drop' direction='out' priority='-590'><tcp dstportstart='22'/><udp dstportstart='22'/></rule>
      <rulle action='drop' direction='inout' priority='1000'><all/></rulle>
    </filter>`;
    const err = await client.defineFilter(bad).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NwFilterNotKeptError);
    expect(isInvalidXml(err)).toBe(true);
    expect((err as NwFilterNotKeptError).differences).toEqual([
      'element <rulle> was dropped',
      "rule 1 <tcp>: attribute dstportstrat='80' was dropped",
      "rule 2 <icmpv6>: attribute statematch='false' was dropped",
      "rule 3: priority='5000' became priority='500'",
      'rule 4: protocol element <udp> was dropped',
    ]);
    expect((err as NwFilterNotKeptError).restored).toBe(true);
    expect(await client.filterXml(name)).toBe(previous);

    const fresh = `${P}-bad-new`;
    const errNew = await client.defineFilter(bad.replace(`name='${name}'`, `name='${fresh}'`)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(errNew).toMatchObject({ name: 'NwFilterNotKeptError', restored: false });
    expect(await client.filterXml(fresh)).toContain("dstportend='80'");
  });
});
