// The agent's parts against the one in-memory fake libvirt (test/helpers/fake-libvirt.ts).
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../../src/agent/agent.js';
import { DomainCache } from '../../../src/agent/domain-cache.js';
import { GarbageCollector } from '../../../src/agent/garbage-collector.js';
import { Realizer } from '../../../src/agent/realizer.js';
import { StatusReporter } from '../../../src/agent/status-reporter.js';
import { filterUuid, quarantineFilter, vmFilterName } from '../../../src/policy/index.js';
import { createMetrics } from '../../../src/runtime/metrics.js';
import { FakeLibvirt } from '../../helpers/fake-libvirt.js';
import { MemoryPolicySource } from '../../helpers/memory-policy-source.js';

const log = pino({ level: 'silent' });
const M1 = '52:54:00:aa:00:01';
const M2 = '52:54:00:aa:00:02';
const filterXml = (name: string, refs: string[] = []) =>
  `<filter name='${name}' chain='root'><uuid>${filterUuid(name)}</uuid>${refs.map((r) => `<filterref filter='${r}'/>`).join('')}<rule action='drop' direction='inout' priority='1000'><all/></rule></filter>`;

describe('Realizer', () => {
  it('binds config and live, leaves a foreign filter alone, replaces one of ours, detaches a deselected interface, and skips unchanged work', async () => {
    const lv = new FakeLibvirt();
    const realizer = new Realizer(lv, createMetrics(), log);
    await lv.defineFilter(filterXml('clean-traffic-copy'));
    await lv.defineFilter(filterXml('nwf-vm-a'));
    await lv.defineFilter(filterXml('nwf-vm-old'));
    const uuid = lv.defineDomain({ name: 'd', interfaces: [{ mac: M1, filterref: { filter: 'nwf-vm-old', parameters: [] } }, { mac: M2, filterref: { filter: 'clean-traffic-copy', parameters: [] } }] });
    await lv.startDomain(uuid);
    const domain = lv.listDomainsSync()[0]!;
    const r = await realizer.bind('a', domain, { filter: 'nwf-vm-a', parameters: [{ name: 'IP', value: '10.0.0.1' }] }, undefined, 'k1');
    expect(r).toEqual({ protectedCount: 1, foreign: [{ mac: M2, filter: 'clean-traffic-copy' }] });
    for (const view of ['config', 'live'] as const) {
      expect(lv.interfacesOf(uuid, view).map((i) => i.filterref?.filter)).toEqual(['nwf-vm-a', 'clean-traffic-copy']);
      expect(lv.interfacesOf(uuid, view)[0]!.filterref!.parameters).toEqual([{ name: 'IP', value: '10.0.0.1' }]);
    }
    const reads = lv.calls.domainXml;
    await realizer.bind('a', domain, { filter: 'nwf-vm-a', parameters: [] }, undefined, 'k1');
    expect(lv.calls.domainXml).toBe(reads);
    await realizer.bind('a', domain, { filter: 'nwf-vm-a', parameters: [] }, new Set([M2]), 'k2');
    expect(lv.interfacesOf(uuid, 'live').map((i) => i.filterref?.filter)).toEqual([undefined, 'clean-traffic-copy']);
  });

  it('classifies failures: a refused document is terminal, an unreachable libvirtd is transient', async () => {
    const lv = new FakeLibvirt();
    const realizer = new Realizer(lv, createMetrics(), log);
    const bad = { filter: { name: 'nwf-vm-x' } as never, xml: "<filter name='nwf-vm-x'>\uFFFF</filter>" };
    await expect(realizer.ensureTree([bad])).rejects.toMatchObject({ kind: 'invalid', terminal: true });
    lv.disconnect();
    await expect(realizer.ensureTree([{ filter: { name: 'nwf-vm-y' } as never, xml: filterXml('nwf-vm-y') }])).rejects.toMatchObject({ kind: 'disconnected', transient: true });
  });
});

