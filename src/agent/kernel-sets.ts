import { IpSetManager, type DesiredSet } from '../netfilter/index.js';
import { SET_PREFIX } from '../policy/index.js';
import type { KernelSetPort } from './address-sets.js';

/**
 * The agent's kernel sets through the ipset tool (src/netfilter). The manager makes the sets with
 * our prefix exactly the desired ones; a sync that must not remove anything (a VM's own, while other
 * VMs may not be reconciled yet) keeps every other set of ours as the kernel has it.
 */
export function ipsetKernelSets(manager = new IpSetManager()): KernelSetPort {
  return {
    async sync(desired, { destroyUnused }) {
      const want = new Map<string, DesiredSet>(desired.map((s) => [s.name, { family: s.family, type: s.type, members: s.entries }]));
      if (!destroyUnused) {
        for (const [name, k] of await manager.list(SET_PREFIX)) {
          // A `~` set is the manager's temporary one, left by an interrupted sync: it cleans those itself.
          if (!want.has(name) && !name.includes('~') && k.family && (k.type === 'hash:net' || k.type === 'hash:net,port')) {
            want.set(name, { family: k.family, type: k.type, members: k.members });
          }
        }
      }
      const r = await manager.sync(want, { prefix: SET_PREFIX });
      if (r.conflicts.length > 0) throw new Error(r.conflicts.map((c) => `${c.name}: ${c.reason}`).join('; '));
      return { created: r.created, updated: [...r.updated, ...r.recreated], destroyed: r.destroyed, inUse: r.inUse };
    },
  };
}
