/**
 * Kernel IP sets the agent keeps for address groups and peer selectors, so that a membership change
 * is one `ipset` batch and touches no libvirt filter (docs/address-sets.md).
 *
 * Over the `ipset` command-line tool (Debian package `ipset`): npm has no maintained library for the
 * ipset netlink protocol (NFNL_SUBSYS_IPSET), and writing one would buy little, since a whole sync is
 * one `ipset save` and at most one `ipset restore` process.
 *
 * Every change of members is atomic for packets: the new members go into a temporary set, which is
 * then swapped with the live one (`ipset swap` exchanges the two under their names; iptables rules
 * that reference the live name see the new members at once, measured also while referenced) and
 * destroyed. A packet never meets a half-filled set, as it would with flush + add.
 */
import { randomBytes } from 'node:crypto';
import { IpSetCommandError, InvalidMemberError } from './errors.js';
import { checkSetName, MAX_SET_NAME, normalizeMember, normalizeMembers, SET_TYPES, type SetFamily, type SetType } from './members.js';
import { spawnRunner, type CommandRunner } from './runner.js';

export interface DesiredSet {
  family: SetFamily;
  members: readonly string[];
  /** Default hash:net. */
  type?: SetType;
}

/** A set as `ipset save` shows it. */
export interface KernelSet {
  name: string;
  /** e.g. hash:net; any type, also ones this module does not create. */
  type: string;
  family?: SetFamily;
  maxelem?: number;
  /** Creation options besides family, hashsize, maxelem, bucketsize and initval (e.g. `timeout 60`, `counters`). */
  extraOptions: string[];
  /** Canonical (normalizeMember) where the type is one of ours, sorted; an element with options keeps them. */
  members: string[];
}

export interface SyncOptions {
  /** Only sets whose name starts with it are ours: created, compared and destroyed. At most 24 characters. */
  prefix: string;
}

export interface SyncResult {
  created: string[];
  /** Members replaced (temporary set, swap). */
  updated: string[];
  /** Destroyed and created again: its type, family or options differed (a swap needs equal types). */
  recreated: string[];
  unchanged: string[];
  destroyed: string[];
  /**
   * Not desired, but referenced by a kernel component (an iptables rule of a filter not yet
   * redefined): left in place, tried again by the next sync.
   */
  inUse: string[];
  /** Desired sets that could not be made right, with the reason (a referenced set of another type). */
  conflicts: Array<{ name: string; reason: string }>;
  /** ipset processes this sync ran. */
  processes: number;
}

/** Temporary sets are `<prefix>~<6 hex>`: '~' is outside what libvirt accepts, so no filter names one. */
const TEMP_MARK = '~';
const TEMP_SUFFIX = 7;
export const MAX_PREFIX = MAX_SET_NAME - TEMP_SUFFIX;
const DEFAULT_MAXELEM = 65_536;
const IN_USE = /in use by a kernel component/i;
const ERROR_LINE = /Error in line (\d+):/;
/** Options of a create line that say nothing about what a set matches. */
const SIZING = new Set(['hashsize', 'maxelem', 'bucketsize', 'initval', 'family']);

/** Parses `ipset save` (all sets, or the lines of some). */
export function parseSave(text: string): Map<string, KernelSet> {
  const sets = new Map<string, KernelSet>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const [verb, name, ...rest] = line.split(/\s+/);
    if (!name) continue;
    if (verb === 'create') {
      const [type = '', ...opts] = rest;
      const set: KernelSet = { name, type, extraOptions: [], members: [] };
      for (let i = 0; i < opts.length; i++) {
        const key = opts[i]!;
        const value = opts[i + 1];
        if (key === 'family' && (value === 'inet' || value === 'inet6')) set.family = value === 'inet' ? 4 : 6;
        else if (key === 'maxelem' && value) set.maxelem = Number(value);
        else if (!SIZING.has(key)) {
          // An option with a value (timeout 60) or a flag (counters): kept as written.
          const hasValue = value !== undefined && /^[0-9a-fx]+$/i.test(value);
          set.extraOptions.push(hasValue ? `${key} ${value}` : key);
          if (hasValue) i++;
          continue;
        }
        i++;
      }
      sets.set(name, set);
    } else if (verb === 'add') {
      const set = sets.get(name);
      if (!set) continue;
      const [element = '', ...opts] = rest;
      set.members.push(opts.length ? `${canonical(element, set)} ${opts.join(' ')}` : canonical(element, set));
    }
  }
  for (const set of sets.values()) set.members.sort();
  return sets;
}

