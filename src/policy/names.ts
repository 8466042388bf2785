import { createHash } from 'node:crypto';

export const FILTER_PREFIX = 'nwf-';
export const GLOBAL_FILTER = 'nwf-global';

/** libvirt stores /etc/libvirt/nwfilter/<name>.xml: keep well under the 255-byte file name limit. */
const MAX_NAME = 200;

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Kubernetes names are unique per kind and the prefixes differ per kind, so `prefix + name` is
 * collision-free. Only names too long for libvirt are shortened, and then with 64 bits of a
 * SHA-256 of the full name (the reference system collided on short truncated hashes).
 */
function filterName(prefix: string, name: string): string {
  const full = prefix + name;
  if (full.length <= MAX_NAME) return full;
  const digest = sha256Hex(full).slice(0, 16);
  return `${full.slice(0, MAX_NAME - digest.length - 1)}-${digest}`;
}

export const departmentFilterName = (department: string): string => filterName('nwf-dept-', department);
export const vmFilterName = (vmFilter: string): string => filterName('nwf-vm-', vmFilter);

/**
 * The VMFilter a VM filter name was made from, when the name says so for certain: a name shorter
 * than the limit was never shortened. One at the limit may be a shortened one (undefined).
 */
export function vmFilterOfName(filter: string): string | undefined {
  if (!filter.startsWith('nwf-vm-') || filter.length >= MAX_NAME) return undefined;
  return filter.slice('nwf-vm-'.length);
}

/**
 * Prefix of every kernel IP set the agent manages (`nwf:4-...`, `nwf:6-...`): the agent removes the
 * sets with it that no VM wants, so nothing else may use it (':' is rare in set names and libvirt
 * accepts it).
 */
export const SET_PREFIX = 'nwf:';
/** The kernel's IPSET_MAXNAMELEN is 32 with the terminating NUL; libvirt's schema allows 31 characters. */
const MAX_SET_NAME = 31;

/**
 * The kernel IP set of one family of an AddressGroup: `nwf:4-<group>` / `nwf:6-<group>` while that
 * fits in 31 characters, else the group name's start and 64 bits of a SHA-256 of the full name.
 * Object names are [a-z0-9.-], all characters libvirt's ipset name pattern allows.
 */
export function addressSetName(group: string, family: 4 | 6): string {
  const full = `${SET_PREFIX}${family}-${group}`;
  if (full.length <= MAX_SET_NAME) return full;
  const digest = sha256Hex(group).slice(0, 16);
  return `${full.slice(0, MAX_SET_NAME - digest.length - 1)}-${digest}`;
}

/**
 * The `hash:net,port` set of one family of a group combined with a rule's ports: named by the
 * group's start and 48 bits of a SHA-256 of the group and the ports, since many rules may pair the
 * same group with different ports. `ports` is the ports' canonical text (groups.ts).
 */
export function portSetName(group: string, family: 4 | 6, ports: string): string {
  return `${SET_PREFIX}${family}-${group.slice(0, 12)}-${sha256Hex(`${group}\n${ports}`).slice(0, 12)}`;
}

export const isManagedSetName = (name: string): boolean => name.startsWith(SET_PREFIX);

export function isManagedFilterName(name: string): boolean {
  return name.startsWith(FILTER_PREFIX);
}

/**
 * libvirt requires the existing UUID when a filter is redefined. Deriving it from the name makes
 * it stable across agent restarts and lets `render` print exactly what the agent defines.
 * RFC 4122 name-based layout (version 5 bits) over SHA-256 instead of SHA-1.
 */
export function filterUuid(name: string): string {
  const h = sha256Hex('nwfilter.infinibay.io/' + name);
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export { sha256Hex };
