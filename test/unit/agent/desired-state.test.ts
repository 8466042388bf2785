import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { decide, type DecisionContext } from '../../../src/agent/desired-state.js';
import { DomainCache } from '../../../src/agent/domain-cache.js';
import type { DomainInfo } from '../../../src/agent/libvirt-port.js';

const HERE = 'node-a';
const dom = (name: string, n: number): DomainInfo => ({ name, uuid: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`, active: true, persistent: true });

async function ctx(domains: DomainInfo[], objects: KubernetesObject[], quarantine = true): Promise<DecisionContext> {
  const cache = new DomainCache({ listDomains: async () => domains });
  await cache.refresh();
  return { nodeName: HERE, domains: cache, claimants: () => objects, quarantine };
}

let clock = 0;
function vmf(name: string, spec: Record<string, unknown>, extra: { status?: unknown; annotations?: Record<string, string>; deleting?: boolean } = {}): KubernetesObject {
  clock++;
  return {
    apiVersion: 'nwfilter.infinibay.io/v1alpha1',
    kind: 'VMFilter',
    metadata: {
      name,
      uid: `uid-${name}`,
      generation: 1,
      creationTimestamp: `2026-01-01T00:00:${String(clock).padStart(2, '0')}Z` as never,
      ...(extra.annotations ? { annotations: extra.annotations } : {}),
      ...(extra.deleting ? { deletionTimestamp: '2026-01-02T00:00:00Z' as never } : {}),
    },
    spec,
    ...(extra.status ? { status: extra.status } : {}),
  } as KubernetesObject;
}

describe('decide()', () => {
  it('protects a domain that is here, whatever spec.nodeName says (NodeMismatch is the status, not a hand-over)', async () => {
    const o = vmf('a', { domain: { name: 'd1' }, nodeName: 'node-b' });
    const d = decide(o, await ctx([dom('d1', 1)], [o]));
    expect(d).toMatchObject({ kind: 'protect', pinnedTo: 'node-b', reportStatus: true });
  });

  it('hands over only when the domain is not here; reports only if this node held it', async () => {
    const held = vmf('a', { domain: { name: 'd1' }, nodeName: 'node-b' }, { status: { nodeName: HERE } });
    expect(decide(held, await ctx([], [held]))).toMatchObject({ kind: 'elsewhere', reportStatus: true });
    const other = vmf('b', { domain: { name: 'd1' }, nodeName: 'node-b' }, { status: { nodeName: 'node-b' } });
    expect(decide(other, await ctx([], [other]))).toMatchObject({ kind: 'elsewhere', reportStatus: false });
  });

  it('pinned here without the domain: protect (pre-define for a migration), silent while another node holds it', async () => {
    const free = vmf('a', { domain: { name: 'd1' }, nodeName: HERE });
    expect(decide(free, await ctx([], [free]))).toMatchObject({ kind: 'protect', domain: undefined, reportStatus: true });
    const held = vmf('b', { domain: { name: 'd1' }, nodeName: HERE }, { status: { nodeName: 'node-b', conditions: [{ type: 'Applied', status: 'False', reason: 'NodeMismatch', message: 'm', lastTransitionTime: '2026-01-01T00:00:00Z' }] } });
    expect(decide(held, await ctx([], [held]))).toMatchObject({ kind: 'protect', reportStatus: false });
    const released = vmf('c', { domain: { name: 'd1' }, nodeName: HERE }, { status: { nodeName: 'node-b', conditions: [{ type: 'Applied', status: 'False', reason: 'Removed', message: 'm', lastTransitionTime: '2026-01-01T00:00:00Z' }] } });
    expect(decide(released, await ctx([], [released]))).toMatchObject({ kind: 'protect', reportStatus: true });
  });

  it('an object the schema refuses is still seen, with its domain and the quarantine choice', async () => {
    const bad = vmf('a', { domain: { name: 'd1' }, rules: [{ action: 'return', direction: 'in', protocol: 'tcp' }] }, { annotations: { 'nwfilter.infinibay.io/quarantine': 'false' } });
    const d = decide(bad, await ctx([dom('d1', 1)], [bad]));
    expect(d).toMatchObject({ kind: 'unparseable', quarantine: false, reportStatus: true });
    expect(d.kind === 'unparseable' && d.domain?.name).toBe('d1');
    expect(d.kind === 'unparseable' && d.field).toMatch(/rules/);
  });

  it('two VMFilters of one domain: the older protects, the newer is a conflict; disjoint interfaces do not conflict', async () => {
    const older = vmf('z-older', { domain: { name: 'd1' } });
    const newer = vmf('a-newer', { domain: { uuid: dom('d1', 1).uuid } });
    const c = await ctx([dom('d1', 1)], [older, newer]);
    expect(decide(older, c)).toMatchObject({ kind: 'protect' });
    expect(decide(newer, c)).toMatchObject({ kind: 'conflict', winner: 'z-older' });
    const x = vmf('x', { domain: { name: 'd2' }, interfaces: ['52:54:00:00:00:01'] });
    const y = vmf('y', { domain: { name: 'd2' }, interfaces: ['52:54:00:00:00:02'] });
    const c2 = await ctx([dom('d2', 2)], [x, y]);
    expect(decide(y, c2)).toMatchObject({ kind: 'protect' });
  });

  it('a VMFilter being deleted is "deleting" (status by the node that has the domain or held it); a missing one is "gone"', async () => {
    const o = vmf('a', { domain: { name: 'd1' } }, { deleting: true });
    expect(decide(o, await ctx([dom('d1', 1)], [o]))).toMatchObject({ kind: 'deleting', reportStatus: true });
    expect(decide(undefined, await ctx([], []))).toEqual({ kind: 'gone' });
  });

  it('the agent-wide quarantine switch and the annotation both opt out', async () => {
    const o = vmf('a', { domain: { name: 'd1' } });
    expect(decide(o, await ctx([dom('d1', 1)], [o], false))).toMatchObject({ kind: 'protect', quarantine: false });
    expect(decide(o, await ctx([dom('d1', 1)], [o], true))).toMatchObject({ kind: 'protect', quarantine: true });
  });
});
