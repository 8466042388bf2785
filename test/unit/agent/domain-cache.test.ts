import { describe, expect, it } from 'vitest';
import { DomainCache } from '../../../src/agent/domain-cache.js';
import type { DomainInfo } from '../../../src/agent/libvirt-port.js';

/** A listDomains whose answers the test releases one by one, answering with the domains of that moment. */
function heldLister(domains: DomainInfo[]) {
  const waiting: (() => void)[] = [];
  let calls = 0;
  return {
    domains,
    get calls() {
      return calls;
    },
    listDomains: () => {
      calls++;
      const snapshot = [...domains];
      return new Promise<DomainInfo[]>((resolve) => waiting.push(() => resolve(snapshot)));
    },
    releaseOne: async () => {
      waiting.shift()?.();
      await new Promise((r) => setImmediate(r));
    },
  };
}

const dom = (name: string): DomainInfo => ({ name, uuid: `00000000-0000-4000-8000-${name.padStart(12, '0')}`, active: false, persistent: true });

describe('DomainCache', () => {
  it('a refresh requested during a listing waits for a listing that started after it (no lost domain)', async () => {
    const lv = heldLister([dom('1')]);
    const cache = new DomainCache(lv);
    const first = cache.refresh();
    // A domain is defined while the first listing is in flight (its answer predates the domain).
    lv.domains.push(dom('2'));
    let secondDone = false;
    const second = cache.refresh().then(() => (secondDone = true));
    await lv.releaseOne();
    await first;
    expect(secondDone).toBe(false);
    expect(cache.find({ name: '2' })).toBeUndefined();
    await lv.releaseOne();
    await second;
    expect(cache.find({ name: '2' })?.name).toBe('2');
    expect(lv.calls).toBe(2);
  });

  it('refreshes requested during one listing share the next listing', async () => {
    const lv = heldLister([dom('1')]);
    const cache = new DomainCache(lv);
    const a = cache.refresh();
    const b = cache.refresh();
    const c = cache.refresh();
    await lv.releaseOne();
    await lv.releaseOne();
    await Promise.all([a, b, c]);
    expect(lv.calls).toBe(2);
  });

  it('finds by UUID case-insensitively, and by name; a failed listing rejects and the next one succeeds', async () => {
    let fail = true;
    const cache = new DomainCache({ listDomains: async () => (fail ? Promise.reject(new Error('down')) : [dom('7')]) });
    await expect(cache.refresh()).rejects.toThrow('down');
    expect(cache.loaded).toBe(false);
    fail = false;
    await cache.refresh();
    expect(cache.loaded).toBe(true);
    expect(cache.find({ uuid: dom('7').uuid.toUpperCase() })?.name).toBe('7');
    expect(cache.find({ name: '7' })?.uuid).toBe(dom('7').uuid);
    expect(cache.find({ name: 'nope' })).toBeUndefined();
  });
});
