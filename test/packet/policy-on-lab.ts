// Puts compiled policies on the packet lab: defines a VM's filter tree in the real libvirtd under
// lab-private names (swept by hack/netlab.sh down), binds it to the VM endpoint's bridge port, and
// predicts every probe with the same model `explain` uses, so tests can hold the kernel's answer
// against both the documented promise and explain.
import {
  compilePolicy,
  evaluateConnection,
  evaluateDelivery,
  filterUuid,
  instantiateTree,
  renderFilterXml,
  setEntries,
  type ChainDecision,
  type CompiledPolicy,
  type ConnectionResult,
  type DeliveryQuery,
  type NwFilter,
  type PolicyInput,
  type RuleInstance,
  type SetMembers,
  type VmCompiled,
} from '../../src/policy/index.js';
import { LibvirtClient } from '../../src/libvirt/index.js';
import { IpSetManager, type DesiredSet } from '../../src/netfilter/index.js';
import { LAB, Lab, type Endpoint, type Probe, type Target, type Verdict } from './lab.js';

/** What each endpoint listens on (the lab's echo servers), to predict open versus refused. */
export type Listening = Map<string, { tcp: Set<number>; udp: Set<number> }>;

export interface BoundVm {
  name: string;
  endpoint: Endpoint;
  compiled: VmCompiled;
  root: string;
  filters: Map<string, NwFilter>;
  instances: RuleInstance[];
  unevaluated: string[];
  /** Members of the tree's kernel sets, by their lab-private names. */
  sets: SetMembers;
}

const addressOf = (t: Target, family: 4 | 6): string => (t === 'host' ? (family === 4 ? LAB.host4 : LAB.host6) : family === 4 ? t.ipv4 : t.ipv6);
const nameOf = (t: Target): string => (t === 'host' ? 'host' : t.name);

export class PolicyOnLab {
  private readonly bound = new Map<string, BoundVm>();
  readonly listening: Listening = new Map();
  /** Every filter name this fixture defined, for clean-up. */
  private readonly defined = new Set<string>();
  /** Kernel sets under lab-private names (`<prefix>:<n>`): never the agent's `nwf:`, swept by cleanup(). */
  private readonly setNames = new Map<string, string>();
  private readonly ipsets = new IpSetManager();

  /**
   * A lab, a libvirt client and the fixture; `close()` undoes all of it (also after a failed set-up).
   * The host's ICMP rate limits, which would turn a burst of REJECT answers into silence, are lifted
   * by hack/netlab.sh up (the packet project's global setup).
   */
  static async open(labName: string, prefix: string): Promise<{ lab: Lab; fx: PolicyOnLab; close: () => Promise<void> }> {
    let lab: Lab | undefined;
    let client: LibvirtClient | undefined;
    let fx: PolicyOnLab | undefined;
    const close = async (): Promise<void> => {
      await fx?.cleanup();
      await client?.close();
      await lab?.close();
    };
    try {
      lab = await Lab.create({ name: labName });
      client = new LibvirtClient({ socketPath: process.env.NWF_LIBVIRT_SOCKET ?? '/var/run/libvirt/libvirt-sock' });
      await client.connect();
      fx = new PolicyOnLab(lab, client, prefix);
      return { lab, fx, close };
    } catch (e) {
      await close();
      throw e;
    }
  }

  constructor(
    private readonly lab: Lab,
    private readonly client: LibvirtClient,
    /** Prefix of every filter name: must start with LAB.filterPrefix so that netlab.sh down sweeps it. */
    readonly prefix: string,
  ) {
    if (!prefix.startsWith(LAB.filterPrefix)) throw new Error(`filter prefix must start with ${LAB.filterPrefix}`);
  }

  async listen(t: Target, spec: { tcp?: number[]; udp?: number[] }): Promise<void> {
    await this.lab.listen(t, { tcp: spec.tcp ?? [], udp: spec.udp ?? [] });
    const entry = this.listening.get(nameOf(t)) ?? { tcp: new Set<number>(), udp: new Set<number>() };
    for (const p of spec.tcp ?? []) entry.tcp.add(p);
    for (const p of spec.udp ?? []) entry.udp.add(p);
    this.listening.set(nameOf(t), entry);
  }

  private rename(name: string): string {
    return name === 'clean-traffic' ? name : `${this.prefix}${name}`;
  }

  private get setPrefix(): string {
    // At most 24 characters (the ipset module's limit for a prefix): the run's filter prefix, shortened.
    return `${this.prefix.slice(0, 18)}:`;
  }

