import { GROUP, KINDS, VERSION, type KindInfo } from '../api/index.js';

export type KindName = KindInfo['kind'];

export function kindInfo(kind: KindName): KindInfo {
  return KINDS.find((k) => k.kind === kind)!;
}

/** Collection path of a cluster-scoped kind of ours, for list and watch. */
export function collectionPath(kind: KindName): string {
  return `/apis/${GROUP}/${VERSION}/${kindInfo(kind).plural}`;
}

export const FINALIZER = 'nwfilter.infinibay.io/cleanup';
