import { describe, expect, it } from 'vitest';
import { FilterStore } from '../../../src/agent/filter-store.js';
import type { AgentLibvirt } from '../../../src/agent/libvirt-port.js';
import { silentLogger } from '../../../src/runtime/logger.js';
import { createMetrics } from '../../../src/runtime/metrics.js';

const filter = (port: number) => `<filter name='nwf-dept-x' chain='root'><uuid>0b6ee1a8-6b6a-5c43-8c1c-7d1fd3bb4a1e</uuid>
<rule action='accept' direction='in' priority='-500'><tcp dstportstart='${port}'/></rule></filter>`;

/** An in-memory libvirtd: only the filter calls FilterStore makes. */
function fakeLibvirt() {
  const filters = new Map<string, string>();
  const lv = {
    filterXml: async (name: string) => filters.get(name),
    defineFilter: async (xml: string) => void filters.set(/name='([^']+)'/.exec(xml)![1]!, xml),
    undefineFilter: async (name: string) => void filters.delete(name),
  } as Partial<AgentLibvirt> as AgentLibvirt;
  return { lv, filters };
}

async function counters(metrics: ReturnType<typeof createMetrics>) {
  const value = async (c: typeof metrics.driftRepairs | typeof metrics.libvirtWrites) => (await c.get()).values.reduce((n, v) => n + v.value, 0);
  return { drift: await value(metrics.driftRepairs), writes: await value(metrics.libvirtWrites) };
}

describe('FilterStore', () => {
  it('a changed desired filter is an update, not drift: libvirt still has what the agent wrote', async () => {
    const { lv, filters } = fakeLibvirt();
    const metrics = createMetrics({ defaultMetrics: false });
    const store = new FilterStore(lv, metrics, silentLogger);
    expect(await store.ensure('nwf-dept-x', filter(22))).toBe(true);
    expect(await store.ensure('nwf-dept-x', filter(22))).toBe(false);
    expect(await store.ensure('nwf-dept-x', filter(2222))).toBe(true);
    // Also after a resync (invalidate): the previous definition is still the agent's own.
    store.invalidate();
    expect(await store.ensure('nwf-dept-x', filter(8022))).toBe(true);
    expect(filters.get('nwf-dept-x')).toBe(filter(8022));
    expect(await counters(metrics)).toEqual({ drift: 0, writes: 3 });
  });

  it('a filter changed or removed outside the agent is drift, found after a resync, and restored', async () => {
    const { lv, filters } = fakeLibvirt();
    const metrics = createMetrics({ defaultMetrics: false });
    const store = new FilterStore(lv, metrics, silentLogger);
    await store.ensure('nwf-dept-x', filter(22));
    filters.set('nwf-dept-x', filter(23));
    // Unverified, the store trusts its cache: no read, no write.
    expect(await store.ensure('nwf-dept-x', filter(22))).toBe(false);
    store.invalidate();
    expect(await store.ensure('nwf-dept-x', filter(22))).toBe(true);
    expect(filters.get('nwf-dept-x')).toBe(filter(22));
    filters.delete('nwf-dept-x');
    store.invalidate();
    expect(await store.ensure('nwf-dept-x', filter(22))).toBe(true);
    expect((await metrics.driftRepairs.get()).values.map((v) => [v.labels.what, v.value])).toEqual([
      ['filter-modified', 1],
      ['filter-removed', 1],
    ]);
  });

  it('a filter that libvirt already has as desired is adopted without a write, and is not drift', async () => {
    const { lv, filters } = fakeLibvirt();
    filters.set('nwf-dept-x', filter(22));
    const metrics = createMetrics({ defaultMetrics: false });
    const store = new FilterStore(lv, metrics, silentLogger);
    expect(await store.ensure('nwf-dept-x', filter(22))).toBe(false);
    // Not defined by this agent: a first different definition is an update.
    expect(await store.ensure('nwf-dept-x', filter(80))).toBe(true);
    expect(await counters(metrics)).toEqual({ drift: 0, writes: 1 });
  });
});
