import type {
  AddressGroup,
  CustomRule,
  DepartmentPolicy,
  DepartmentPolicySpec,
  EffectiveService,
  FilterParameters,
  ServicePolicy,
  VMFilter,
  VMFilterSpec,
} from '../api/index.js';
import { BANDS } from './bands.js';
import type { Diagnostic, NwFilter, NwRule, ResourceRef } from './model.js';
import { MAX_SET_ENTRIES, groupsOfInput, setSize, setsOfFilters, type AddressSet, type GroupEntry } from './groups.js';
import { GLOBAL_FILTER, departmentFilterName, filterUuid, sha256Hex, vmFilterName } from './names.js';
import { describeSelector } from './peers.js';
import { canonicalAddress } from './ip.js';
import { optimizeFilter } from './optimize.js';
import { renderFilterXml } from './render.js';
import { effectiveServices, resolveDirection, type ServiceEntry } from './resolve.js';
import { baseRules, byPriority, customRules, defaultRules, ruleGroup, serviceRules } from './rules.js';
import { validateFilter, validateTree } from './validate.js';

/** libvirt's own filters that ours may reference. */
export const LIBVIRT_FILTERS: ReadonlySet<string> = new Set(['clean-traffic', 'no-ipv6-spoofing', 'allow-ipv6']);

/**
 * IPv6 anti-spoofing for a VM with IPv6 addresses in a department with cleanTraffic: libvirt's
 * clean-traffic (referenced by the department filter) covers MAC, IPv4 and ARP and drops every other
 * layer-2 protocol, IPv6 included. libvirt's no-ipv6-spoofing (ebtables chain ipv6-ip, priority -610:
 * IPv6 from the VM only with a source in $IPV6, or UDP from fe80::/10) and allow-ipv6 (chain ipv6,
 * -600) come before clean-traffic's final drop (root chain, priority 1000) and let the VM's own IPv6
 * through. They reference $IPV6, which libvirt cannot learn: a binding without it fails, so they are
 * referenced only by VM filters whose VM has `parameters.ipv6`.
 */
export const IPV6_CLEAN_TRAFFIC = ['no-ipv6-spoofing', 'allow-ipv6'] as const;

/**
 * `optimize` (default true): leave out rules that cannot change any verdict and merge adjacent port
 * ranges (optimize.ts), so that libvirt instantiates fewer iptables rules per interface. False gives
 * the rules exactly as rules.ts generates them, to compare with.
 */
export interface CompileOptions {
  optimize?: boolean;
}

export interface PolicyInput {
  services: readonly ServicePolicy[];
  departments: readonly DepartmentPolicy[];
  vms: readonly VMFilter[];
  /** AddressGroups; the groups of peer selectors are resolved from `vms` when not given. */
  addressGroups?: readonly AddressGroup[];
}

/** What the agent puts on each interface: `<filterref filter=...>` with its parameters. */
export interface InterfaceBinding {
  filter: string;
  parameters: { name: string; value: string }[];
}

export interface CompiledFilter {
  filter: NwFilter;
  xml: string;
}

export interface VmCompiled {
  ok: true;
  name: string;
  filter: CompiledFilter;
  /** Names of every filter of the VM's tree, referenced ones first: the order to define them in. */
  tree: string[];
  /** The same filters, compiled. */
  treeFilters: CompiledFilter[];
  effectiveServices: EffectiveService[];
  /** Rules of the flattened tree (our filters; libvirt's own are not counted). */
  ruleCount: number;
  /** SHA-256 over the XML of the whole tree: changes whenever anything the VM gets changes. */
  hash: string;
  binding: InterfaceBinding;
  /** The kernel IP sets the tree's rules match, with the members they should hold. */
  sets: AddressSet[];
  spec: VMFilterSpec;
  diagnostics: Diagnostic[];
}

export interface Failed {
  ok: false;
  name: string;
  diagnostics: Diagnostic[];
}

export type VmResult = VmCompiled | Failed;
export type DepartmentResult = { ok: true; name: string; filter: CompiledFilter; diagnostics: Diagnostic[] } | Failed;

export interface CompiledPolicy {
  global: CompiledFilter;
  departments: Map<string, DepartmentResult>;
  vms: Map<string, VmResult>;
  /** Every compiled filter by libvirt name. */
  filters: Map<string, CompiledFilter>;
  /** Every diagnostic, errors and warnings, of every resource. */
  diagnostics: Diagnostic[];
}

function finish(name: string, level: NwFilter['level'], refs: string[], rules: NwRule[], options: CompileOptions): NwFilter {
  const filter: NwFilter = { name, uuid: filterUuid(name), level, refs, rules: byPriority(rules) };
  return options.optimize === false ? filter : optimizeFilter(filter);
}