/** An element in our canonical spelling when it is of a type we know, else as ipset printed it. */
function canonical(element: string, set: KernelSet): string {
  if (!set.family || !(SET_TYPES as readonly string[]).includes(set.type)) return element;
  try {
    const [one, ...more] = normalizeMember(element, set.family, set.type as SetType);
    return one !== undefined && more.length === 0 ? one : element;
  } catch {
    return element;
  }
}

const sameMembers = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((m, i) => m === b[i]);

interface Wanted {
  name: string;
  type: SetType;
  family: SetFamily;
  elements: string[];
}

/** A run of batch lines that may fail as a whole with "in use" at its first line, a `destroy`. */
interface RiskyGroup {
  name: string;
  lines: string[];
  /** What the sync did when the group ran through. */
  done: 'destroyed' | 'recreated';
}

export interface IpSetManagerOptions {
  runner?: CommandRunner;
  /** Default `ipset` (from PATH). */
  binary?: string;
}

export class IpSetManager {
  private readonly run: CommandRunner;
  private readonly binary: string;
  /** ipset processes started so far (a sync reports its own share). */
  private processes = 0;
  /** The last sync: syncs run one at a time, each one lists what the one before left. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(options: IpSetManagerOptions = {}) {
    this.run = options.runner ?? spawnRunner();
    this.binary = options.binary ?? 'ipset';
  }

  /** The sets whose names start with `prefix`, from one `ipset save`. */
  async list(prefix: string): Promise<Map<string, KernelSet>> {
    const all = parseSave(await this.command(['save']));
    return new Map([...all].filter(([name]) => name.startsWith(prefix)));
  }

