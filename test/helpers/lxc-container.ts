// A libvirt LXC container as a "VM" on the packet lab's bridge (test/packet/lab.ts), shared by the
// end-to-end tests that send real packets through what the operator wrote: the operator as processes
// (test/integration/e2e/packets.test.ts) and as pods installed by Helm on a real node (test/node).
//
// The container has no root filesystem of its own: it shares the host's, so the host's node binary
// runs echo-init.mjs as its init (TCP/UDP echo servers). Its one interface is a port of the lab's
// bridge, named by <target dev>, which libvirt binds to the domain's filterref when it starts it.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './kubectl.js';
import { LAB, type Endpoint, type Lab, type Probe, type Verdict } from '../packet/lab.js';

export const LXC_URI = 'lxc:///system';
const ECHO_INIT = fileURLToPath(new URL('../integration/e2e/echo-init.mjs', import.meta.url));

export interface ContainerSpec {
  domain: string;
  /** The host side of the container's veth: a lab bridge port (nwfl-<...> so that netlab.sh down sweeps it). */
  hostVeth: string;
  ipv4: string;
  ipv6: string;
  mac: string;
  tcpPorts: number[];
  udpPorts: number[];
}

export interface VirshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** virsh on the LXC driver. nwfilter objects are the nwfilter driver's: the same over any URI. */
export function virsh(...args: string[]): VirshResult {
  const r = spawnSync('virsh', ['-c', LXC_URI, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, LC_ALL: 'C' } });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') };
}