function toCompiled(filter: NwFilter): CompiledFilter {
  return { filter, xml: renderFilterXml(filter) };
}

function filterDiagnostics(filter: NwFilter, resource: ResourceRef): Diagnostic[] {
  return validateFilter(filter).map((i) => ({ severity: i.severity, resource, reason: i.reason, message: i.message }));
}

/** Global defaults: one accept per port entry of every service whose `use` / `provide` is true. */
export function compileGlobal(services: readonly ServiceEntry[], options: CompileOptions = {}): NwFilter {
  const rules: NwRule[] = [];
  for (const s of [...services].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    for (const dir of ['use', 'provide'] as const) {
      if (s.spec[dir]) {
        rules.push(...serviceRules(s, dir, 'allow', { level: 'global', owner: 'global', priority: BANDS.globalServiceAllow, enforced: false }));
      }
    }
  }
  return finish(GLOBAL_FILTER, 'global', [], rules, options);
}

function missingServices(
  resource: ResourceRef,
  field: string,
  overrides: readonly { name: string }[],
  services: ReadonlyMap<string, ServiceEntry>,
): Diagnostic[] {
  return overrides.flatMap((o, i) =>
    services.has(o.name)
      ? []
      : [{ severity: 'error' as const, resource, field: `${field}[${i}].name`, reason: 'ServiceNotFound', message: `ServicePolicy "${o.name}" does not exist` }],
  );
}

const NO_GROUPS: ReadonlyMap<string, GroupEntry> = new Map();

/** Rules that name an AddressGroup or a peer selector whose group does not exist: errors, nothing is compiled. */
function missingGroups(resource: ResourceRef, rules: readonly CustomRule[], groups: ReadonlyMap<string, GroupEntry>): Diagnostic[] {
  return rules.flatMap((r, i) => {
    const group = ruleGroup(r);
    const entry = group ? groups.get(group.name) : undefined;
    if (!group || entry?.resolved) return [];
    const peers = r.sourcePeers ?? r.destinationPeers;
    if (entry && !peers) {
      return [
        {
          severity: 'error' as const,
          resource,
          field: `spec.rules[${i}].${r.sourceGroup ? 'sourceGroup' : 'destinationGroup'}`,
          reason: 'PeersNotResolved',
          message: `AddressGroup "${group.name}" selects peers that the controller has not resolved for its current generation yet`,
        },
      ];
    }
    return [
      peers
        ? {
            severity: 'error' as const,
            resource,
            field: `spec.rules[${i}].${r.sourcePeers ? 'sourcePeers' : 'destinationPeers'}`,
            reason: 'PeersNotResolved',
            message: `${describeSelector(peers)} are not resolved yet (AddressGroup "${group.name}", made and resolved by the controller, ${entry ? 'has no resolution of its current generation' : 'does not exist'})`,
          }
        : {
            severity: 'error' as const,
            resource,
            field: `spec.rules[${i}].${r.sourceGroup ? 'sourceGroup' : 'destinationGroup'}`,
            reason: 'AddressGroupNotFound',
            message: `AddressGroup "${group.name}" does not exist`,
          },
    ];
  });
}

/**
 * libvirt priorities of a level's custom rules: ranked by (spec priority, position), so each rule
 * has a priority of its own inside the band (bands.ts). The schema caps a level at 100 rules.
 */
export function customRulePriorities(rules: readonly { priority: number }[], base: number): number[] {
  const order = rules.map((r, i) => ({ p: r.priority, i })).sort((a, b) => a.p - b.p || a.i - b.i);
  const out = new Array<number>(rules.length);
  order.forEach(({ i }, rank) => (out[i] = base + rank));
  return out;
}

