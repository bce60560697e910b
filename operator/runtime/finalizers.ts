// Finalizers, written as a merge patch of metadata.finalizers alone with the read resourceVersion
// as precondition: a concurrent change (another finalizer added or removed) gives a 409 and the
// reconcile retries from the fresh object, instead of silently dropping someone's finalizer.
import type { KubernetesObject } from '@kubernetes/client-node';
import type { RestClient } from './rest.js';

export function hasFinalizer(obj: KubernetesObject, finalizer: string): boolean {
  return obj.metadata?.finalizers?.includes(finalizer) ?? false;
}

/** Adds `finalizer` unless present; returns the updated object, or undefined when nothing changed. */
export async function addFinalizer<T extends KubernetesObject>(rest: RestClient, obj: T, finalizer: string): Promise<T | undefined> {
  if (hasFinalizer(obj, finalizer)) return undefined;
  return writeFinalizers(rest, obj, [...(obj.metadata?.finalizers ?? []), finalizer]);
}

/** Removes `finalizer` if present; returns the updated object, or undefined when nothing changed. */
export async function removeFinalizer<T extends KubernetesObject>(rest: RestClient, obj: T, finalizer: string): Promise<T | undefined> {
  if (!hasFinalizer(obj, finalizer)) return undefined;
  return writeFinalizers(rest, obj, (obj.metadata?.finalizers ?? []).filter((f) => f !== finalizer));
}

async function writeFinalizers<T extends KubernetesObject>(rest: RestClient, obj: T, finalizers: string[]): Promise<T> {
  const resourceVersion = obj.metadata?.resourceVersion;
  if (!resourceVersion) throw new Error(`cannot change finalizers of ${obj.kind} ${obj.metadata?.name}: it has no resourceVersion (was it read from the API server?)`);
  // null, not [], deletes the field; an empty list would still be written and show up in diffs.
  return rest.patch<T>(obj, 'merge', { metadata: { resourceVersion, finalizers: finalizers.length ? finalizers : null } });
}
