// What a reconciler needs from the outside world, kept narrow so the runtime (informer caches,
// server-side apply, status writes, events) can be swapped and reconcilers read top to bottom.
import type { KubernetesObject, V1Deployment, V1Job } from '@kubernetes/client-node';
import type { AdapterCluster, SparseFineTune } from '../../api/v1alpha1/index.js';
import type { BundleRolloutDriver } from '../loraserver/rollout.js';
import type { WorkerSettings } from './worker-pod.js';

export interface ReconcileDeps {
  settings: WorkerSettings;
  now(): Date;
  /** Server-side apply, field manager tessera-operator; never touches the user's spec. */
  apply(obj: KubernetesObject): Promise<void>;
  /** Merge patch of /status with the object's resourceVersion as precondition (409 → requeue). */
  patchStatus(obj: KubernetesObject, status: Record<string, unknown>): Promise<void>;
  deleteJob(namespace: string, name: string): Promise<void>;
  job(namespace: string, name: string): V1Job | undefined;
  /** Jobs carrying the owner's labels, from the cache. */
  jobsOf(namespace: string, kind: string, name: string): V1Job[];
  deployment(namespace: string, name: string): V1Deployment | undefined;
  sparseFineTune(namespace: string, name: string): SparseFineTune | undefined;
  sparseFineTunes(namespace: string): SparseFineTune[];
  adapterCluster(namespace: string, name: string): AdapterCluster | undefined;
  event(obj: KubernetesObject, type: 'Normal' | 'Warning', reason: string, note: string): void;
  /** Moves running LoRAServer replicas to a new bundle set; absent where no status hub runs. */
  rollouts?: BundleRolloutDriver;
}

export interface Result {
  requeueAfter?: number;
}

/** True when `patch` would change nothing in `current` (compared as canonical JSON per key). */
export function statusUnchanged(current: Record<string, unknown> | undefined, patch: Record<string, unknown>): boolean {
  return Object.entries(patch).every(([k, v]) => JSON.stringify(sortKeys(current?.[k])) === JSON.stringify(sortKeys(v)));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, sortKeys(v)]));
  return value;
}