export function compileDepartment(
  name: string,
  spec: DepartmentPolicySpec,
  services: ReadonlyMap<string, ServiceEntry>,
  options: CompileOptions = {},
  groups: ReadonlyMap<string, GroupEntry> = NO_GROUPS,
): DepartmentResult {
  const resource: ResourceRef = { kind: 'DepartmentPolicy', name };
  const missing = [...missingServices(resource, 'spec.services', spec.services, services), ...missingGroups(resource, spec.rules, groups)];
  if (missing.length > 0) return { ok: false, name, diagnostics: missing };

  const filterName = departmentFilterName(name);
  const rules: NwRule[] = [];
  // Enforced and ordinary rules are ranked within their own bands.
  const priorityOf = new Map<(typeof spec.rules)[number], number>();
  for (const [enforced, base] of [[true, BANDS.departmentEnforcedRules], [false, BANDS.departmentRules]] as const) {
    const group = spec.rules.filter((r) => r.enforced === enforced);
    customRulePriorities(group, base).forEach((p, i) => priorityOf.set(group[i]!, p));
  }
  spec.rules.forEach((rule, index) => {
    rules.push(...customRules(rule, { level: 'department', owner: name, priority: priorityOf.get(rule)!, index, enforced: rule.enforced }));
  });
  for (const o of spec.services) {
    const service = services.get(o.name)!;
    for (const dir of ['use', 'provide'] as const) {
      // An enforced `inherit` pins the global default above the VM band; a plain `inherit` emits nothing.
      const value = o[dir] === 'inherit' ? (o.enforced ? (service.spec[dir] ? 'allow' : 'deny') : undefined) : o[dir];
      if (value === undefined) continue;
      const priority = o.enforced
        ? value === 'allow' ? BANDS.departmentEnforcedServiceAllow : BANDS.departmentEnforcedServiceDeny
        : value === 'allow' ? BANDS.departmentServiceAllow : BANDS.departmentServiceDeny;
      rules.push(...serviceRules(service, dir, value, { level: 'department', owner: name, priority, enforced: o.enforced }));
    }
  }
  rules.push(...defaultRules(spec.defaultAction, { level: 'department', owner: name, priority: BANDS.departmentDefault }));
  const refs = [GLOBAL_FILTER, ...(spec.cleanTraffic ? ['clean-traffic'] : [])];
  const filter = finish(filterName, 'department', refs, rules, options);
  const diagnostics = filterDiagnostics(filter, resource);
  if (diagnostics.some((d) => d.severity === 'error')) return { ok: false, name, diagnostics };
  return { ok: true, name, filter: toCompiled(filter), diagnostics };
}

function bindingParameters(params: FilterParameters | undefined): InterfaceBinding['parameters'] {
  const out: InterfaceBinding['parameters'] = [];
  for (const ip of params?.ip ?? []) out.push({ name: 'IP', value: ip });
  for (const ip of params?.ipv6 ?? []) out.push({ name: 'IPV6', value: canonicalAddress(ip) });
  if (params?.mac) out.push({ name: 'MAC', value: params.mac });
  return out;
}

export interface VmContext {
  services: ReadonlyMap<string, ServiceEntry>;
  departments: ReadonlyMap<string, DepartmentResult>;
  departmentSpecs: ReadonlyMap<string, DepartmentPolicySpec>;
  global: CompiledFilter;
  /** AddressGroups by name (peer selectors' groups included); none when absent. */
  groups?: ReadonlyMap<string, GroupEntry>;
  /** How the VM filters are compiled; the global and department filters of the context are compiled already. */
  options?: CompileOptions;
}

