import { compilePolicy, evaluate, type CompiledPolicy, type NwFilter, type Packet, type PolicyInput, type VmCompiled } from '../../src/policy/index.js';

export function filtersOf(compiled: CompiledPolicy): Map<string, NwFilter> {
  return new Map([...compiled.filters].map(([n, f]) => [n, f.filter]));
}

export function okVm(compiled: CompiledPolicy, name: string): VmCompiled {
  const r = compiled.vms.get(name);
  if (!r || !r.ok) throw new Error(`VM ${name} did not compile: ${JSON.stringify(r?.diagnostics)}`);
  return r;
}

/** Compiles and evaluates one packet for one VM. */
export function decide(input: PolicyInput, vmName: string, packet: Packet): ReturnType<typeof evaluate> {
  const compiled = compilePolicy(input);
  return evaluate(okVm(compiled, vmName).filter.filter.name, filtersOf(compiled), packet);
}
