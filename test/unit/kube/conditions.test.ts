import { describe, expect, it } from 'vitest';
import { setCondition } from '../../../src/kube/conditions.js';

describe('setCondition', () => {
  const t1 = new Date('2026-01-01T00:00:00.123Z');
  const t2 = new Date('2026-01-01T00:05:00Z');

  it('sets lastTransitionTime when the status changes, keeps it otherwise', () => {
    const a = setCondition(undefined, { type: 'Ready', status: 'False', reason: 'Pending', message: 'waiting' }, 1, t1);
    expect(a).toEqual([{ type: 'Ready', status: 'False', reason: 'Pending', message: 'waiting', lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: 1 }]);
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'StillPending', message: 'still' }, 2, t2);
    expect(b[0]).toMatchObject({ reason: 'StillPending', lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: 2 });
    const c = setCondition(b, { type: 'Ready', status: 'True', reason: 'Applied', message: 'ok' }, 2, t2);
    expect(c[0]!.lastTransitionTime).toBe('2026-01-01T00:05:00Z');
  });

  it('keeps other conditions and sorts by type', () => {
    const a = setCondition(undefined, { type: 'Ready', status: 'True', reason: 'R', message: '' }, 1, t1);
    const b = setCondition(a, { type: 'Accepted', status: 'True', reason: 'A', message: '' }, 1, t1);
    expect(b.map((c) => c.type)).toEqual(['Accepted', 'Ready']);
  });
});
