import { filterUuid, isManagedFilterName } from '../policy/index.js';

/**
 * A filter is ours when its name has our prefix AND its UUID is the one we derive from the name
 * (filterUuid). A user's own filter that happens to be called `nwf-...` has another UUID (libvirt
 * refuses to redefine a name with a different UUID, so we could not have written it) and is never
 * touched by garbage collection.
 */
export function isOwnedFilter(f: { name: string; uuid: string }): boolean {
  return isManagedFilterName(f.name) && f.uuid.toLowerCase() === filterUuid(f.name);
}

/** The same test on a filter's XML: libvirt writes the UUID as a `<uuid>` child element. */
export function ownedFilterUuid(name: string, xml: string): boolean {
  const m = /<uuid>\s*([0-9a-fA-F-]{36})\s*<\/uuid>/.exec(xml);
  return m !== null && isOwnedFilter({ name, uuid: m[1]! });
}
