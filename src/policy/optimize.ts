import { cidrContains } from './ip.js';
import { instantiate, type RuleInstance } from './instantiate.js';
import type { Cidr, NwFilter, NwRule } from './model.js';
import { clampComment } from './rules.js';

/**
 * Fewer rules for libvirt to instantiate, with the same verdict for every packet.
 *
 * libvirt rebuilds the iptables chains of every bound interface whose tree contains a redefined
 * filter, inside the define call, with one iptables process per rule instance (instantiate.ts):
 * every rule we leave out is one to three processes less per interface and per redefinition.
 *
 * Each step below is exact on the model of libvirt's instances: for every packet (any family,
 * chain, protocol, address, port, conntrack state and direction) the first matching instance of
 * the optimized tree gives the same verdict as that of the unoptimized one
 * (test/unit/policy/optimize.test.ts checks this on random policies; test/packet/ holds the kernel
 * against it). Filters are shared (one department filter under many VM filters, one global filter
 * under all), and a department change must stay one define per node, so a filter is optimized on
 * its own content only, plus invariants every tree it can be part of has by construction (bands.ts):
 *
 * 1. Shadowed rules: a rule each of whose instances is matched in full by an instance of an
 *    earlier rule of the same filter (in the same chain) never decides anything, whatever lies
 *    between them, and is left out. E.g. a department that denies FTP (1024-65535) and also
 *    Redis (6379) in the same direction needs only the first deny.
 * 2. Adjacent or overlapping port ranges of rules of the same priority that differ in nothing else
 *    become one rule. Rules of one priority are contiguous in the flattened tree (bands are
 *    disjoint and per filter, and the compiler gives one priority one action), so the packets of
 *    both meet the merged rule with nothing in between that could decide otherwise.
 * 3. A department's default `drop` is left out: every tree that contains a department filter is
 *    rooted in a VM filter whose own default drop (priority 1000, same match) follows right after
 *    it, and no band lies between 900 and 1000. A `reject` default differs from that drop and is
 *    kept. The VM's default is never left out: it is what makes every chain fail closed even while
 *    its department is being redefined.
 */

export interface OptimizeStats {
  shadowed: number;
  merged: number;
  defaults: number;
}

/** Every address of `inner` lies in `outer`. */
function cidrCovers(outer: Cidr | undefined, inner: Cidr | undefined): boolean {
  if (outer === undefined) return true;
  if (inner === undefined) return false;
  return outer.prefix <= inner.prefix && cidrContains(outer, inner.address);
}

const rangeCovers = (outer: { start: number; end: number } | undefined, inner: { start: number; end: number } | undefined): boolean =>
  outer === undefined || (inner !== undefined && outer.start <= inner.start && inner.end <= outer.end);

/** Every packet `b` matches is matched by `a` (netfilter's match, as evaluate.ts reads it). */
export function instanceCovers(a: RuleInstance, b: RuleInstance): boolean {
  if (a.family !== b.family || a.chain !== b.chain) return false;
  if (a.protocol !== 'all' && a.protocol !== b.protocol) return false;
  if (!cidrCovers(a.source, b.source) || !cidrCovers(a.destination, b.destination)) return false;
  if (!rangeCovers(a.sport, b.sport) || !rangeCovers(a.dport, b.dport)) return false;
  if (a.icmpType !== undefined && a.icmpType !== b.icmpType) return false;
  if (a.icmpCode !== undefined && a.icmpCode !== b.icmpCode) return false;
  if (a.ctstate && !(b.ctstate && b.ctstate.every((s) => a.ctstate!.includes(s)))) return false;
  if (a.ctdir && a.ctdir !== b.ctdir) return false;
  // A set's members change at run time without a redefinition: only the same set, matched on the
  // same address, covers a set match whatever its members are.
  if (a.set && !(b.set && b.set.name === a.set.name && b.set.dir === a.set.dir)) return false;
  return true;
}

const instancesOf = (rule: NwRule, filter: string): RuleInstance[] => instantiate([{ rule, filter, order: 0 }]);

/** Everything but the port range: rules equal in this may merge their ranges. */
function mergeKey(r: NwRule): string | undefined {
  if (r.dstPortStart === undefined || r.icmpType !== undefined) return undefined;
  return JSON.stringify([r.priority, r.action, r.direction, r.protocol, r.src, r.dst, r.set ?? null, r.state ?? null, r.noStateMatch ?? false]);
}

