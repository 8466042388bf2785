import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { API_VERSION, AddressGroup, type VMFilter } from '../../../src/api/index.js';
import { Fingerprints, groupMembersPrint, groupObjectPrint, peerInputsPrint } from '../../../src/controller/fingerprints.js';
import { CONTROLLER_OWNED, addressGroupControllerStatus, invalidGroupStatus } from '../../../src/controller/status.js';
import { statusMatches } from '../../../src/kube/status.js';
import { vm } from '../../helpers/builders.js';

const now = new Date('2026-11-23T00:00:00Z');
const later = new Date('2026-11-23T01:00:00Z');

const group = (spec: object, status?: object): AddressGroup =>
  AddressGroup.parse({ apiVersion: API_VERSION, kind: 'AddressGroup', metadata: { name: 'g', generation: 2, uid: 'u' }, spec, ...(status ? { status } : {}) });
const labelled = (v: VMFilter, labels: Record<string, string>): VMFilter => ({ ...v, metadata: { ...v.metadata, labels } });

const vms = [
  labelled(vm('a', { department: 'eng', parameters: { ip: ['10.0.0.1'], ipv6: ['fd00::1'] } }), { role: 'web' }),
  vm('b', { department: 'eng', parameters: { ip: ['10.0.0.2'] } }),
  vm('c', { department: 'eng' }),
  labelled(vm('d', { department: 'fin', parameters: { ip: ['10.1.0.1'] } }), { role: 'web' }),
  { ...vm('e', { department: 'eng', parameters: { ip: ['10.0.0.5'] } }), metadata: { name: 'e', deletionTimestamp: '2026-11-22T00:00:00Z' } },
];

describe('AddressGroup status', () => {
  it("resolves a department's peers: their addresses, how many VMs matched, entries per family, Ready=Resolved", () => {
    const status = addressGroupControllerStatus(group({ peers: { department: 'eng' } }), vms, now);
    // c matches without addresses; e is being deleted and is no member any more.
    expect(status).toEqual({
      observedGeneration: 2,
      conditions: [{ type: 'Ready', status: 'True', reason: 'Resolved', message: '3 VMs, 3 addresses.', lastTransitionTime: '2026-11-23T00:00:00Z', observedGeneration: 2 }],
      peerAddresses: ['10.0.0.1', '10.0.0.2', 'fd00::1'],
      peerCount: 3,
      ipv4: 2,
      ipv6: 1,
    });
  });

  it('resolves a label selector across departments and counts spec.addresses with the peers, a duplicate once', () => {
    const status = addressGroupControllerStatus(group({ addresses: ['10.1.0.1/32', '192.168.0.0/16', '2001:db8::/32'], peers: { vmSelector: { matchLabels: { role: 'web' } } } }), vms, now);
    expect(status).toMatchObject({ peerAddresses: ['10.0.0.1', '10.1.0.1', 'fd00::1'], peerCount: 2, ipv4: 3, ipv6: 2 });
    expect((status.conditions as { message: string }[])[0]!.message).toBe('2 VMs, 3 addresses.');
  });

  it('gives a group without peers its counts and Ready=Valid, and no peer fields (the apply removes old ones)', () => {
    const status = addressGroupControllerStatus(group({ addresses: ['10.0.0.0/8'] }), vms, now);
    expect(status).toEqual({
      observedGeneration: 2,
      conditions: [{ type: 'Ready', status: 'True', reason: 'Valid', message: '1 address.', lastTransitionTime: '2026-11-23T00:00:00Z', observedGeneration: 2 }],
      ipv4: 1,
      ipv6: 0,
    });
    expect(Object.keys(status).every((k) => (CONTROLLER_OWNED.AddressGroup as readonly string[]).includes(k))).toBe(true);
  });

  it('is the same later for the same inputs, so a restarted controller finds it written already', () => {
    const first = addressGroupControllerStatus(group({ peers: { department: 'eng' } }), vms, now);
    const again = addressGroupControllerStatus(group({ peers: { department: 'eng' } }, first), [...vms].reverse(), later);
    expect(statusMatches(first, again, CONTROLLER_OWNED.AddressGroup)).toBe(true);
    // A member leaving is a change; the condition keeps its transition time (still True).
    const fewer = addressGroupControllerStatus(group({ peers: { department: 'eng' } }, first), vms.slice(1), later);
    expect(statusMatches(first, fewer, CONTROLLER_OWNED.AddressGroup)).toBe(false);
    expect(fewer).toMatchObject({ peerAddresses: ['10.0.0.2'], peerCount: 2, conditions: [{ lastTransitionTime: '2026-11-23T00:00:00Z' }] });
  });

  it('of an invalid group says so and keeps the resolution it carries', () => {
    const current = { peerAddresses: ['10.0.0.1'], peerCount: 1, ipv4: 1, ipv6: 0, conditions: [] };
    const status = invalidGroupStatus(3, current, 'spec.peers', 'exactly one of department or vmSelector must be set', now);
    expect(status).toMatchObject({ peerAddresses: ['10.0.0.1'], peerCount: 1, ipv4: 1, ipv6: 0, observedGeneration: 3 });
    expect(status.conditions).toEqual([
      expect.objectContaining({ type: 'Ready', status: 'False', reason: 'InvalidSpec', message: expect.stringContaining('spec.peers: exactly one') }),
    ]);
  });
});

