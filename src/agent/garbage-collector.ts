import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { vmFilterName, vmFilterOfName } from '../policy/index.js';
import type { Metrics } from '../runtime/metrics.js';
import { decide, type DecisionContext } from './desired-state.js';
import type { DomainCache } from './domain-cache.js';
import { RealizeError } from './errors.js';
import { filterRefsOf } from './refs.js';
import type { AgentLibvirt, DomainInfo } from './libvirt-port.js';
import { isOwnedFilter } from './ownership.js';
import { targetsOf, type Realizer } from './realizer.js';

/**
 * Removes filters of ours that nothing on this node needs any more. Conservative by construction:
 * - only filters whose UUID is the one we derive from their name are candidates (ownership.ts);
 * - a VM filter is kept while any VMFilter object of that name exists (valid or not: an object
 *   stored under a looser CRD still protects its domain) unless the object is positively someone
 *   else's now (not pinned here, domain not here) AND no interface here carries the filter;
 * - a VM filter whose VMFilter is gone is detached first (deleting the VMFilter is the user's
 *   explicit "unprotect") and then undefined. "Gone" is what the API server says, never the
 *   agent's view alone: the view holds only this node's VMFilters, and one re-pinned elsewhere
 *   may still name a filter on an interface here (it stays until a GET answers 404);
 * - everything a kept filter references (as libvirt has it) is kept.
 */
export class GarbageCollector {
  constructor(
    private readonly o: {
      libvirt: AgentLibvirt;
      realizer: Realizer;
      domains: DomainCache;
      /** The VMFilters of this node's view. */
      vmFilters: () => readonly KubernetesObject[];
      /** Reads one VMFilter from the API server (undefined: it does not exist). */
      fetchVmFilter: (name: string) => Promise<KubernetesObject | undefined>;
      /** VMFilter names this agent has seen (to name the VMFilter of a shortened filter name). */
      knownVmFilterNames: () => Iterable<string>;
      decision: DecisionContext;
      log: Logger;
      metrics: Metrics;
    },
  ) {}

  /** filter name -> domains of this node with an interface (config or live) carrying it. */
  private async attachments(): Promise<Map<string, DomainInfo[]>> {
    const out = new Map<string, DomainInfo[]>();
    for (const d of this.o.domains.all()) {
      for (const t of targetsOf(d)) {
        for (const i of await this.interfacesOrNone(d, t)) {
          if (!i.filterref) continue;
          const list = out.get(i.filterref.filter) ?? [];
          if (!list.includes(d)) list.push(d);
          out.set(i.filterref.filter, list);
        }
      }
    }
    return out;
  }

  /** A domain that vanished since the listing has no interfaces; any other failure aborts the pass. */
  private async interfacesOrNone(d: DomainInfo, t: ReturnType<typeof targetsOf>[number]) {
    try {
      return await this.o.realizer.interfaces(d, t);
    } catch (err) {
      if (err instanceof RealizeError && err.kind === 'not-found') return [];
      throw err;
    }
  }

  /**
   * A filter on an interface here whose VMFilter is not in this node's view: 'gone' only when the
   * API server says so (a GET answers 404, or the object is being deleted); 'kept' when it exists
   * elsewhere or its VMFilter cannot be named. A failed GET aborts the pass (retried later).
   */
  private async outsideView(filter: string): Promise<'gone' | 'kept'> {
    const vmName = this.vmFilterOf(filter);
    if (vmName === undefined) {
      this.o.log.warn({ filter }, 'cannot name the VMFilter of an attached filter; it stays');
      return 'kept';
    }
    const obj = await this.o.fetchVmFilter(vmName);
    return !obj || obj.metadata?.deletionTimestamp ? 'gone' : 'kept';
  }

  /** The VMFilter a VM filter name belongs to: derived when the name was not shortened, else from the names seen. */
  private vmFilterOf(filter: string): string | undefined {
    const derived = vmFilterOfName(filter);
    if (derived !== undefined) return derived;
    for (const n of this.o.knownVmFilterNames()) if (vmFilterName(n) === filter) return n;
    return undefined;
  }

  /** Returns the names of the filters it undefined. */
  async collect(): Promise<string[]> {
    const owned = (await this.o.libvirt.listFilters()).filter(isOwnedFilter).map((f) => f.name);
    const objects = new Map<string, KubernetesObject>();
    for (const obj of this.o.vmFilters()) if (!obj.metadata?.deletionTimestamp) objects.set(vmFilterName(obj.metadata!.name!), obj);
    const attached = await this.attachments();
    const roots = new Set<string>();
    const detachFirst: string[] = [];
    for (const name of owned) {
      if (attached.has(name) && !name.startsWith('nwf-vm-')) roots.add(name);
      if (!name.startsWith('nwf-vm-')) continue;
      const obj = objects.get(name);
      if (!obj) {
        // Not carried by an interface here: nothing of this node needs it, whoever owns it now.
        if (!attached.has(name)) continue;
        if ((await this.outsideView(name)) === 'gone') detachFirst.push(name);
        else roots.add(name);
        continue;
      }
      const d = decide(obj, this.o.decision);
      const released = (d.kind === 'elsewhere' || d.kind === 'conflict') && !attached.has(name);
      if (!released) roots.add(name);
    }
    const keep = new Set<string>();
    const visit = async (name: string): Promise<void> => {
      if (keep.has(name)) return;
      keep.add(name);
      const xml = await this.o.libvirt.filterXml(name);
      if (xml) for (const ref of filterRefsOf(xml)) await visit(ref);
    };
    for (const r of roots) await visit(r);
    for (const name of detachFirst) {
      for (const d of attached.get(name) ?? []) await this.o.realizer.unbind(name, d);
      this.o.log.info({ filter: name }, 'VMFilter is gone: detached its filter');
    }
    const orphans = owned.filter((n) => !keep.has(n));
    // VM filters first, then department filters, the global filter last: undefine never hits "in use".
    const rank = (n: string): number => (n.startsWith('nwf-vm-') ? 0 : n.startsWith('nwf-dept-') ? 1 : 2);
    orphans.sort((a, b) => rank(a) - rank(b));
    const removed: string[] = [];
    for (const name of orphans) {
      if (await this.o.realizer.undefine(name)) {
        removed.push(name);
        this.o.log.info({ filter: name }, 'removed orphaned filter');
      } else {
        this.o.log.warn({ filter: name }, 'orphaned filter still in use; will retry at the next collection');
      }
    }
    this.o.metrics.managedFilters.set(owned.length - removed.length);
    return removed;
  }
}
