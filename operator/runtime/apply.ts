// Writes the operator makes: children by server-side apply (the operator owns exactly the fields
// it sets, and other managers' fields survive), and status through the /status subresource only,
// so a user's spec, labels and annotations are never written.
import type { KubernetesObject } from '@kubernetes/client-node';
import type { RestClient } from './rest.js';
import { semanticEqual } from './semantic.js';

export const FIELD_MANAGER = 'tessera-operator';

/**
 * Server-side apply with force: the operator is the authority on its children's fields. Applying
 * the same object twice is a no-op on the server (the resourceVersion does not move).
 */
export async function applyObject<T extends KubernetesObject>(rest: RestClient, obj: T): Promise<T> {
  if (!obj.apiVersion || !obj.kind || !obj.metadata?.name) {
    throw new Error(`cannot apply an object without apiVersion, kind and metadata.name: got ${JSON.stringify({ apiVersion: obj.apiVersion, kind: obj.kind, name: obj.metadata?.name })}`);
  }
  // An apply body carrying resourceVersion or managedFields would be a precondition or a takeover, not a desire.
  const { resourceVersion: _rv, managedFields: _mf, uid: _uid, creationTimestamp: _ct, ...metadata } = obj.metadata;
  return rest.patch<T>(obj, 'apply', { ...obj, metadata, status: undefined }, { fieldManager: FIELD_MANAGER, force: true });
}

/** True when merging `patch` into `current` would change nothing (null in the patch deletes a field). */
export function statusUnchanged(current: Record<string, unknown> | undefined, patch: Record<string, unknown>): boolean {
  return Object.entries(patch).every(([k, v]) => (v === null ? current?.[k] === undefined : semanticEqual(current?.[k], v)));
}

/**
 * Merges `status` into the object's status through /status, only when it changes something.
 * The read resourceVersion is a precondition: a 409 means the reconcile worked from a stale
 * object and should be retried (the thrown error requeues it). Returns the written object, or
 * undefined when nothing needed writing.
 */
export async function patchStatus<T extends KubernetesObject & { status?: unknown }>(
  rest: RestClient,
  obj: T,
  status: Record<string, unknown>,
): Promise<T | undefined> {
  if (statusUnchanged(obj.status as Record<string, unknown> | undefined, status)) return undefined;
  const resourceVersion = obj.metadata?.resourceVersion;
  if (!resourceVersion) throw new Error(`cannot patch the status of ${obj.kind} ${obj.metadata?.name}: it has no resourceVersion (was it read from the API server?)`);
  return rest.patch<T>(obj, 'merge', { metadata: { resourceVersion }, status }, { subresource: 'status', fieldManager: FIELD_MANAGER });
}
