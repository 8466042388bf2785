import { describe, expect, it } from 'vitest';
import type { Override } from '../../../src/api/index.js';
import { compilePolicy, evaluate, resolveDirection, type ServiceDirection } from '../../../src/policy/index.js';
import { department, service, vm } from '../../helpers/builders.js';
import { filtersOf, okVm } from '../../helpers/decide.js';

const OVERRIDES: Override[] = ['allow', 'deny', 'inherit'];

/** The rule the product promises, written independently of the implementation. */
function expected(global: boolean, dept: Override | undefined, enforced: boolean, vmValue: Override): { allowed: boolean; source: string } {
  if (dept !== undefined && enforced) {
    return { allowed: dept === 'inherit' ? global : dept === 'allow', source: 'department-enforced' };
  }
  if (vmValue !== 'inherit') return { allowed: vmValue === 'allow', source: 'vm' };
  if (dept !== undefined && dept !== 'inherit') return { allowed: dept === 'allow', source: 'department' };
  return { allowed: global, source: 'global' };
}

interface Case {
  dir: ServiceDirection;
  global: boolean;
  dept: Override | undefined;
  enforced: boolean;
  vmValue: Override;
}

const cases: Case[] = [];
for (const dir of ['use', 'provide'] as const)
  for (const global of [true, false])
    for (const dept of [undefined, ...OVERRIDES])
      for (const enforced of dept === undefined ? [false] : [false, true])
        for (const vmValue of OVERRIDES) cases.push({ dir, global, dept, enforced, vmValue });

describe('precedence matrix: 3 levels x allow/deny/inherit x use/provide (+ enforced)', () => {
  it('covers every combination', () => {
    // 2 directions x 2 globals x (1 + 3 x 2) department settings x 3 VM settings
    expect(cases.length).toBe(2 * 2 * 7 * 3);
  });

  it.each(cases)('$dir: global=$global dept=$dept enforced=$enforced vm=$vmValue', ({ dir, global, dept, enforced, vmValue }) => {
    const want = expected(global, dept, enforced, vmValue);

    // 1. The resolver (what status reports).
    const resolved = resolveDirection(global, dept === undefined ? undefined : { value: dept, enforced }, vmValue);
    expect(resolved).toEqual({ allowed: want.allowed, source: want.source });

    // 2. The compiled filters, evaluated in libvirt's flattened priority order (what the packet sees).
    const other: ServiceDirection = dir === 'use' ? 'provide' : 'use';
    const input = {
      services: [service('svc', { ports: [{ protocol: 'tcp', port: 2222 }], [dir]: global, [other]: false })],
      departments: [department('dept', { services: dept === undefined ? [] : [{ name: 'svc', [dir]: dept, enforced }] })],
      vms: [vm('vm1', { department: 'dept', services: [{ name: 'svc', [dir]: vmValue }] })],
    };
    const compiled = compilePolicy(input);
    const result = okVm(compiled, 'vm1');
    const decision = evaluate(result.filter.filter.name, filtersOf(compiled), {
      direction: dir === 'use' ? 'out' : 'in',
      protocol: 'tcp',
      port: 2222,
    });
    expect(decision.verdict).toBe(want.allowed ? 'accept' : 'drop');
    const row = result.effectiveServices.find((s) => s.name === 'svc')!;
    expect(row[dir]).toBe(want.allowed);
    expect(row[`${dir}Source`]).toBe(want.source);

    // 3. The other direction is untouched by this direction's settings (it stays at its global false).
    const reverse = evaluate(result.filter.filter.name, filtersOf(compiled), {
      direction: dir === 'use' ? 'in' : 'out',
      protocol: 'tcp',
      port: 2222,
    });
    expect(reverse.verdict).toBe('drop');
    expect(row[other]).toBe(false);
  });
});

describe('deciding level', () => {
  it('reports the level whose rule decided', () => {
    const input = {
      services: [service('ssh', { ports: [{ protocol: 'tcp', port: 22 }], provide: true })],
      departments: [department('d', { services: [{ name: 'ssh', provide: 'deny' }] })],
      vms: [vm('a', { department: 'd' }), vm('b', { department: 'd', services: [{ name: 'ssh', provide: 'allow' }] })],
    };
    const compiled = compilePolicy(input);
    const pkt = { direction: 'in', protocol: 'tcp', port: 22 } as const;
    const a = evaluate(okVm(compiled, 'a').filter.filter.name, filtersOf(compiled), pkt);
    const b = evaluate(okVm(compiled, 'b').filter.filter.name, filtersOf(compiled), pkt);
    expect(a.verdict).toBe('drop');
    expect(a.rule?.origin).toMatchObject({ kind: 'service', level: 'department', service: 'ssh', decision: 'deny' });
    expect(a.filter).toBe('nwf-dept-d');
    expect(b.verdict).toBe('accept');
    expect(b.rule?.origin).toMatchObject({ kind: 'service', level: 'vm', service: 'ssh', decision: 'allow' });
  });

  it('an enforced department custom rule beats a VM custom rule and a VM override', () => {
    const input = {
      services: [service('web', { ports: [{ protocol: 'tcp', port: 8080 }] })],
      departments: [
        department('d', {
          rules: [{ action: 'drop', direction: 'in', protocol: 'tcp', ports: [{ port: 8080 }], enforced: true, priority: 99 }],
        }),
      ],
      vms: [
        vm('v', {
          department: 'd',
          services: [{ name: 'web', provide: 'allow' }],
          rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 8080 }], priority: 0 }],
        }),
      ],
    };
    const compiled = compilePolicy(input);
    const d = evaluate(okVm(compiled, 'v').filter.filter.name, filtersOf(compiled), { direction: 'in', protocol: 'tcp', port: 8080 });
    expect(d.verdict).toBe('drop');
    expect(d.rule?.origin).toMatchObject({ kind: 'custom', level: 'department', enforced: true });
  });

  it('a non-enforced department custom rule loses to the VM override', () => {
    const input = {
      services: [service('web', { ports: [{ protocol: 'tcp', port: 8080 }] })],
      departments: [department('d', { rules: [{ action: 'drop', direction: 'in', protocol: 'tcp', ports: [{ port: 8080 }] }] })],
      vms: [vm('v', { department: 'd', services: [{ name: 'web', provide: 'allow' }] })],
    };
    const compiled = compilePolicy(input);
    const d = evaluate(okVm(compiled, 'v').filter.filter.name, filtersOf(compiled), { direction: 'in', protocol: 'tcp', port: 8080 });
    expect(d.verdict).toBe('accept');
    expect(d.rule?.origin.level).toBe('vm');
  });
});
