import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { API_VERSION, PEER_GROUP_LABEL, type PeerSelector } from '../../../src/api/index.js';
import { GroupReferences } from '../../../src/controller/group-references.js';
import { isManagedPeerGroup, peerGroupAction, peerGroupManifest } from '../../../src/controller/peer-groups.js';
import { describeSelector, peerGroupName } from '../../../src/policy/index.js';
import { department, vm } from '../../helpers/builders.js';

const eng: PeerSelector = { department: 'eng' };
const web: PeerSelector = { vmSelector: { matchLabels: { role: 'web' } } };
const peersRule = (from: PeerSelector) => ({ action: 'accept' as const, direction: 'in' as const, protocol: 'tcp' as const, ports: [{ port: 22 }], sourcePeers: from });
const groupRule = (name: string) => ({ action: 'accept' as const, direction: 'out' as const, protocol: 'all' as const, destinationGroup: name });

// Objects as the API server returns them (every field the server adds, no managedFields).
const served = (o: KubernetesObject & { spec: object }, over: { labels?: Record<string, string>; deletionTimestamp?: string } = {}): KubernetesObject =>
  ({
    ...o,
    metadata: {
      ...o.metadata,
      uid: 'u1',
      resourceVersion: '7',
      generation: 1,
      ...('labels' in over ? { labels: over.labels } : {}),
      ...(over.deletionTimestamp ? { deletionTimestamp: over.deletionTimestamp } : {}),
    },
    spec: { addresses: [], ...o.spec },
  }) as KubernetesObject;

describe('GroupReferences', () => {
  it('reports the peer groups an owner starts or stops using, and keeps a group while any owner uses it', () => {
    const refs = new GroupReferences();
    const engGroup = peerGroupName(eng);
    const webGroup = peerGroupName(web);
    expect(refs.set('DepartmentPolicy/eng', department('eng', { rules: [peersRule(eng), groupRule('office')] }).spec.rules)).toEqual([engGroup]);
    // A second user of the same selector changes nothing that must be created; its other selector is new.
    expect(refs.set('VMFilter/a', vm('a', { rules: [peersRule({ department: 'eng' }), peersRule(web)] }).spec.rules)).toEqual([webGroup]);
    expect(refs.peerGroups().sort()).toEqual([engGroup, webGroup].sort());
    expect(refs.peerSelector(engGroup)).toEqual(eng);
    expect(refs.ownersOf(engGroup).sort()).toEqual(['DepartmentPolicy/eng', 'VMFilter/a']);
    expect(refs.ownersOf('office')).toEqual(['DepartmentPolicy/eng']);
    // The same rules again: nothing changed.
    expect(refs.set('VMFilter/a', vm('a', { rules: [peersRule(eng), peersRule(web)] }).spec.rules)).toEqual([]);
    // The department drops its peer rule: the VM still uses the group, which stays.
    expect(refs.set('DepartmentPolicy/eng', department('eng', { rules: [groupRule('office')] }).spec.rules)).toEqual([]);
    expect(refs.peerSelector(engGroup)).toEqual(eng);
    expect(refs.ownersOf(engGroup)).toEqual(['VMFilter/a']);
    // The VM goes (or stops parsing): both of its groups are unused now.
    expect(refs.set('VMFilter/a', undefined).sort()).toEqual([engGroup, webGroup].sort());
    expect(refs.peerSelector(engGroup)).toBeUndefined();
    expect(refs.peerGroups()).toEqual([]);
    expect(refs.ownersOf(engGroup)).toEqual([]);
    expect(refs.ownersOf('office')).toEqual(['DepartmentPolicy/eng']);
    expect(refs.set('DepartmentPolicy/eng', [])).toEqual([]);
    expect(refs.ownersOf('office')).toEqual([]);
  });
});

describe('managed peer groups', () => {
  const name = peerGroupName(eng);
  const managed = served(peerGroupManifest(name, eng));

  it('are made with both labels, a description and the selector, and no addresses of their own', () => {
    expect(peerGroupManifest(name, eng)).toEqual({
      apiVersion: API_VERSION,
      kind: 'AddressGroup',
      metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'nwfilter-operator', [PEER_GROUP_LABEL]: 'true' } },
      spec: { description: describeSelector(eng), peers: eng },
    });
    expect(isManagedPeerGroup(managed)).toBe(true);
    expect(isManagedPeerGroup(served(peerGroupManifest(name, eng), { labels: { [PEER_GROUP_LABEL]: 'true' } }))).toBe(false);
    expect(isManagedPeerGroup(served(peerGroupManifest(name, eng), { labels: {} }))).toBe(false);
  });

  it('are created when used and missing, deleted when unused, restored when edited, and left alone while going', () => {
    expect(peerGroupAction(undefined, eng)).toEqual({ do: 'create', selector: eng });
    expect(peerGroupAction(undefined, undefined)).toEqual({ do: 'nothing' });
    expect(peerGroupAction(managed, eng)).toEqual({ do: 'status', clash: false });
    expect(peerGroupAction(managed, undefined)).toEqual({ do: 'delete' });
    const edited = { ...managed, spec: { ...(managed as { spec: object }).spec, peers: web } } as KubernetesObject;
    expect(peerGroupAction(edited, eng)).toEqual({ do: 'repair', selector: eng });
    const withAddresses = { ...managed, spec: { ...(managed as { spec: object }).spec, addresses: ['10.0.0.1'] } } as KubernetesObject;
    expect(peerGroupAction(withAddresses, eng)).toEqual({ do: 'repair', selector: eng });
    const going = served(peerGroupManifest(name, eng), { deletionTimestamp: '2026-01-01T00:00:00Z' });
    expect(peerGroupAction(going, eng)).toEqual({ do: 'nothing' });
    expect(peerGroupAction(going, undefined)).toEqual({ do: 'nothing' });
  });

  it('never delete or change a group without the labels; one that selects something else under a selector\'s name is a clash', () => {
    const mine = served({ apiVersion: API_VERSION, kind: 'AddressGroup', metadata: { name }, spec: { peers: web } }, { labels: {} });
    expect(peerGroupAction(mine, undefined)).toEqual({ do: 'status', clash: false });
    expect(peerGroupAction(mine, eng)).toEqual({ do: 'status', clash: true });
    expect(peerGroupAction(mine, web)).toEqual({ do: 'status', clash: false });
    const plain = served({ apiVersion: API_VERSION, kind: 'AddressGroup', metadata: { name: 'office' }, spec: { addresses: ['10.0.0.0/8'] } }, { labels: {} });
    expect(peerGroupAction(plain, undefined)).toEqual({ do: 'status', clash: false });
  });
});