  /** The lab-private name of a compiled kernel set (the same compiled name always gets the same one). */
  privateSet(name: string): string {
    let p = this.setNames.get(name);
    if (!p) this.setNames.set(name, (p = `${this.setPrefix}${this.setNames.size}`));
    return p;
  }

  private privateFilter(filter: NwFilter): NwFilter {
    const name = this.rename(filter.name);
    const rules = filter.rules.map((r) => (r.set ? { ...r, set: { ...r.set, name: this.privateSet(r.set.name) } } : r));
    return { ...filter, name, uuid: filterUuid(name), refs: filter.refs.map((r) => this.rename(r)), rules };
  }

  /**
   * The kernel sets every bound VM (and `next`) needs, with the members of this compile: what the
   * agent's AddressSets does, through the same ipset module.
   */
  private async syncSets(next: VmCompiled[]): Promise<void> {
    const desired = new Map<string, DesiredSet>();
    for (const vm of [...[...this.bound.values()].map((b) => b.compiled), ...next]) {
      for (const s of vm.sets) desired.set(this.privateSet(s.name), { family: s.family, type: s.type, members: setEntries(s) });
    }
    await this.ipsets.sync(desired, { prefix: this.setPrefix });
  }

  /**
   * Compiles `input`, defines the trees of the VMs in `endpoints` (only what changed is redefined by
   * libvirt itself: an unchanged definition is a no-op) and binds each VM endpoint to its VM filter
   * unless it is bound to it already. Returns the compile result.
   */
  async apply(
    input: PolicyInput,
    endpoints: Record<string, Endpoint>,
    /** Changes a compiled filter before it is defined: only for control experiments that must fail. */
    tamper: (f: NwFilter) => NwFilter = (f) => f,
    /** Bind anew even when nothing changed: unbinding also forgets the endpoint's conntrack entries. */
    options: { rebind?: boolean } = {},
  ): Promise<CompiledPolicy> {
    const compiled = compilePolicy(input);
    const vms = Object.keys(endpoints).map((vmName) => {
      const vm = compiled.vms.get(vmName);
      if (!vm?.ok) throw new Error(`VM ${vmName} did not compile: ${JSON.stringify(vm?.diagnostics)}`);
      return vm;
    });
    // Sets first: libvirt cannot instantiate a rule on a set that does not exist.
    await this.syncSets(vms);
    for (const [vmName, endpoint] of Object.entries(endpoints)) {
      const vm = compiled.vms.get(vmName) as VmCompiled;
      const filters = vm.treeFilters.map((f) => this.privateFilter(tamper(f.filter)));
      for (const f of filters) {
        await this.client.defineFilter(renderFilterXml(f), { adoptExistingUuid: true });
        this.defined.add(f.name);
      }
      const root = this.rename(vm.filter.filter.name);
      const params = vm.binding.parameters;
      const previous = this.bound.get(vmName);
      const sameBinding = previous && previous.root === root && JSON.stringify(previous.compiled.binding.parameters) === JSON.stringify(params);
      if (!sameBinding || options.rebind) {
        if (previous) await this.lab.unbind(previous.endpoint);
        await this.lab.bind(endpoint, root, params);
      }
      const map = new Map(filters.map((f) => [f.name, f]));
      const { instances, unevaluated } = instantiateTree(root, map);
      const sets = new Map(vm.sets.map((s) => [this.privateSet(s.name), s.members]));
      this.bound.set(vmName, { name: vmName, endpoint, compiled: vm, root, filters: map, instances, unevaluated, sets });
    }
    return compiled;
  }

  /**
   * Defines and binds a filter tree that does not come from compilePolicy (the agent's quarantine
   * filter, say): `filters` are referenced-first, the last one is the root; `compiled` stands for
   * the VM the tree belongs to (its binding parameters are used).
   */
  async applyTree(vmName: string, filters: NwFilter[], endpoint: Endpoint, compiled: VmCompiled): Promise<void> {
    const own = filters.map((f) => this.privateFilter(f));
    for (const f of own) {
      await this.client.defineFilter(renderFilterXml(f), { adoptExistingUuid: true });
      this.defined.add(f.name);
    }
    const root = own.at(-1)!.name;
    const previous = this.bound.get(vmName);
    if (previous) await this.lab.unbind(previous.endpoint);
    await this.lab.bind(endpoint, root, compiled.binding.parameters);
    const map = new Map(own.map((f) => [f.name, f]));
    const { instances, unevaluated } = instantiateTree(root, map);
    this.bound.set(vmName, { name: vmName, endpoint, compiled, root, filters: map, instances, unevaluated, sets: new Map() });
  }