export function virshOk(...args: string[]): string {
  const r = virsh(...args);
  if (r.code !== 0) throw new Error(`virsh ${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export const domainState = (domain: string) => virsh('domstate', domain).stdout.trim();

/** The filters the domain's interfaces reference, live or (inactive) in the persistent definition. */
export const filterrefs = (domain: string, inactive: boolean) =>
  [...virshOk('dumpxml', ...(inactive ? ['--inactive'] : []), domain).matchAll(/<filterref filter='([^']+)'/g)].map((m) => m[1]);

/** Destroys (when running) and undefines a domain; quiet when it does not exist. */
export function removeDomain(name: string): void {
  if (virsh('domstate', name).code !== 0) return;
  virsh('destroy', name);
  const r = virsh('undefine', name);
  if (r.code !== 0 && virsh('domstate', name).code === 0) throw new Error(`undefine ${name}: ${r.stderr}`);
}

/** Removes the domains a killed run left (names matching `pattern`); call under the lab's lock. */
export function removeLeftoverDomains(pattern: RegExp): void {
  for (const name of virshOk('list', '--all', '--name').split('\n').map((s) => s.trim())) {
    if (pattern.test(name)) removeDomain(name);
  }
}

/** Undefines the nwfilters whose names start with one of `prefixes`. */
export function undefineFilters(...prefixes: string[]): void {
  const names = virsh('nwfilter-list').stdout.split('\n').map((l) => l.trim().split(/\s+/)[1] ?? '');
  for (const n of names.filter((n) => prefixes.some((p) => n.startsWith(p)))) virshOk('nwfilter-undefine', n);
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');

/** The container's domain XML: one interface on the lab bridge that libvirt configures inside. */
export function containerDomainXml(spec: ContainerSpec): string {
  const initargs = [ECHO_INIT, '--tcp', spec.tcpPorts.join(','), '--udp', spec.udpPorts.join(',')]
    .map((a) => `<initarg>${xmlEscape(a)}</initarg>`)
    .join('');
  return `<domain type='lxc'>
  <name>${spec.domain}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type>exe</type><init>${xmlEscape(process.execPath)}</init>${initargs}</os>
  <devices>
    <interface type='bridge'>
      <mac address='${spec.mac}'/>
      <source bridge='${LAB.bridge}'/>
      <target dev='${spec.hostVeth}'/>
      <ip address='${spec.ipv4}' family='ipv4' prefix='24'/>
      <route family='ipv4' address='0.0.0.0' prefix='0' gateway='${LAB.host4}'/>
    </interface>
    <console type='pty'/>
  </devices>
</domain>
`;
}

/** The container as a probe target: only its addresses and bridge port matter to the lab. */
export const containerEndpoint = (spec: ContainerSpec): Endpoint => ({
  name: 'ct',
  ns: `(lxc ${spec.domain})`,
  port: spec.hostVeth,
  mac: spec.mac,
  ipv4: spec.ipv4,
  ipv6: spec.ipv6,
  segment: 'bridge',
});

/**
 * Forgets the container's flows in the root namespace's conntrack (bridge netfilter tracks bridged
 * flows there), so that every round of probes is judged by the rules of the moment, not by an entry
 * an earlier round left (libvirt's rules accept ESTABLISHED traffic). Exit 1: nothing to delete.
 */
export function forgetFlows(ip: string): void {
  for (const dir of ['-s', '-d']) {
    const r = spawnSync('conntrack', ['-D', dir, ip], { encoding: 'utf8', timeout: 10_000 });
    if (r.status !== 0 && r.status !== 1) throw new Error(`conntrack -D ${dir} ${ip}: ${r.stderr}`);
  }
}

export type ProbeSet = Record<string, Omit<Probe, 'from' | 'to' | 'timeoutMs'>>;
export type Verdicts = Record<string, Verdict>;

/** Generous for `open` on a loaded 2-core machine; a `dropped` verdict costs this much. */
export const PROBE_TIMEOUT_MS = 1500;

/** Sends every probe of a set from `peer` to the container at once; name -> verdict, and the details. */
export async function probeAll(lab: Lab, peer: Endpoint, ct: Endpoint, probes: ProbeSet): Promise<{ verdicts: Verdicts; details: string }> {
  forgetFlows(ct.ipv4!);
  const names = Object.keys(probes);
  const results = await lab.probeAll(
    names.map((n) => ({ from: peer, to: ct, timeoutMs: PROBE_TIMEOUT_MS, ...probes[n]! })),
    { concurrency: names.length },
  );
  return {
    verdicts: Object.fromEntries(results.map((r, i) => [names[i]!, r.verdict])),
    details: results.map((r) => `${r.label}: ${r.verdict} (${r.detail}, ${r.ms} ms)`).join('; '),
  };
}

/** Polls one probe until it gives `want` (the container starting, a rule arriving); bounded. */
export async function waitVerdict(lab: Lab, peer: Endpoint, ct: Endpoint, probe: ProbeSet[string], want: Verdict, timeoutMs = 30_000): Promise<void> {
  let last = 'none';
  try {
    await waitFor(
      `${probe.proto} ${probe.port ?? ''} ${want} from the peer`,
      async () => {
        const r = await lab.probe({ from: peer, to: ct, timeoutMs: PROBE_TIMEOUT_MS, ...probe });
        last = `${r.verdict} (${r.detail})`;
        return r.verdict === want ? true : undefined;
      },
      timeoutMs,
      200,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last probe: ${last}; container: ${ct.ns}`);
  }
}

const API = 'nwfilter.infinibay.io/v1alpha1';

/**
 * The department the end-to-end tests put the container in: the given services provided (or not),
 * ping from the lab accepted, everything else dropped.
 */
export function labDepartment(name: string, labels: Record<string, string>, services: { name: string; provide: 'allow' | 'deny' }[]) {
  return {
    apiVersion: API,
    kind: 'DepartmentPolicy',
    metadata: { name, labels },
    spec: {
      services,
      rules: [{ action: 'accept', direction: 'in', protocol: 'icmp', source: `${LAB.net4}.0/24`, comment: 'ping from the lab' }],
      cleanTraffic: false,
      defaultAction: 'drop',
    },
  };
}

/** The container's VMFilter: its domain, its department, its address as the filter's IP parameter. */
export function containerVmFilter(spec: ContainerSpec, department: string, labels: Record<string, string>, extra: { nodeName?: string } = {}) {
  return {
    apiVersion: API,
    kind: 'VMFilter',
    metadata: { name: spec.domain, labels },
    spec: { domain: { name: spec.domain }, department, ...extra, parameters: { ip: [spec.ipv4] } },
  };
}
