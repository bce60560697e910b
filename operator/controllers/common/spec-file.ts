// The spec a worker reads from its mounted file: the object's identity, its spec, and where each
// storage URI can be found inside the pod.
import type { V1ConfigMap } from '@kubernetes/client-node';
import { resolveStorage, type StorageUse } from './storage.js';
import { ownerReference, type OwnerInfo } from './worker-pod.js';

export interface WorkerSpecFile<S> {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; uid: string; generation: number };
  spec: S;
  /** URI → path inside the pod (or the URL itself for http(s)). */
  locations: Record<string, string>;
  /** Extra inputs the operator resolved (e.g. adapters produced by a SparseFineTune). */
  inputs?: Record<string, unknown>;
}

export function specConfigMap<S>(owner: OwnerInfo, name: string, labels: Record<string, string>, spec: S, uris: StorageUse[], inputs?: Record<string, unknown>): V1ConfigMap {
  const locations: Record<string, string> = {};
  for (const { uri, writable, folder } of uris) locations[uri] = resolveStorage(uri, writable, folder).location;
  const file: WorkerSpecFile<S> = {
    apiVersion: owner.apiVersion, kind: owner.kind,
    metadata: { name: owner.name, namespace: owner.namespace, uid: owner.uid, generation: owner.generation },
    spec, locations, ...(inputs ? { inputs } : {}),
  };
  return {
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: { name, namespace: owner.namespace, labels, ownerReferences: [ownerReference(owner)] },
    data: { 'spec.json': `${JSON.stringify(file, null, 2)}\n` },
  };
}

export function ownerInfo(obj: { apiVersion: string; kind: string; metadata: { name?: string; namespace?: string; uid?: string; generation?: number } }): OwnerInfo {
  return {
    apiVersion: obj.apiVersion, kind: obj.kind,
    name: obj.metadata.name ?? '', namespace: obj.metadata.namespace ?? '', uid: obj.metadata.uid ?? '', generation: obj.metadata.generation ?? 0,
  };
}
