// Status conditions (the schema is metav1.Condition's, so kubectl wait and generic tooling read
// them), the fields every status carries, and the condition types and reasons as constants.
import { Type, type Static } from '@sinclair/typebox';
import { StringEnum } from './common.js';

export const ConditionType = {
  /** The object does what it is for: a run succeeded, a bundle is current, the replicas serve. */
  Ready: 'Ready',
  /** The operator or a worker is moving the object towards its spec. */
  Progressing: 'Progressing',
  /** Something is wrong but may heal (a retryable worker failure, replicas missing). */
  Degraded: 'Degraded',
  /** Run-to-completion kinds (SparseFineTune, AdapterCluster): the run for this generation finished well. */
  Succeeded: 'Succeeded',
  /** Run-to-completion kinds: the run for this generation failed for good. */
  Failed: 'Failed',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/** Condition reasons: one CamelCase word each, as the API conventions and the schema's pattern ask. */
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
  AdapterUnreadable: 'AdapterUnreadable',
  DigestMismatch: 'DigestMismatch',
  QualityGateFailed: 'QualityGateFailed',
  BundleCurrent: 'BundleCurrent',
  RolloutInProgress: 'RolloutInProgress',
  RolloutFailed: 'RolloutFailed',
  ReplicasReady: 'ReplicasReady',
  ReplicasUnavailable: 'ReplicasUnavailable',
  NotImplemented: 'NotImplemented',
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

export const CONDITION_STATUSES = ['True', 'False', 'Unknown'] as const;

export const Condition = Type.Object(
  {
    type: Type.String({
      description: 'Condition type in CamelCase: Ready, Progressing, Degraded, Succeeded or Failed.',
      pattern: '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
      maxLength: 316,
    }),
    status: StringEnum(CONDITION_STATUSES, { description: 'Whether the condition holds: True, False or Unknown.' }),
    reason: Type.String({
      description: 'One CamelCase word saying why the condition has its status.',
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$', minLength: 1, maxLength: 1024,
    }),
    message: Type.String({ description: 'A human sentence with the details; may be empty.', maxLength: 32768 }),
    lastTransitionTime: Type.String({ description: 'When the status last changed (RFC 3339).', format: 'date-time' }),
    observedGeneration: Type.Optional(Type.Integer({ description: 'The .metadata.generation this condition was computed from.', minimum: 0 })),
  },
  { description: 'A standard Kubernetes condition (metav1.Condition).' },
);
export type Condition = Static<typeof Condition>;

export const Conditions = Type.Array(Condition, {
  description: 'Standard conditions (Ready, Progressing, Degraded, and Succeeded/Failed for run-to-completion kinds), one per type.',
  maxItems: 16,
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
});

/** The fields at the top of every kind's status. */
export const StatusCommon = {
  observedGeneration: Type.Optional(Type.Integer({ description: 'The .metadata.generation the operator last acted on.', minimum: 0 })),
  conditions: Type.Optional(Conditions),
  stage: Type.Optional(Type.String({
    description: 'A short word for humans saying what happens now (Pending, Pruning, Training, Compressing, Serving, Succeeded, Failed); conditions are the truth.',
    maxLength: 64,
  })),
};
