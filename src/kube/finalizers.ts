import { PatchStrategy, setHeaderOptions, type CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/index.js';
import { kindInfo, type KindName } from './resources.js';

const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);

/**
 * Sets the finalizer list with a JSON patch that first tests the current list, so a concurrent
 * change by someone else fails (409/422) and is retried instead of being overwritten.
 */
async function setFinalizers(custom: CustomObjectsApi, kind: KindName, name: string, current: string[] | undefined, next: string[]): Promise<void> {
  const ops = current === undefined
    ? [{ op: 'add', path: '/metadata/finalizers', value: next }]
    : [
        { op: 'test', path: '/metadata/finalizers', value: current },
        { op: 'replace', path: '/metadata/finalizers', value: next },
      ];
  await custom.patchClusterCustomObject({ group: GROUP, version: VERSION, plural: kindInfo(kind).plural, name, body: ops }, jsonPatch);
}

export async function addFinalizer(custom: CustomObjectsApi, kind: KindName, name: string, current: string[] | undefined, finalizer: string): Promise<boolean> {
  if (current?.includes(finalizer)) return false;
  await setFinalizers(custom, kind, name, current, [...(current ?? []), finalizer]);
  return true;
}

export async function removeFinalizer(custom: CustomObjectsApi, kind: KindName, name: string, current: string[] | undefined, finalizer: string): Promise<boolean> {
  if (!current?.includes(finalizer)) return false;
  await setFinalizers(custom, kind, name, current, current.filter((f) => f !== finalizer));
  return true;
}
