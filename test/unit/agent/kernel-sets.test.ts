import { describe, expect, it } from 'vitest';
import { ipsetKernelSets } from '../../../src/agent/kernel-sets.js';
import type { DesiredSet, IpSetManager, KernelSet, SyncResult } from '../../../src/netfilter/index.js';

/** The manager's surface the adapter uses, recording what it was asked to make of the kernel. */
function fakeManager(existing: KernelSet[]) {
  const calls: Map<string, DesiredSet>[] = [];
  const manager = {
    list: async () => new Map(existing.map((k) => [k.name, k])),
    sync: async (desired: ReadonlyMap<string, DesiredSet>): Promise<SyncResult> => {
      calls.push(new Map(desired));
      return { created: [], updated: [], recreated: [], unchanged: [], destroyed: [], inUse: [], conflicts: [], processes: 1 };
    },
  };
  return { manager: manager as unknown as IpSetManager, calls };
}

const kernelSet = (name: string): KernelSet => ({ name, type: 'hash:net', family: 4, extraOptions: [], members: ['10.0.0.0/8'] });

describe('the agent adapter over the ipset manager', () => {
  it('a VM sync keeps the other sets of ours as the kernel has them, but never a temporary one an interrupted sync left', async () => {
    const { manager, calls } = fakeManager([kernelSet('nwf:4-other'), kernelSet('nwf:~df0a35')]);
    await ipsetKernelSets(manager).sync([{ name: 'nwf:4-mine', family: 4, type: 'hash:net', entries: ['10.1.0.0/16'] }], { destroyUnused: false });
    expect([...calls[0]!.keys()].sort()).toEqual(['nwf:4-mine', 'nwf:4-other']);
    expect(calls[0]!.get('nwf:4-other')!.members).toEqual(['10.0.0.0/8']);
  });

  it('a collection asks for exactly the desired sets', async () => {
    const { manager, calls } = fakeManager([kernelSet('nwf:4-other')]);
    await ipsetKernelSets(manager).sync([{ name: 'nwf:4-mine', family: 4, type: 'hash:net', entries: [] }], { destroyUnused: true });
    expect([...calls[0]!.keys()]).toEqual(['nwf:4-mine']);
  });
});
