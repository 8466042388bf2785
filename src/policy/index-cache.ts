import type { AddressGroup, DepartmentPolicy, ServicePolicy, VMFilter } from '../api/index.js';
import { groupEntry } from './groups.js';
import { compileDepartment, compileGlobal, compileVm, type CompiledFilter, type DepartmentResult, type VmContext, type VmResult } from './compile.js';
import { renderFilterXml } from './render.js';
import type { ServiceEntry } from './resolve.js';

/**
 * Incremental compilation for long-running loops: the global filter and the department filters are
 * compiled once per change of services or departments, and each VM is compiled on its own against
 * them (about 0.1 ms). Callers bump the generation with `invalidate()` when services or departments
 * change; the same pure compile functions as `compilePolicy` are used, so results are identical.
 */
export class PolicyIndex {
  private ctx: VmContext | undefined;
  private readonly vmCache = new Map<string, { key: string; result: VmResult }>();
  /** Bumped on every invalidate(); part of the VM memo key. */
  version = 0;

  /**
   * `cacheVms: false` compiles a VM on every call (about 0.1 ms) instead of keeping its result: the
   * controller reads a VM's compile once per reconcile, and 10,000 kept results (filters, XML,
   * effective services) dominated its heap.
   */
  constructor(
    private readonly source: {
      services: () => readonly ServicePolicy[];
      departments: () => readonly DepartmentPolicy[];
      /** AddressGroups, the controller's peer groups included (their members live in status.peerAddresses). */
      addressGroups?: () => readonly AddressGroup[];
    },
    private readonly options: { cacheVms?: boolean } = {},
  ) {}

  invalidate(): void {
    this.ctx = undefined;
    this.version++;
  }

  context(): VmContext {
    if (this.ctx) return this.ctx;
    const services = new Map<string, ServiceEntry>(this.source.services().map((s) => [s.metadata.name, { name: s.metadata.name, spec: s.spec }]));
    const global = compileGlobal([...services.values()]);
    const groups = new Map((this.source.addressGroups?.() ?? []).map((g) => [g.metadata.name, groupEntry(g)]));
    const departments = new Map<string, DepartmentResult>();
    const departmentSpecs = new Map<string, DepartmentPolicy['spec']>();
    for (const d of this.source.departments()) {
      departments.set(d.metadata.name, compileDepartment(d.metadata.name, d.spec, services, {}, groups));
      departmentSpecs.set(d.metadata.name, d.spec);
    }
    this.ctx = { services, departments, departmentSpecs, global: { filter: global, xml: renderFilterXml(global) }, groups };
    return this.ctx;
  }

  department(name: string): DepartmentResult | undefined {
    return this.context().departments.get(name);
  }

  global(): CompiledFilter {
    return this.context().global;
  }

  /** Memoized per VM by uid, generation and index version, so aggregating over 10k VMs stays cheap. */
  vm(vm: VMFilter): VmResult {
    const key = `${vm.metadata.uid ?? ''}/${vm.metadata.generation ?? ''}/${this.version}`;
    const hit = this.vmCache.get(vm.metadata.name);
    if (hit && hit.key === key && vm.metadata.uid !== undefined) return hit.result;
    const result = compileVm(vm.metadata.name, vm.spec, this.context());
    if (this.options.cacheVms !== false) this.vmCache.set(vm.metadata.name, { key, result });
    return result;
  }

  forgetVm(name: string): void {
    this.vmCache.delete(name);
  }
}
