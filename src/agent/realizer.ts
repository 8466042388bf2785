import type { Logger } from 'pino';
import { isManagedFilterName, type CompiledFilter, type InterfaceBinding } from '../policy/index.js';
import type { Metrics } from '../runtime/metrics.js';
import { RealizeError } from './errors.js';
import { FilterStore, type BeforeDefine, type DefineContext } from './filter-store.js';
import { domainInterfaces, interfaceXmlWithBinding, sameBinding, type DomainInterface } from './interfaces.js';
import type { AgentLibvirt, DomainInfo } from './libvirt-port.js';
import { ownedFilterUuid } from './ownership.js';

/** Where a domain's interfaces live: its persistent definition and/or its running instance. */
interface Target {
  live: boolean;
  config: boolean;
  inactive: boolean;
}

export function targetsOf(domain: DomainInfo): Target[] {
  return [
    ...(domain.persistent ? [{ live: false, config: true, inactive: true }] : []),
    ...(domain.active ? [{ live: true, config: false, inactive: false }] : []),
  ];
}

/** What binding a VM's filter to a domain achieved. */
export interface BindResult {
  /** Selected interfaces that carry the VM's filter now (the larger of config and live). */
  protectedCount: number;
  /** Selected interfaces left alone because they carry a filter that is not ours. */
  foreign: { mac: string | undefined; filter: string }[];
}

/**
 * Owns what is in libvirt: defines filter trees (through the FilterStore, which skips unchanged
 * filters), puts a VM's `<filterref>` on the interfaces selected for it and takes it off the ones
 * no longer selected. It never leaves an interface without a filter of ours that had one, except
 * in `unbind`, which callers use only when the user asked (VMFilter deleted or interface deselected).
 */
export class Realizer {
  readonly filters: FilterStore;
  /** VMFilter name -> key of the last verified binding (skips re-reading domain XML). */
  private readonly bound = new Map<string, { key: string; result: BindResult }>();

  constructor(
    private readonly libvirt: AgentLibvirt,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    defineContext?: DefineContext,
  ) {
    this.filters = new FilterStore(libvirt, metrics, log, defineContext);
  }

  /** Interfaces the VM's filter was last verified on (undefined: not bound by this process yet). */
  boundInterfaces(vmName: string): number | undefined {
    return this.bound.get(vmName)?.result.protectedCount;
  }

  private wrap<T>(op: string, fn: () => Promise<T>): Promise<T> {
    return fn().catch((err: unknown) => {
      throw err instanceof RealizeError ? err : new RealizeError(this.libvirt.classify(err), op, err);
    });
  }

  /** Defines the filters of a tree, referenced ones first; returns how many were written. */
  async ensureTree(filters: readonly CompiledFilter[], beforeDefine?: BeforeDefine): Promise<number> {
    let written = 0;
    for (const f of filters) if (await this.wrap(`define ${f.filter.name}`, () => this.filters.ensure(f.filter.name, f.xml, beforeDefine))) written++;
    this.metrics.managedFilters.set(this.filters.size);
    return written;
  }

  async interfaces(domain: DomainInfo, target: Target): Promise<DomainInterface[]> {
    return this.wrap(`read domain ${domain.name}`, async () => domainInterfaces(await this.libvirt.domainXml(domain.uuid, target.inactive)));
  }

  /** The binding of `filter` on the domain (config or live), if any interface carries it. */
  async carrying(domain: DomainInfo, filter: string): Promise<InterfaceBinding | undefined> {
    for (const t of targetsOf(domain)) {
      const found = (await this.interfaces(domain, t)).find((i) => i.filterref?.filter === filter);
      if (found) return found.filterref;
    }
    return undefined;
  }

  /** A filter name this operator may replace on an interface: one of our VM filters. */
  private async replaceable(filter: string, own: string): Promise<boolean> {
    if (filter === own) return true;
    if (!filter.startsWith('nwf-vm-')) return false;
    const xml = await this.wrap(`read filter ${filter}`, () => this.libvirt.filterXml(filter));
    // A filter that no longer exists was ours at some point (libvirt cannot start a domain with it).
    return xml === undefined || ownedFilterUuid(filter, xml);
  }