describe('fingerprints', () => {
  const raw = (over: { labels?: Record<string, string>; spec?: object; status?: object; finalizers?: string[] } = {}): KubernetesObject =>
    ({
      apiVersion: API_VERSION,
      kind: 'VMFilter',
      metadata: { name: 'a', uid: 'u', generation: 1, labels: over.labels ?? { role: 'web' }, finalizers: over.finalizers },
      spec: over.spec ?? { domain: { name: 'a' }, department: 'eng', parameters: { ip: ['10.0.0.1'] } },
      status: over.status,
    }) as KubernetesObject;

  it('see what peer resolution reads of a VMFilter (labels among it), not its status or finalizers', () => {
    const f = new Fingerprints();
    expect(f.changed('a', peerInputsPrint(raw()))).toBe(true);
    expect(f.changed('a', peerInputsPrint(raw({ status: { desiredHash: 'h' }, finalizers: ['x'] })))).toBe(false);
    expect(f.changed('a', peerInputsPrint(raw({ labels: { role: 'db' } })))).toBe(true);
    expect(f.changed('a', peerInputsPrint(raw({ labels: { role: 'db' }, spec: { domain: { name: 'a' }, department: 'eng', parameters: { ip: ['10.0.0.2'] } } })))).toBe(true);
    expect(f.changed('a', peerInputsPrint(raw({ labels: { role: 'db' }, spec: { domain: { name: 'a' }, department: 'fin', parameters: { ip: ['10.0.0.2'] } } })))).toBe(true);
    expect(f.changed('a', peerInputsPrint(raw({ spec: { domain: { name: 'a' }, nope: 1 } })))).toBe(true);
    expect(f.changed('a', undefined)).toBe(true);
    expect(f.changed('a', undefined)).toBe(false);
    expect(f.size).toBe(0);
  });

  it("see an AddressGroup's members and validity for the compiler, its metadata and spec for its reconcile", () => {
    const g = (spec: object, status?: object, labels?: Record<string, string>): KubernetesObject =>
      ({ apiVersion: API_VERSION, kind: 'AddressGroup', metadata: { name: 'g', uid: 'u', generation: 1, labels }, spec, status }) as KubernetesObject;
    const withPeers = g({ peers: { department: 'eng' } }, { peerAddresses: ['10.0.0.1'] });
    expect(groupMembersPrint(withPeers)).not.toBe(groupMembersPrint(g({ peers: { department: 'eng' } }, { peerAddresses: ['10.0.0.2'] })));
    // Only the members count: a Ready message or the counts do not recompile anything.
    expect(groupMembersPrint(withPeers)).toBe(groupMembersPrint(g({ peers: { department: 'eng' } }, { peerAddresses: ['10.0.0.1'], peerCount: 4, conditions: [] })));
    // peerAddresses of a group without peers are no members (the compiler ignores them).
    expect(groupMembersPrint(g({ addresses: ['10.0.0.1'] }, { peerAddresses: ['10.9.9.9'] }))).toBe(groupMembersPrint(g({ addresses: ['10.0.0.1/32'] })));
    expect(groupMembersPrint(g({ peers: {} }))).toBe('invalid');
    expect(groupMembersPrint(undefined)).toBeUndefined();
    expect(groupObjectPrint(withPeers)).toBe(groupObjectPrint(g({ peers: { department: 'eng' } }, { peerAddresses: ['10.0.0.9'] })));
    expect(groupObjectPrint(withPeers)).not.toBe(groupObjectPrint(g({ peers: { department: 'eng' } }, undefined, { x: 'y' })));
  });
});
