import type { Logger } from 'pino';
import { setEntries, type AddressSet } from '../policy/index.js';
import type { Metrics } from '../runtime/metrics.js';

/** One kernel IP set as the kernel should hold it. */
export interface KernelSet {
  name: string;
  family: 4 | 6;
  type: 'hash:net' | 'hash:net,port';
  entries: readonly string[];
}

export interface KernelSetReport {
  created: string[];
  updated: string[];
  destroyed: string[];
  /** Sets not desired any more that the kernel keeps because iptables rules still use them. */
  inUse: string[];
}

/**
 * The kernel's IP sets, as the agent needs them: `sync` makes every desired set exist with exactly
 * its entries (atomically per set: a packet never meets a half-filled set) and, with
 * `destroyUnused`, removes the agent's sets (prefix nwf4-/nwf6-) nobody wants. src/netfilter/ is
 * the implementation over the `ipset` tool; tests use an in-memory one.
 */
export interface KernelSetPort {
  sync(desired: readonly KernelSet[], options: { destroyUnused: boolean }): Promise<KernelSetReport>;
}

export class AddressSetError extends Error {
  override name = 'AddressSetError';
}

/**
 * The IP sets of the VMs this agent protects. Each VM's compile names the sets its filter tree
 * matches and their members (VmCompiled.sets); the union of all of them is what the kernel holds.
 * A VM's sets are made to exist before its filters are defined (libvirt cannot instantiate a rule
 * on a set that does not exist), and an AddressGroup change updates set members only: no libvirt
 * filter is redefined for a membership change (docs/address-groups.md).
 *
 * Syncs run one at a time; a sync whose desired state equals the last one applied costs nothing.
 * Unused sets are removed only by `collect` (garbage collection, resync), never by a VM's sync:
 * while the agent starts, the VMs not reconciled yet still own their sets. The kernel refuses to
 * destroy a set that an iptables rule uses, so a VM that keeps its last filter (its VMFilter no
 * longer compiles) keeps its sets, with their last members.
 */
export class AddressSets {
  private readonly wanted = new Map<string, readonly AddressSet[]>();
  private lastDigest: string | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly port: KernelSetPort,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Records a VM's sets and brings the kernel up to date; resolves once the sets exist. */
  async want(vm: string, sets: readonly AddressSet[]): Promise<void> {
    if (sets.length === 0 && !this.wanted.has(vm)) return;
    if (sets.length === 0) this.wanted.delete(vm);
    else this.wanted.set(vm, sets);
    await this.sync(false);
  }

  /** The VM is gone: its sets are removed by the next collection (if nothing else wants them). */
  forget(vm: string): void {
    this.wanted.delete(vm);
  }

  /** VMs whose sets come from this group (to recompile them when the group changes). */
  usersOf(group: string): string[] {
    return [...this.wanted].filter(([, sets]) => sets.some((s) => s.group === group)).map(([vm]) => vm);
  }

  /** Every wanted set again (after a membership change), and unused ones removed. */
  async collect(): Promise<void> {
    await this.sync(true, true);
  }

  private desired(): KernelSet[] {
    const byName = new Map<string, KernelSet>();
    for (const sets of this.wanted.values()) {
      for (const s of sets) {
        if (!byName.has(s.name)) byName.set(s.name, { name: s.name, family: s.family, type: s.type, entries: setEntries(s).sort() });
      }
    }
    return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  private sync(force: boolean, destroyUnused = false): Promise<void> {
    const run = this.chain.then(async () => {
      const desired = this.desired();
      const digest = JSON.stringify(desired);
      if (!force && digest === this.lastDigest) return;
      const started = performance.now();
      try {
        const report = await this.port.sync(desired, { destroyUnused });
        this.lastDigest = digest;
        this.metrics.addressSetSyncs.inc({ result: 'ok' });
        this.metrics.addressSetEntries.set(desired.reduce((n, s) => n + s.entries.length, 0));
        const changed = report.created.length + report.updated.length + report.destroyed.length;
        if (changed > 0 || report.inUse.length > 0) {
          this.log.info({ ...report, ms: Math.round(performance.now() - started) }, 'kernel IP sets synced');
        }
      } catch (err) {
        this.lastDigest = undefined;
        this.metrics.addressSetSyncs.inc({ result: 'error' });
        throw new AddressSetError(`kernel IP sets: ${(err as Error)?.message ?? String(err)}`);
      }
    });
    // The chain goes on after a failure; the caller sees it.
    this.chain = run.catch(() => undefined);
    return run;
  }
}
