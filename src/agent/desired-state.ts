import type { KubernetesObject } from '@kubernetes/client-node';
import type { VMFilter } from '../api/index.js';
import { CONDITION, REASON } from '../controller/status.js';
import { findCondition, parseObject } from '../kube/index.js';
import type { DomainCache } from './domain-cache.js';
import type { DomainInfo } from './libvirt-port.js';

/** Opting a VMFilter out of the quarantine (docs/status.md): `nwfilter.infinibay.io/quarantine: "false"`. */
export const QUARANTINE_ANNOTATION = 'nwfilter.infinibay.io/quarantine';

/**
 * What this node's agent should do about one VMFilter, decided from the object, the domains on
 * this node and the other VMFilters. Pure: the realizer carries it out, the status reporter
 * describes it. `reportStatus` says whether this node's agent owns the `Applied` condition now:
 * the agent that has the domain always does; an agent without it only while no other node has
 * claimed the object, so two agents never take turns overwriting each other.
 */
export type Decision =
  | { kind: 'gone' }
  | { kind: 'deleting'; raw: KubernetesObject; domain: DomainInfo | undefined; reportStatus: boolean }
  | { kind: 'unparseable'; raw: KubernetesObject; field: string; message: string; domain: DomainInfo | undefined; quarantine: boolean; reportStatus: boolean }
  | { kind: 'elsewhere'; vm: VMFilter; reportStatus: boolean }
  | { kind: 'conflict'; obj: KubernetesObject; domain: DomainInfo; winner: string; reportStatus: boolean }
  | { kind: 'protect'; vm: VMFilter; domain: DomainInfo | undefined; pinnedTo: string | undefined; quarantine: boolean; reportStatus: boolean };

export interface DecisionContext {
  nodeName: string;
  domains: DomainCache;
  /** The VMFilter objects (raw) that name this domain, by name or UUID (a superset is fine). */
  claimants: (domain: DomainInfo) => readonly KubernetesObject[];
  /** The agent-wide quarantine switch (--quarantine). */
  quarantine: boolean;
}

type RawVm = KubernetesObject & { spec?: { domain?: { name?: unknown; uuid?: unknown }; nodeName?: unknown; interfaces?: unknown }; status?: VMFilter['status'] };

/** A VMFilter's domain reference read from the raw object (it may not pass today's schema); UUIDs lowercased. */
export function rawDomainRef(raw: KubernetesObject | undefined): { name?: string; uuid?: string } | undefined {
  const d = (raw as RawVm | undefined)?.spec?.domain;
  if (!d || typeof d !== 'object') return undefined;
  return {
    ...(typeof d.name === 'string' ? { name: d.name } : {}),
    ...(typeof d.uuid === 'string' ? { uuid: d.uuid.toLowerCase() } : {}),
  };
}

function quarantineWanted(raw: KubernetesObject, ctx: DecisionContext): boolean {
  return ctx.quarantine && raw.metadata?.annotations?.[QUARANTINE_ANNOTATION] !== 'false';
}

/** The agent without the domain writes status only while no other node's agent holds the object. */
function unclaimedOrOurs(raw: RawVm, nodeName: string): boolean {
  const holder = raw.status?.nodeName;
  if (!holder || holder === nodeName) return true;
  return findCondition(raw.status?.conditions, CONDITION.applied)?.reason === REASON.removed;
}

/** MACs a VMFilter selects; undefined = every interface. */
function selection(raw: RawVm): Set<string> | undefined {
  const list = raw.spec?.interfaces;
  if (!Array.isArray(list) || list.length === 0) return undefined;
  return new Set(list.filter((m): m is string => typeof m === 'string').map((m) => m.toLowerCase()));
}

function overlaps(a: Set<string> | undefined, b: Set<string> | undefined): boolean {
  if (!a || !b) return true;
  for (const m of a) if (b.has(m)) return true;
  return false;
}

/** Older first (creation time, then name): the first VMFilter of a domain keeps it. */
function olderFirst(a: KubernetesObject, b: KubernetesObject): number {
  const ta = String(a.metadata?.creationTimestamp ?? '');
  const tb = String(b.metadata?.creationTimestamp ?? '');
  if (ta !== tb) return ta < tb ? -1 : 1;
  return (a.metadata?.name ?? '') < (b.metadata?.name ?? '') ? -1 : 1;
}

/** Another VMFilter that claims overlapping interfaces of the same domain and is older. */
function olderClaimant(raw: RawVm, domain: DomainInfo, ctx: DecisionContext): string | undefined {
  const mine = selection(raw);
  let winner: KubernetesObject | undefined;
  for (const other of ctx.claimants(domain) as RawVm[]) {
    if (other.metadata?.name === raw.metadata?.name || other.metadata?.deletionTimestamp) continue;
    if (ctx.domains.find(rawDomainRef(other))?.uuid !== domain.uuid) continue;
    if (!overlaps(mine, selection(other))) continue;
    if (olderFirst(other, raw) < 0 && (!winner || olderFirst(other, winner) < 0)) winner = other;
  }
  return winner?.metadata?.name;
}

export function decide(raw: KubernetesObject | undefined, ctx: DecisionContext): Decision {
  if (!raw) return { kind: 'gone' };
  const r = raw as RawVm;
  if (raw.metadata?.deletionTimestamp) {
    // The controller's finalizer holds the object until the agent that held it reports Removed.
    const domain = ctx.domains.find(rawDomainRef(r));
    return { kind: 'deleting', raw, domain, reportStatus: domain !== undefined || r.status?.nodeName === ctx.nodeName };
  }
  const parsed = parseObject('VMFilter', raw);
  if (!parsed.ok) {
    // Best effort: the domain reference may still be readable. Either way nothing is removed.
    const domain = ctx.domains.find(rawDomainRef(r));
    const winner = domain ? olderClaimant(r, domain, ctx) : undefined;
    if (winner && domain) return { kind: 'conflict', obj: raw, domain, winner, reportStatus: true };
    return {
      kind: 'unparseable',
      raw,
      field: parsed.field,
      message: parsed.message,
      domain,
      quarantine: quarantineWanted(raw, ctx),
      reportStatus: domain !== undefined || r.status?.nodeName === ctx.nodeName,
    };
  }
  const vm = parsed.value;
  const domain = ctx.domains.find(vm.spec.domain);
  const pinnedTo = vm.spec.nodeName || undefined;
  if (!domain) {
    if (pinnedTo === ctx.nodeName) return { kind: 'protect', vm, domain, pinnedTo, quarantine: false, reportStatus: unclaimedOrOurs(r, ctx.nodeName) };
    return { kind: 'elsewhere', vm, reportStatus: r.status?.nodeName === ctx.nodeName };
  }
  const winner = olderClaimant(r, domain, ctx);
  if (winner) return { kind: 'conflict', obj: raw, domain, winner, reportStatus: true };
  // The domain is here: protect it, whatever spec.nodeName says (a domain that has not left yet
  // keeps its filter; the status says so).
  return { kind: 'protect', vm, domain, pinnedTo, quarantine: quarantineWanted(raw, ctx), reportStatus: true };
}
