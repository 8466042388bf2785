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