export function compileVm(name: string, spec: VMFilterSpec, ctx: VmContext): VmResult {
  const resource: ResourceRef = { kind: 'VMFilter', name };
  const errors: Diagnostic[] = [...missingServices(resource, 'spec.services', spec.services, ctx.services), ...missingGroups(resource, spec.rules, ctx.groups ?? NO_GROUPS)];
  let department: DepartmentResult | undefined;
  if (spec.department !== undefined) {
    department = ctx.departments.get(spec.department);
    if (!department) {
      errors.push({ severity: 'error', resource, field: 'spec.department', reason: 'DepartmentNotFound', message: `DepartmentPolicy "${spec.department}" does not exist` });
    } else if (!department.ok) {
      errors.push({ severity: 'error', resource, field: 'spec.department', reason: 'DepartmentInvalid', message: `DepartmentPolicy "${spec.department}" cannot be compiled: ${department.diagnostics.filter((d) => d.severity === 'error').map((d) => d.message).join('; ')}` });
    }
  }
  if (errors.length > 0) return { ok: false, name, diagnostics: errors };

  const deptSpec = spec.department !== undefined ? ctx.departmentSpecs.get(spec.department) : undefined;
  const enforcedByDept = new Set((deptSpec?.services ?? []).filter((o) => o.enforced).map((o) => o.name));
  const warnings: Diagnostic[] = [];
  const rules: NwRule[] = [];
  const vmRulePriorities = customRulePriorities(spec.rules, BANDS.vmRules);
  spec.rules.forEach((rule, index) => {
    rules.push(...customRules(rule, { level: 'vm', owner: name, priority: vmRulePriorities[index]!, index, enforced: false }));
  });
  spec.services.forEach((o, i) => {
    const service = ctx.services.get(o.name)!;
    for (const dir of ['use', 'provide'] as const) {
      if (o[dir] === 'inherit') continue;
      if (enforcedByDept.has(o.name)) {
        warnings.push({ severity: 'warning', resource, field: `spec.services[${i}].${dir}`, reason: 'OverriddenByDepartment', message: `department "${spec.department}" enforces ${o.name}; this override has no effect` });
        continue;
      }
      const priority = o[dir] === 'allow' ? BANDS.vmServiceAllow : BANDS.vmServiceDeny;
      rules.push(...serviceRules(service, dir, o[dir], { level: 'vm', owner: name, priority, enforced: false }));
    }
  });
  // Every VM chain starts with the base rules and, whatever the levels above allowed or not, ends in a drop.
  rules.push(...baseRules({ level: 'vm', owner: name, priority: BANDS.vmBase }));
  rules.push(...defaultRules('drop', { level: 'vm', owner: name, priority: BANDS.vmDefault }));
  const ipv6CleanTraffic = deptSpec?.cleanTraffic === true && (spec.parameters?.ipv6?.length ?? 0) > 0 ? IPV6_CLEAN_TRAFFIC : [];
  const refs = [department?.ok ? department.filter.filter.name : GLOBAL_FILTER, ...ipv6CleanTraffic];
  const filter = finish(vmFilterName(name), 'vm', refs, rules, ctx.options ?? {});
  const diagnostics = [...filterDiagnostics(filter, resource), ...warnings];
  if (diagnostics.some((d) => d.severity === 'error')) return { ok: false, name, diagnostics };

  const compiled = toCompiled(filter);
  const treeFilters: CompiledFilter[] = [ctx.global, ...(department?.ok ? [department.filter] : []), compiled];
  const all = new Map(treeFilters.map((f) => [f.filter.name, f.filter]));
  for (const issue of validateTree(filter.name, all, LIBVIRT_FILTERS)) {
    diagnostics.push({ severity: issue.severity, resource, reason: issue.reason, message: issue.message });
  }
  const sets = setsOfFilters(treeFilters.map((f) => f.filter), ctx.groups ?? NO_GROUPS);
  for (const set of sets) {
    const size = setSize(set);
    if (size > MAX_SET_ENTRIES) {
      diagnostics.push({
        severity: 'error',
        resource,
        reason: 'AddressSetTooLarge',
        message: `AddressGroup "${set.group}" with the ports of a rule needs ${size} kernel set entries (at most ${MAX_SET_ENTRIES}): fewer addresses or a narrower port range`,
      });
    }
  }
  if (diagnostics.some((d) => d.severity === 'error')) return { ok: false, name, diagnostics };
  return {
    ok: true,
    name,
    filter: compiled,
    tree: treeFilters.map((f) => f.filter.name),
    treeFilters,
    effectiveServices: effectiveServices([...ctx.services.values()], deptSpec, spec),
    ruleCount: treeFilters.reduce((n, f) => n + f.filter.rules.length, 0),
    hash: 'sha256:' + sha256Hex(treeFilters.map((f) => f.xml).join('\n')),
    binding: { filter: filter.name, parameters: bindingParameters(spec.parameters) },
    sets,
    spec,
    diagnostics,
  };
}

/** Compiles everything: pure, total on schema-valid input, deterministic. */
export function compilePolicy(input: PolicyInput, options: CompileOptions = {}): CompiledPolicy {
  const services = new Map<string, ServiceEntry>(input.services.map((s) => [s.metadata.name, { name: s.metadata.name, spec: s.spec }]));
  const global = toCompiled(compileGlobal([...services.values()], options));
  const filters = new Map<string, CompiledFilter>([[global.filter.name, global]]);
  const diagnostics: Diagnostic[] = filterDiagnostics(global.filter, { kind: 'ServicePolicy', name: '*' });

  const departmentSpecs = new Map(input.departments.map((d) => [d.metadata.name, d.spec]));
  const groups = groupsOfInput(input);
  const departments = new Map<string, DepartmentResult>();
  for (const d of input.departments) {
    const result = compileDepartment(d.metadata.name, d.spec, services, options, groups);
    departments.set(d.metadata.name, result);
    diagnostics.push(...result.diagnostics);
    if (result.ok) filters.set(result.filter.filter.name, result.filter);
  }

  const ctx: VmContext = { services, departments, departmentSpecs, global, groups, options };
  const vms = new Map<string, VmResult>();
  for (const vm of input.vms) {
    const result = compileVm(vm.metadata.name, vm.spec, ctx);
    vms.set(vm.metadata.name, result);
    diagnostics.push(...result.diagnostics);
    if (result.ok) filters.set(result.filter.filter.name, result.filter);
  }
  return { global, departments, vms, filters, diagnostics };
}

export { resolveDirection };