describe('GarbageCollector', () => {
  it("removes only filters of ours that nothing needs: keeps a user's nwf- filter, an unparseable VMFilter's tree and an attached filter; detaches a gone VMFilter's filter first", async () => {
    const lv = new FakeLibvirt();
    const source = new MemoryPolicySource();
    const realizer = new Realizer(lv, createMetrics(), log);
    const domains = new DomainCache(lv);
    await lv.defineFilter(`<filter name='nwf-users-own' chain='root'><rule action='accept' direction='out' priority='1'><all/></rule></filter>`);
    await lv.defineFilter(filterXml('nwf-dept-x'));
    await lv.defineFilter(filterXml('nwf-vm-broken', ['nwf-dept-x']));
    await lv.defineFilter(filterXml('nwf-vm-gone'));
    await lv.defineFilter(filterXml('nwf-vm-moved', ['nwf-dept-x']));
    await lv.defineFilter(filterXml('nwf-vm-moved-unattached'));
    await lv.defineFilter(filterXml('nwf-dept-unused'));
    const uuid = lv.defineDomain({
      name: 'd',
      interfaces: [
        { mac: M1, filterref: { filter: 'nwf-vm-gone', parameters: [] } },
        { mac: M2, filterref: { filter: 'nwf-vm-moved', parameters: [] } },
      ],
    });
    source.put('VMFilter', { metadata: { name: 'broken' }, spec: { domain: { name: 'elsewhere' }, rules: [{ action: 'return' }] } });
    await domains.refresh();
    // 'moved' and 'moved-unattached' exist on the API server but left this node's view (re-pinned elsewhere).
    const elsewhere = new Set(['moved', 'moved-unattached']);
    const fetched: string[] = [];
    let apiDown = false;
    const gc = new GarbageCollector({
      libvirt: lv,
      realizer,
      domains,
      vmFilters: () => source.vmFilters(),
      fetchVmFilter: async (name) => {
        if (apiDown) throw new Error('connection refused');
        fetched.push(name);
        return elsewhere.has(name) ? { metadata: { name }, spec: { domain: { name: 'other' }, nodeName: 'n2' } } : undefined;
      },
      knownVmFilterNames: () => [],
      decision: { nodeName: 'n', domains, claimants: () => source.vmFilters(), quarantine: true },
      log,
      metrics: createMetrics(),
    });
    apiDown = true;
    // Whether 'gone' is gone only the API server can say: without it nothing is detached or removed.
    await expect(gc.collect()).rejects.toThrow('connection refused');
    expect(lv.interfacesOf(uuid, 'config')[0]!.filterref?.filter).toBe('nwf-vm-gone');
    apiDown = false;
    const removed = await gc.collect();
    // Only attached filters outside the view are looked up; an unattached one is nothing of this node's.
    expect(fetched.sort()).toEqual(['gone', 'moved']);
    expect(removed.sort()).toEqual(['nwf-dept-unused', 'nwf-vm-gone', 'nwf-vm-moved-unattached']);
    expect(lv.interfacesOf(uuid, 'config')[0]!.filterref).toBeUndefined();
    expect(lv.interfacesOf(uuid, 'config')[1]!.filterref?.filter).toBe('nwf-vm-moved');
    expect((await lv.listFilters()).map((f) => f.name).sort()).toEqual(['nwf-dept-x', 'nwf-users-own', 'nwf-vm-broken', 'nwf-vm-moved']);
  });
});

describe('StatusReporter', () => {
  it('writes only when the object carries something else, and puts right a status another writer changed', async () => {
    const writes: unknown[] = [];
    const reporter = new StatusReporter('n', async (_n, _u, f) => void writes.push(f));
    const obj = { metadata: { name: 'a', uid: 'u', generation: 2 }, status: undefined as unknown };
    expect(await reporter.report(obj, { status: 'True', reason: 'Applied', message: 'ok', realized: { hash: 'h', generation: 2 } })).toBe(true);
    obj.status = writes[0];
    expect(await reporter.report(obj, { status: 'True', reason: 'Applied', message: 'ok', realized: { hash: 'h', generation: 2 } })).toBe(false);
    obj.status = { ...(writes[0] as object), nodeName: 'other' };
    expect(await reporter.report(obj, { status: 'True', reason: 'Applied', message: 'ok', realized: { hash: 'h', generation: 2 } })).toBe(true);
    expect(writes).toHaveLength(2);
  });
});

