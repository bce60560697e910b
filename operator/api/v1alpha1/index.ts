// tessera.dev/v1alpha1: the three kinds, their CRDs, and condition types and reasons.
import type { V1ObjectMeta } from '@kubernetes/client-node';
import type { AdapterClusterSpec, AdapterClusterStatus } from './adaptercluster.js';
import type { LoRAServerSpec, LoRAServerStatus } from './loraserver.js';
import type { SparseFineTuneSpec, SparseFineTuneStatus } from './sparsefinetune.js';

export * from './adaptercluster.js';
export * from './crd.js';
export * from './loraserver.js';
export * from './sparsefinetune.js';
export { type CelRule } from './schema.js';

interface Resource<K extends string, S, T> {
  apiVersion: 'tessera.dev/v1alpha1';
  kind: K;
  metadata: V1ObjectMeta;
  spec: S;
  status?: T;
}

export type SparseFineTune = Resource<'SparseFineTune', SparseFineTuneSpec, SparseFineTuneStatus>;
export type AdapterCluster = Resource<'AdapterCluster', AdapterClusterSpec, AdapterClusterStatus>;
export type LoRAServer = Resource<'LoRAServer', LoRAServerSpec, LoRAServerStatus>;

export const ConditionType = {
  Ready: 'Ready',
  Progressing: 'Progressing',
  Degraded: 'Degraded',
  Succeeded: 'Succeeded',
  Failed: 'Failed',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/** Condition reasons: one CamelCase word each. */
export const Reason = {
  Pending: 'Pending',
  JobCreated: 'JobCreated',
  Running: 'Running',
  Completed: 'Completed',
  WorkerFailed: 'WorkerFailed',
  BackoffLimitExceeded: 'BackoffLimitExceeded',
  DeadlineExceeded: 'DeadlineExceeded',
  InvalidSpec: 'InvalidSpec',
  InputNotReady: 'InputNotReady',
  RolloutInProgress: 'RolloutInProgress',
  RolloutFailed: 'RolloutFailed',
  ReplicasReady: 'ReplicasReady',
  NotImplemented: 'NotImplemented',
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];
