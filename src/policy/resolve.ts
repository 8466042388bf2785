import type { DepartmentPolicySpec, EffectiveService, EffectiveSource, Override, ServicePolicySpec, VMFilterSpec } from '../api/index.js';
import type { ServiceDirection } from './model.js';

export interface ServiceEntry {
  name: string;
  spec: ServicePolicySpec;
}

export interface DirectionDecision {
  allowed: boolean;
  source: EffectiveSource;
}

/**
 * Precedence for one service and one direction: an enforced department setting, then the VM,
 * then the department, then the global default. The two directions are resolved independently
 * (the reference system pinned `provide` to false when `use` was turned off at VM level).
 * An enforced `inherit` pins the global default: the VM cannot override it.
 */
export function resolveDirection(
  globalDefault: boolean,
  department: { value: Override; enforced: boolean } | undefined,
  vm: Override | undefined,
): DirectionDecision {
  if (department?.enforced) {
    return department.value === 'inherit'
      ? { allowed: globalDefault, source: 'department-enforced' }
      : { allowed: department.value === 'allow', source: 'department-enforced' };
  }
  if (vm !== undefined && vm !== 'inherit') return { allowed: vm === 'allow', source: 'vm' };
  if (department !== undefined && department.value !== 'inherit') {
    return { allowed: department.value === 'allow', source: 'department' };
  }
  return { allowed: globalDefault, source: 'global' };
}

/** The effective use/provide table of one VM, sorted by service name. */
export function effectiveServices(
  services: readonly ServiceEntry[],
  department: DepartmentPolicySpec | undefined,
  vm: VMFilterSpec,
): EffectiveService[] {
  const deptByName = new Map((department?.services ?? []).map((o) => [o.name, o]));
  const vmByName = new Map(vm.services.map((o) => [o.name, o]));
  const pick = (s: ServiceEntry, dir: ServiceDirection): DirectionDecision => {
    const d = deptByName.get(s.name);
    return resolveDirection(s.spec[dir], d ? { value: d[dir], enforced: d.enforced } : undefined, vmByName.get(s.name)?.[dir]);
  };
  return [...services]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((s) => {
      const use = pick(s, 'use');
      const provide = pick(s, 'provide');
      return { name: s.name, use: use.allowed, useSource: use.source, provide: provide.allowed, provideSource: provide.source };
    });
}