describe('Agent error handling', () => {
  async function setup() {
    const lv = new FakeLibvirt();
    const source = new MemoryPolicySource();
    const metrics = createMetrics();
    const agent = new Agent({ nodeName: 'n', source, status: source.sink(), libvirt: lv, log, metrics, resyncMs: 3_600_000, concurrency: 1, quarantine: true, gcDelayMs: 0 });
    lv.defineDomain({ name: 'd', interfaces: [{ mac: M1 }] });
    await agent.start();
    return { lv, source, agent, metrics };
  }
  const settle = async (agent: Agent) => {
    for (let i = 0; i < 200 && (agent.pending > 0 || i < 3); i++) {
      await new Promise((r) => setTimeout(r, 2));
      await agent.drain();
    }
  };

  it('a libvirt refusal is InvalidFilter and not retried; a disconnect changes no status and is retried after reconnecting', async () => {
    const { lv, source, agent } = await setup();
    try {
      lv.refused.add(vmFilterName('a'));
      source.put('VMFilter', { metadata: { name: 'a' }, spec: { domain: { name: 'd' } } });
      await settle(agent);
      expect(source.applied('a')).toMatchObject({ status: 'False', reason: 'InvalidFilter' });
      const defines = lv.calls.defineFilter;
      await settle(agent);
      expect(lv.calls.defineFilter).toBe(defines);
      // A new generation tries again.
      lv.refused.clear();
      source.put('VMFilter', { metadata: { name: 'a' }, spec: { domain: { name: 'd' }, parameters: { ip: ['10.0.0.9'] } } });
      await settle(agent);
      expect(source.applied('a')).toMatchObject({ status: 'True', reason: 'Applied' });
      const writes = source.statusWrites;
      lv.disconnect();
      source.put('VMFilter', { metadata: { name: 'a' }, spec: { domain: { name: 'd' }, parameters: { ip: ['10.0.0.8'] } } });
      await new Promise((r) => setTimeout(r, 50));
      expect(source.statusWrites).toBe(writes);
      lv.reconnect();
      await settle(agent);
      await new Promise((r) => setTimeout(r, 50));
      await settle(agent);
      expect(lv.interfacesOf(lv.listDomainsSync()[0]!.uuid, 'config')[0]!.filterref).toEqual({ filter: vmFilterName('a'), parameters: [{ name: 'IP', value: '10.0.0.8' }] });
    } finally {
      await agent.stop();
    }
  });

  it("never overwrites a user's filter that has the VM filter's name (another UUID): InvalidFilter, the user's filter untouched", async () => {
    const { lv, source, agent } = await setup();
    try {
      const users = `<filter name='${vmFilterName('mine')}' chain='root'><uuid>6b1f1a8e-8f8e-4c4b-9a0e-1d2c3b4a5f60</uuid><rule action='accept' direction='out' priority='1'><all/></rule></filter>`;
      await lv.defineFilter(users);
      source.put('VMFilter', { metadata: { name: 'mine' }, spec: { domain: { name: 'd' } } });
      await settle(agent);
      expect(source.applied('mine')).toMatchObject({ status: 'False', reason: 'InvalidFilter' });
      expect(lv.filterXmlSync(vmFilterName('mine'))).toBe(users);
      expect(lv.interfacesOf(lv.listDomainsSync()[0]!.uuid, 'config')[0]!.filterref).toBeUndefined();
    } finally {
      await agent.stop();
    }
  });

  it('quarantines a new domain whose VMFilter names a missing department, and lifts it when the department appears', async () => {
    const { lv, source, agent } = await setup();
    try {
      source.put('VMFilter', { metadata: { name: 'q' }, spec: { domain: { name: 'd' }, department: 'later' } });
      await settle(agent);
      expect(source.applied('q')).toMatchObject({ reason: 'Quarantined' });
      expect(lv.filterXmlSync(vmFilterName('q'))).toBe(quarantineFilter('q').xml);
      source.put('DepartmentPolicy', { metadata: { name: 'later' }, spec: {} });
      await settle(agent);
      expect(source.applied('q')).toMatchObject({ status: 'True', reason: 'Applied' });
      expect(lv.filterXmlSync(vmFilterName('q'))).toContain('nwf-dept-later');
    } finally {
      await agent.stop();
    }
  });
});