function joinComments(a: string, b: string): string {
  return a === b || a.includes(b) ? a : clampComment(`${a}; ${b}`);
}

const startOf = (r: NwRule): number => r.dstPortStart!;
const endOf = (r: NwRule): number => r.dstPortEnd ?? r.dstPortStart!;

/**
 * Step 2 on rules sorted by priority: within each priority, the rules of one merge key whose
 * ranges overlap or touch become one rule in the place of the first of them.
 */
function mergeRanges(rules: readonly NwRule[]): { rules: NwRule[]; merged: number } {
  const out: NwRule[] = [];
  let merged = 0;
  for (let i = 0; i < rules.length; ) {
    let j = i;
    while (j < rules.length && rules[j]!.priority === rules[i]!.priority) j++;
    const block = rules.slice(i, j);
    i = j;
    // A priority whose rules do not all share one action is left alone (the compiler never emits one).
    if (new Set(block.map((r) => r.action)).size > 1) {
      out.push(...block);
      continue;
    }
    const groups = new Map<string, number[]>();
    block.forEach((r, k) => {
      const key = mergeKey(r);
      if (key !== undefined) groups.set(key, [...(groups.get(key) ?? []), k]);
    });
    // Block index -> the merged rule that takes its place, or null when it was merged into another.
    const replaced = new Map<number, NwRule | null>();
    for (const members of groups.values()) {
      const byStart = [...members].sort((a, b) => startOf(block[a]!) - startOf(block[b]!) || a - b);
      let run: number[] = [];
      let end = -Infinity;
      const flush = (): void => {
        if (run.length > 1) {
          const inOrder = [...run].sort((a, b) => a - b);
          const first = block[inOrder[0]!]!;
          const comment = inOrder.slice(1).reduce((c, k) => joinComments(c, block[k]!.comment), first.comment);
          replaced.set(inOrder[0]!, { ...first, dstPortStart: Math.min(...run.map((k) => startOf(block[k]!))), dstPortEnd: end, comment });
          for (const k of inOrder.slice(1)) replaced.set(k, null);
          merged += run.length - 1;
        }
        run = [];
        end = -Infinity;
      };
      for (const k of byStart) {
        if (run.length > 0 && startOf(block[k]!) > end + 1) flush();
        run.push(k);
        end = Math.max(end, endOf(block[k]!));
      }
      flush();
    }
    block.forEach((r, k) => {
      const x = replaced.get(k);
      if (x === undefined) out.push(r);
      else if (x !== null) out.push(x);
    });
  }
  return { rules: out, merged };
}

/** Step 1: drops rules whose every instance an earlier kept rule's instance covers. */
function dropShadowed(rules: readonly NwRule[], filter: string): { rules: NwRule[]; shadowed: number } {
  const kept: NwRule[] = [];
  const keptInstances: RuleInstance[] = [];
  let shadowed = 0;
  for (const rule of rules) {
    const mine = instancesOf(rule, filter);
    // Coverage by rules removed earlier implies coverage by the kept rules that covered them.
    if (mine.length > 0 && mine.every((b) => keptInstances.some((a) => instanceCovers(a, b)))) {
      shadowed++;
      continue;
    }
    kept.push(rule);
    keptInstances.push(...mine);
  }
  return { rules: kept, shadowed };
}

/** The optimized filter (rules still sorted by priority) and what was done. */
export function optimizeFilterWithStats(filter: NwFilter): { filter: NwFilter; stats: OptimizeStats } {
  let rules = filter.rules;
  let defaults = 0;
  if (filter.level === 'department') {
    const before = rules.length;
    rules = rules.filter((r) => !(r.origin.kind === 'default' && r.action === 'drop'));
    defaults = before - rules.length;
  }
  const m = mergeRanges(rules);
  const s = dropShadowed(m.rules, filter.name);
  return { filter: { ...filter, rules: s.rules }, stats: { shadowed: s.shadowed, merged: m.merged, defaults } };
}

export function optimizeFilter(filter: NwFilter): NwFilter {
  return optimizeFilterWithStats(filter).filter;
}

