import type { Logger } from 'pino';
import { canonicalFilter, sha256Hex } from '../policy/index.js';
import type { Metrics } from '../runtime/metrics.js';
import { defineDeadlineMs } from './define-budget.js';
import type { AgentLibvirt } from './libvirt-port.js';

/** What the agent knows about a define before it is sent. */
export interface DefineContext {
  /** Running interfaces whose filter tree contains this filter: libvirt rebuilds each inside the define. */
  runningInterfaces: (name: string) => number;
}

/** Called before a define that will rebuild `interfaces` running interfaces (e.g. to say so in status). */
export type BeforeDefine = (name: string, interfaces: number) => Promise<void>;

/**
 * The agent's view of the nwfilters on its libvirtd. `ensure` defines a filter only when libvirt's
 * current definition differs from the desired one (compared in canonical form), so unchanged
 * filters are never redefined: redefining an attached filter makes libvirt rebuild the firewall of
 * every interface using it. Calls for one name are serialized, so concurrent VM reconciles that
 * share a department filter define it once.
 */
export class FilterStore {
  /** name -> hash of the canonical form libvirt is known to have ('unverified' after invalidate()). */
  private readonly known = new Map<string, string>();
  /**
   * Filters this agent has defined in its lifetime -> the hash it last wrote or read back. libvirt
   * holding anything else (or nothing) is drift; libvirt still holding it while the desired filter
   * changed is an ordinary update (a policy change), not drift.
   */
  private readonly ours = new Map<string, string>();
  private readonly chains = new Map<string, Promise<unknown>>();
  /**
   * Filters whose define got no answer (deadline passed, connection lost): libvirtd may still be
   * rebuilding the interfaces that use them. Until a read shows what libvirt has, nothing redefines
   * them; the read waits as long as the define could (libvirtd answers it once the define is done).
   */
  private readonly unsettled = new Map<string, number>();

  constructor(
    private readonly lv: AgentLibvirt,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly context: DefineContext = { runningInterfaces: () => 0 },
  ) {}

  private serialized<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.chains.set(name, tail);
    void tail.then(() => {
      if (this.chains.get(name) === tail) this.chains.delete(name);
    });
    return next;
  }

  /** Returns true when libvirt was written. */
  ensure(name: string, xml: string, beforeDefine?: BeforeDefine): Promise<boolean> {
    const desired = sha256Hex(canonicalFilter(xml));
    if (this.known.get(name) === desired) return Promise.resolve(false);
    return this.serialized(name, async () => {
      if (this.known.get(name) === desired) return false;
      const waitFor = this.unsettled.get(name);
      const current = await this.lv.filterXml(name, waitFor !== undefined ? { timeoutMs: waitFor } : {});
      this.unsettled.delete(name);
      const currentHash = current === undefined ? undefined : sha256Hex(canonicalFilter(current));
      if (currentHash === desired) {
        this.known.set(name, desired);
        if (this.ours.has(name)) this.ours.set(name, desired);
        return false;
      }
      const last = this.ours.get(name);
      if (last !== undefined && currentHash !== last) {
        this.metrics.driftRepairs.inc({ what: current === undefined ? 'filter-removed' : 'filter-modified' });
        this.log.warn({ filter: name, removed: current === undefined }, 'managed filter changed outside the operator; restoring');
      }
      const interfaces = this.context.runningInterfaces(name);
      const timeoutMs = defineDeadlineMs(interfaces);
      await beforeDefine?.(name, interfaces);
      try {
        await this.lv.defineFilter(xml, { timeoutMs });
      } catch (err) {
        if (this.lv.classify(err) === 'disconnected') this.unsettled.set(name, timeoutMs);
        throw err;
      }
      this.metrics.libvirtWrites.inc({ op: 'define' });
      this.known.set(name, desired);
      this.ours.set(name, desired);
      return true;
    });
  }

  /** Forget what libvirt is believed to have, so the next ensure re-reads it (drift detection). */
  invalidate(): void {
    // Keep `ours`: a mismatch after invalidation is then reported as drift.
    for (const name of this.known.keys()) this.known.set(name, 'unverified');
  }

  async undefine(name: string): Promise<void> {
    await this.serialized(name, async () => {
      await this.lv.undefineFilter(name);
      this.metrics.libvirtWrites.inc({ op: 'undefine' });
      this.known.delete(name);
      this.ours.delete(name);
    });
  }

  get size(): number {
    return this.known.size;
  }
}
