import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { DEFINE_BASE_MS, DEFINE_PER_INTERFACE_MS, defineDeadlineMs } from '../../../src/agent/define-budget.js';
import { FilterStore } from '../../../src/agent/filter-store.js';
import { filterUuid } from '../../../src/policy/names.js';
import { createMetrics } from '../../../src/runtime/metrics.js';
import { FakeLibvirt } from '../../helpers/fake-libvirt.js';

const log = pino({ level: 'silent' });
const xml = (port: number) =>
  `<filter name='nwf-dept-eng' chain='root'><uuid>${filterUuid('nwf-dept-eng')}</uuid><rule action='accept' direction='in' priority='100'><tcp dstportstart='${port}'/></rule></filter>`;

describe('defines of filters that running interfaces use', () => {
  it('get a deadline that grows with the running interfaces libvirt rebuilds inside the call', async () => {
    const lv = new FakeLibvirt();
    const announced: [string, number][] = [];
    const store = new FilterStore(lv, createMetrics(), log, { runningInterfaces: (name) => (name === 'nwf-dept-eng' ? 50 : 0) });
    expect(await store.ensure('nwf-dept-eng', xml(22), async (name, n) => void announced.push([name, n]))).toBe(true);
    expect(lv.deadlines.filter((d) => d.op === 'defineFilter')).toEqual([{ op: 'defineFilter', timeoutMs: DEFINE_BASE_MS + 50 * DEFINE_PER_INTERFACE_MS }]);
    expect(announced).toEqual([['nwf-dept-eng', 50]]);
    expect(defineDeadlineMs(0)).toBe(DEFINE_BASE_MS);
  });

  it('are not sent again after a define that got no answer but took effect: the next read waits as long as the define could', async () => {
    const lv = new FakeLibvirt();
    const store = new FilterStore(lv, createMetrics(), log, { runningInterfaces: () => 10 });
    await store.ensure('nwf-dept-eng', xml(22));
    // libvirtd is still rebuilding 10 interfaces when the deadline passes; the define completes later.
    lv.failNext('defineFilter', 'disconnected', { afterEffect: true });
    await expect(store.ensure('nwf-dept-eng', xml(23))).rejects.toThrow(/injected/);
    lv.deadlines.length = 0;
    expect(await store.ensure('nwf-dept-eng', xml(23))).toBe(false);
    expect(lv.deadlines).toEqual([{ op: 'filterXml', timeoutMs: defineDeadlineMs(10) }]);
  });

  it('are sent again when the read shows that the unanswered define did not take effect', async () => {
    const lv = new FakeLibvirt();
    const store = new FilterStore(lv, createMetrics(), log, { runningInterfaces: () => 1 });
    await store.ensure('nwf-dept-eng', xml(22));
    lv.failNext('defineFilter', 'disconnected');
    await expect(store.ensure('nwf-dept-eng', xml(23))).rejects.toThrow(/injected/);
    expect(await store.ensure('nwf-dept-eng', xml(23))).toBe(true);
    expect(lv.filterXmlSync('nwf-dept-eng')).toContain("dstportstart='23'");
  });
});
