import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const LIBVIRT_URI = process.env.LIBVIRT_DEFAULT_URI ?? 'qemu:///system';

/** virsh, for checking from outside what the agent did (independent of our RPC client). */
export function virsh(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('virsh', ['-c', LIBVIRT_URI, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function filterNames(prefix = 'nwf-'): string[] {
  return virsh('nwfilter-list')
    .stdout.split('\n')
    .map((l) => l.trim().split(/\s+/)[1])
    .filter((n): n is string => !!n && n.startsWith(prefix));
}

/** Defines a persistent domain (not started) with one ethernet interface. */
export function defineDomain(name: string, mac: string, tap: string): void {
  const xml = `<domain type='qemu'><name>${name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><interface type='ethernet'><mac address='${mac}'/><target dev='${tap}' managed='yes'/><model type='virtio'/></interface>
<graphics type='vnc' port='-1' listen='127.0.0.1'/></devices></domain>`;
  const file = join(mkdtempSync(join(tmpdir(), 'nwf-dom-')), `${name}.xml`);
  writeFileSync(file, xml);
  const r = spawnSync('virsh', ['-c', LIBVIRT_URI, 'define', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`define ${name}: ${r.stderr}`);
}

export function removeDomain(name: string): void {
  virsh('destroy', name);
  virsh('undefine', name);
}

export function domainFilterrefs(name: string, inactive = false): string[] {
  const xml = virsh('dumpxml', ...(inactive ? ['--inactive'] : []), name).stdout;
  return [...xml.matchAll(/<filterref filter='([^']+)'/g)].map((m) => m[1]!);
}

/** The domain's UUID (virsh domuuid). */
export function domainUuid(name: string): string {
  const r = virsh('domuuid', name);
  if (r.code !== 0) throw new Error(`domuuid ${name}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Every interface of the domain with the filter its <filterref> names (undefined: none). */
export function domainInterfaceFilters(name: string, inactive = false): { mac: string; filter: string | undefined }[] {
  const xml = virsh('dumpxml', ...(inactive ? ['--inactive'] : []), name).stdout;
  return [...xml.matchAll(/<interface\b[\s\S]*?<\/interface>/g)].map((m) => ({
    mac: (/<mac address='([^']+)'/.exec(m[0])?.[1] ?? '').toLowerCase(),
    filter: /<filterref filter='([^']+)'/.exec(m[0])?.[1],
  }));
}

/**
 * Adds an ethernet interface to the domain's persistent definition only (`attach-device --config`),
 * as a user hot-plugging a NIC into a shut-off domain would.
 */
export function attachInterfaceConfig(domain: string, mac: string, tap: string): void {
  const file = join(mkdtempSync(join(tmpdir(), 'nwf-nic-')), 'nic.xml');
  writeFileSync(file, `<interface type='ethernet'><mac address='${mac}'/><target dev='${tap}' managed='yes'/><model type='virtio'/></interface>`);
  const r = virsh('attach-device', domain, file, '--config');
  if (r.code !== 0) throw new Error(`attach-device ${domain}: ${r.stderr}`);
}

/**
 * Hot-plugs a USB NIC into a running domain (QEMU unplugs and plugs USB devices by itself, so a
 * guest without an OS does not matter; PCI hot-plug would need <acpi/> and a guest that answers).
 */
export function attachInterfaceLive(domain: string, mac: string, tap: string): void {
  const file = join(mkdtempSync(join(tmpdir(), 'nwf-nic-')), 'nic.xml');
  writeFileSync(file, `<interface type='ethernet'><mac address='${mac}'/><target dev='${tap}' managed='yes'/><model type='usb-net'/></interface>`);
  const r = virsh('attach-device', domain, file, '--live');
  if (r.code !== 0) throw new Error(`attach-device --live ${domain}: ${r.stderr}`);
}

/** Defines an nwfilter from XML with virsh (libvirt picks a random UUID when the XML has none). */
export function defineFilter(xml: string): void {
  const file = join(mkdtempSync(join(tmpdir(), 'nwf-filter-')), 'filter.xml');
  writeFileSync(file, xml);
  const r = virsh('nwfilter-define', file);
  if (r.code !== 0) throw new Error(`nwfilter-define: ${r.stderr}`);
}

/** Names of every domain (running or not) whose name starts with `prefix`. */
export function domainNames(prefix = ''): string[] {
  return virsh('list', '--all', '--name')
    .stdout.split('\n')
    .map((l) => l.trim())
    .filter((n) => n !== '' && n.startsWith(prefix));
}