  /**
   * Puts `binding` on the selected interfaces (undefined selection = all), in the persistent
   * definition first and then the running instance, each only where it differs; removes it from
   * interfaces no longer selected. `cacheKey` identifies the inputs: an unchanged key skips the work.
   */
  async bind(vmName: string, domain: DomainInfo, binding: InterfaceBinding, selection: ReadonlySet<string> | undefined, cacheKey: string): Promise<BindResult> {
    const key = `${cacheKey}/${domain.uuid}/${domain.active}/${domain.persistent}`;
    const cached = this.bound.get(vmName);
    if (cached?.key === key) return cached.result;
    const result: BindResult = { protectedCount: 0, foreign: [] };
    for (const t of targetsOf(domain)) {
      let count = 0;
      for (const iface of await this.interfaces(domain, t)) {
        const selected = !selection || (iface.mac !== undefined && selection.has(iface.mac));
        const current = iface.filterref;
        if (!selected) {
          if (current?.filter === binding.filter) await this.update(domain, iface, undefined, t, 'deselected');
          continue;
        }
        if (sameBinding(current, binding)) {
          count++;
          continue;
        }
        if (current && !(await this.replaceable(current.filter, binding.filter))) {
          if (!result.foreign.some((f) => f.mac === iface.mac)) result.foreign.push({ mac: iface.mac, filter: current.filter });
          continue;
        }
        if (current?.filter === binding.filter && isManagedFilterName(current.filter)) this.metrics.driftRepairs.inc({ what: 'binding' });
        await this.update(domain, iface, binding, t, current ? 'replaced' : 'attached');
        count++;
      }
      result.protectedCount = Math.max(result.protectedCount, count);
    }
    this.bound.set(vmName, { key, result });
    return result;
  }

  /** Removes `filter` from every interface of the domain that carries it (the user asked). */
  async unbind(filter: string, domain: DomainInfo): Promise<void> {
    for (const t of targetsOf(domain)) {
      for (const iface of await this.interfaces(domain, t)) {
        if (iface.filterref?.filter === filter) await this.update(domain, iface, undefined, t, 'detached');
      }
    }
  }

  private async update(domain: DomainInfo, iface: DomainInterface, binding: InterfaceBinding | undefined, t: Target, what: string): Promise<void> {
    await this.wrap(`update interface ${iface.mac ?? '?'} of ${domain.name}`, () =>
      this.libvirt.updateDevice(domain.uuid, interfaceXmlWithBinding(iface, binding), { live: t.live, config: t.config }),
    );
    this.metrics.libvirtWrites.inc({ op: 'update-device' });
    this.log.info({ domain: domain.name, mac: iface.mac, live: t.live, filter: binding?.filter ?? iface.filterref?.filter }, `${what} filter`);
  }

  /** Undefines a filter if it exists; false when an interface or filter still uses it. */
  async undefine(name: string): Promise<boolean> {
    try {
      await this.wrap(`undefine ${name}`, () => this.filters.undefine(name));
      return true;
    } catch (err) {
      if (err instanceof RealizeError && err.kind === 'not-found') return true;
      if (err instanceof RealizeError && err.kind === 'in-use') return false;
      throw err;
    }
  }

  async exists(name: string): Promise<boolean> {
    return (await this.wrap(`read filter ${name}`, () => this.libvirt.filterXml(name))) !== undefined;
  }

  /** Forget the verified bindings: the next bind() re-reads the domain (events, resync). */
  forgetBinding(vmName?: string): void {
    if (vmName === undefined) this.bound.clear();
    else this.bound.delete(vmName);
  }

  /** Forget everything believed about libvirt, so drift shows up at the next pass. */
  invalidate(): void {
    this.bound.clear();
    this.filters.invalidate();
  }
}