  /**
   * Makes the sets with `prefix` exactly `desired`: creates missing sets, swaps in new members of
   * changed ones, leaves equal ones alone (then the `ipset save` is the only process) and destroys
   * the others, tolerating those still referenced (`inUse`). Everything is checked before any
   * command runs: an invalid name or member throws InvalidMemberError and changes nothing.
   * Everything else is one `ipset restore`, plus one more per referenced set it had to skip.
   */
  sync(desired: ReadonlyMap<string, DesiredSet>, options: SyncOptions): Promise<SyncResult> {
    const run = this.tail.then(() => this.syncNow(desired, options));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async syncNow(desired: ReadonlyMap<string, DesiredSet>, options: SyncOptions): Promise<SyncResult> {
    const { prefix } = options;
    if (!/^[a-zA-Z0-9_.:+-]+$/.test(prefix) || prefix.length > MAX_PREFIX) {
      throw new InvalidMemberError(`IP set prefix "${prefix}": 1-${MAX_PREFIX} of [a-zA-Z0-9_.:+-] (a temporary set appends ${TEMP_SUFFIX})`);
    }
    const wanted: Wanted[] = [];
    for (const [name, d] of desired) {
      checkSetName(name);
      if (!name.startsWith(prefix)) throw new InvalidMemberError(`IP set "${name}" does not start with the prefix "${prefix}"`);
      if (d.family !== 4 && d.family !== 6) throw new InvalidMemberError(`IP set "${name}": family must be 4 or 6`);
      const type = d.type ?? 'hash:net';
      if (!SET_TYPES.includes(type)) throw new InvalidMemberError(`IP set "${name}": type must be one of ${SET_TYPES.join(', ')}`);
      try {
        wanted.push({ name, type, family: d.family, elements: normalizeMembers(d.members, d.family, type) });
      } catch (err) {
        throw new InvalidMemberError(`IP set "${name}": ${(err as Error).message}`);
      }
    }

    const result: SyncResult = { created: [], updated: [], recreated: [], unchanged: [], destroyed: [], inUse: [], conflicts: [], processes: 0 };
    const before = this.processes;
    const current = await this.list(prefix);
    const taken = new Set(current.keys());
    const temp = (): string => {
      let name: string;
      do name = `${prefix}${TEMP_MARK}${randomBytes(3).toString('hex')}`;
      while (taken.has(name));
      taken.add(name);
      return name;
    };
    const main: string[] = [];
    const risky: RiskyGroup[] = [];
    const fill = (name: string, w: Wanted): string[] => [
      `create ${name} ${w.type} family ${w.family === 4 ? 'inet' : 'inet6'} maxelem ${Math.max(DEFAULT_MAXELEM, w.elements.length)}`,
      ...w.elements.map((e) => `add ${name} ${e}`),
    ];
    for (const w of wanted) {
      const cur = current.get(w.name);
      if (!cur) {
        main.push(...fill(w.name, w));
        result.created.push(w.name);
      } else if (cur.type === w.type && cur.family === w.family && cur.extraOptions.length === 0) {
        if (sameMembers(cur.members, w.elements)) {
          result.unchanged.push(w.name);
        } else {
          const t = temp();
          main.push(...fill(t, w), `swap ${t} ${w.name}`, `destroy ${t}`);
          result.updated.push(w.name);
        }
      } else {
        risky.push({ name: w.name, lines: [`destroy ${w.name}`, ...fill(w.name, w)], done: 'recreated' });
      }
    }
    // What is left: sets of the prefix no longer desired, and temporary sets of a sync that died.
    for (const name of current.keys()) if (!desired.has(name)) risky.push({ name, lines: [`destroy ${name}`], done: 'destroyed' });

    await this.restore(main, risky, result);
    result.processes = this.processes - before;
    return result;
  }

  /** Runs `ipset <args>`; stdout, or IpSetCommandError with its stderr. */
  private async command(args: string[], input?: string): Promise<string> {
    const argv = [this.binary, ...args];
    this.processes++;
    let r;
    try {
      r = await this.run(argv, input);
    } catch (err) {
      throw new IpSetCommandError(argv, null, `${(err as Error).message}${(err as NodeJS.ErrnoException).code === 'ENOENT' ? ' (install the ipset package)' : ''}`);
    }
    if (r.exitCode !== 0) {
      const line = ERROR_LINE.exec(r.stderr)?.[1];
      throw new IpSetCommandError(argv, r.exitCode, r.stderr, line === undefined ? undefined : Number(line));
    }
    return r.stdout;
  }

  /**
   * One `ipset restore` of the main lines followed by the risky groups. restore stops at the first
   * failing line, with what came before applied: a group whose leading `destroy` is refused because
   * the set is in use is skipped, and the lines after it go in the next process.
   */
  private async restore(main: string[], risky: RiskyGroup[], result: SyncResult): Promise<void> {
    let lines = [...main];
    let groups = risky;
    const groupAt = (index: number, offset: number): { group: RiskyGroup; at: number } | undefined => {
      let at = offset;
      for (const group of groups) {
        if (index >= at && index < at + group.lines.length) return { group, at };
        at += group.lines.length;
      }
      return undefined;
    };
    for (;;) {
      const all = [...lines, ...groups.flatMap((g) => g.lines)];
      if (all.length === 0) return;
      try {
        await this.command(['restore'], `${all.join('\n')}\n`);
        for (const g of groups) (g.done === 'destroyed' ? result.destroyed : result.recreated).push(g.name);
        return;
      } catch (err) {
        if (!(err instanceof IpSetCommandError) || err.line === undefined) throw err;
        const index = err.line - 1;
        const hit = groupAt(index, lines.length);
        // Only a refused leading destroy is expected; anything else is a real failure.
        if (!hit || index !== hit.at || !IN_USE.test(err.stderr)) throw err;
        const position = groups.indexOf(hit.group);
        for (const g of groups.slice(0, position)) (g.done === 'destroyed' ? result.destroyed : result.recreated).push(g.name);
        if (hit.group.done === 'destroyed') result.inUse.push(hit.group.name);
        else result.conflicts.push({ name: hit.group.name, reason: `exists with another type, family or options and is in use: ${err.stderr.trim()}` });
        lines = [];
        groups = groups.slice(position + 1);
      }
    }
  }
}