  vm(name: string): BoundVm {
    const b = this.bound.get(name);
    if (!b) throw new Error(`VM ${name} is not bound`);
    return b;
  }

  /** The VM a probe crosses: the filtered side of it. Exactly one side must be a bound VM. */
  private vmOf(p: Probe): { vm: BoundVm; direction: 'in' | 'out'; remote: Target } {
    const byEndpoint = (t: Target): BoundVm | undefined => (t === 'host' ? undefined : [...this.bound.values()].find((b) => b.endpoint.name === t.name));
    const from = byEndpoint(p.from);
    const to = byEndpoint(p.to);
    if (from && to) throw new Error('a probe between two bound VMs crosses two filters: not predicted');
    if (from) return { vm: from, direction: 'out', remote: p.to };
    if (to) return { vm: to, direction: 'in', remote: p.from };
    throw new Error('a probe that crosses no bound VM');
  }

  /**
   * explain's answer for a probe (the same model and function the CLI uses), on the bound tree's
   * instances or on `instances` of the same VM compiled otherwise (e.g. without the optimizer).
   */
  predict(p: Probe, instances?: readonly RuleInstance[]): ConnectionResult & { verdict: Verdict } {
    const { vm, direction, remote } = this.vmOf(p);
    const responder = nameOf(p.to);
    const listening = p.proto === 'icmp' || (this.listening.get(responder)?.[p.proto].has(p.port ?? -1) ?? false);
    const result = evaluateConnection(
      instances ?? vm.instances,
      {
        direction,
        protocol: p.proto,
        family: p.family,
        ...(p.port !== undefined ? { port: p.port } : {}),
        ...(p.srcPort !== undefined ? { sourcePort: p.srcPort } : {}),
        vmAddress: addressOf(vm.endpoint, p.family),
        remoteAddress: addressOf(remote, p.family),
        remoteIsHost: remote === 'host',
        listening,
      },
      vm.unevaluated,
      vm.sets,
    );
    return { ...result, verdict: result.outcome };
  }

  /**
   * explain's answer for one packet sent on its own (a delivery probe): the chain decision of the
   * bound VM the packet enters or leaves, with the conntrack state the kernel gives such a packet.
   */
  predictDelivery(vmName: string, q: DeliveryQuery): { decision: ChainDecision; verdict: 'delivered' | 'dropped' } {
    const vm = this.vm(vmName);
    const decision = evaluateDelivery(vm.instances, q, vm.sets);
    return { decision, verdict: decision.verdict === 'accept' ? 'delivered' : 'dropped' };
  }

  /** Every filter binding of the libvirtd (to see that nothing was rebound). */
  bindings(): ReturnType<LibvirtClient['listBindings']> {
    return this.client.listBindings();
  }

  /** The XML libvirt holds for a filter of ours (by its compiled name). */
  async filterXml(compiledName: string): Promise<string> {
    return this.client.filterXml(this.rename(compiledName));
  }

  async cleanup(): Promise<void> {
    for (const b of this.bound.values()) await this.lab.unbind(b.endpoint).catch(() => undefined);
    this.bound.clear();
    // Referencing filters first: libvirt refuses to undefine a filter that a bound one uses.
    const names = [...this.defined].sort((a, b) => order(a) - order(b));
    for (const n of names) await this.client.undefineFilter(n).catch(() => undefined);
    this.defined.clear();
    // With the filters gone nothing references the sets: an empty desired state destroys them all.
    if (this.setNames.size > 0) await this.ipsets.sync(new Map(), { prefix: this.setPrefix }).catch(() => undefined);
  }
}

const order = (name: string): number => (name.includes('nwf-vm-') ? 0 : name.includes('nwf-dept-') ? 1 : 2);

/** "peer -> vm1 tcp/4:22  kernel=open explain=open" for failure messages. */
export function describeProbe(p: Probe, kernel: Verdict, predicted?: ConnectionResult): string {
  const port = p.proto === 'icmp' ? '' : `:${p.port}`;
  const steps = predicted ? ` [${predicted.steps.map((s) => `${s.packet?.chain ?? 'host'} ${s.decision?.verdict ?? 'unfiltered'}`).join(', ')}]` : '';
  return `${nameOf(p.from)} -> ${nameOf(p.to)} ${p.proto}/${p.family}${port}: kernel=${kernel}${predicted ? ` explain=${predicted.outcome}` : ''}${steps}`;
}
