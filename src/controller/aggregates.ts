import type { Realization } from '../api/index.js';
import type { VmState } from './status.js';

/** What one VMFilter contributes to the status of its department and of the services it uses or provides. */
export interface Contribution {
  department?: string | undefined;
  services: readonly string[];
  state: VmState;
}

type Counts = { desired: number; applied: number; failed: number };

function counted(c: Counts | undefined): Realization {
  return { desired: c?.desired ?? 0, applied: c?.applied ?? 0, failed: c?.failed ?? 0 };
}

function bump(map: Map<string, Counts>, key: string, state: VmState, by: 1 | -1): void {
  let c = map.get(key);
  if (!c) map.set(key, (c = { desired: 0, applied: 0, failed: 0 }));
  c.desired += by;
  if (state === 'ready') c.applied += by;
  if (state === 'failed' || state === 'invalid') c.failed += by;
  if (c.desired === 0) map.delete(key);
}

function same(a: Contribution | undefined, b: Contribution | undefined): boolean {
  if (!a || !b) return a === b;
  return a.department === b.department && a.state === b.state && a.services.length === b.services.length && a.services.every((s, i) => s === b.services[i]);
}

/**
 * Department and service realization counts, kept up to date one VM at a time: a VMFilter change
 * costs O(its services), not a walk over every VMFilter for each of the 41 aggregates. `set`
 * returns the aggregates whose counts changed, which are the only statuses to rewrite.
 */
export class Aggregates {
  private readonly byVm = new Map<string, Contribution>();
  private readonly departments = new Map<string, Counts>();
  private readonly services = new Map<string, Counts>();

  /** Records what a VM contributes now (undefined: nothing, e.g. deleted or invalid); returns the changed keys. */
  set(vm: string, next: Contribution | undefined): { departments: string[]; services: string[] } {
    const prev = this.byVm.get(vm);
    if (same(prev, next)) return { departments: [], services: [] };
    const departments = new Set<string>();
    const services = new Set<string>();
    if (prev) {
      if (prev.department !== undefined) {
        bump(this.departments, prev.department, prev.state, -1);
        departments.add(prev.department);
      }
      for (const s of prev.services) {
        bump(this.services, s, prev.state, -1);
        services.add(s);
      }
    }
    if (next) {
      if (next.department !== undefined) {
        bump(this.departments, next.department, next.state, 1);
        departments.add(next.department);
      }
      for (const s of next.services) {
        bump(this.services, s, next.state, 1);
        services.add(s);
      }
      this.byVm.set(vm, { ...next, services: [...next.services] });
    } else this.byVm.delete(vm);
    return { departments: [...departments], services: [...services] };
  }

  department(name: string): Realization {
    return counted(this.departments.get(name));
  }

  service(name: string): Realization {
    return counted(this.services.get(name));
  }

  get vms(): number {
    return this.byVm.size;
  }
}
