import { GROUP, VERSION, kindInfo, type KindName } from '../api/index.js';

export { kindInfo, type KindName } from '../api/index.js';

/** Collection path of a cluster-scoped kind of ours, for list and watch. */
export function collectionPath(kind: KindName): string {
  return `/apis/${GROUP}/${VERSION}/${kindInfo(kind).plural}`;
}

export const FINALIZER = 'nwfilter.infinibay.io/cleanup';
