// Building blocks for the CRD schemas. The TypeBox schemas are the single source of truth: the
// TypeScript types are Static<> of them and scripts/gen-crds.ts writes them out as the CRD YAML.
import { Type, type TUnsafe } from '@sinclair/typebox';

export interface CelRule {
  rule: string;
  message: string;
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

/** Options every schema node may carry: a description is mandatory, CEL rules optional. */
export interface Doc {
  description: string;
  default?: unknown;
  'x-kubernetes-validations'?: CelRule[];
  [key: string]: unknown;
}

/** A string enum whose TypeScript type is the literal union (TypeBox's Union would emit anyOf, which CRDs reject). */
export function StringEnum<const T extends readonly string[]>(values: T, doc: Doc): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...doc });
}

/** An int-or-string field (e.g. `clusters: 7 | auto`); its meaning is pinned down by CEL rules. */
export function IntOrString<S extends string>(doc: Doc): TUnsafe<number | S> {
  return Type.Unsafe<number | S>({ 'x-kubernetes-int-or-string': true, ...doc });
}

/** Free-form object passed through untouched (tolerations, affinity): Kubernetes validates it on the child. */
export function PassThrough(doc: Doc): TUnsafe<Record<string, unknown>> {
  return Type.Unsafe<Record<string, unknown>>({ type: 'object', 'x-kubernetes-preserve-unknown-fields': true, ...doc });
}

export const DNS1123_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
export const DNS1123_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
export const SHA256 = '^[a-f0-9]{64}$';
/** pvc://CLAIM/path, file:///abs/path, or http(s)://… (which must carry a sha256). */
export const STORAGE_URI = '^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|file:///.*|https?://[^\\s]+)$';
/** Positive decimal, optionally in scientific notation: learning rates, norms ("2e-4", "0.3"). */
export const DECIMAL = '^([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?$';
export const QUANTITY = '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$';

export const Name = (description: string) => Type.String({ description, pattern: DNS1123_LABEL, minLength: 1, maxLength: 63 });

export const Sha256 = (description = 'Hex-encoded sha256 digest (64 lowercase hex characters) the content must match.') =>
  Type.String({ description, pattern: SHA256, minLength: 64, maxLength: 64 });

export const HTTP_NEEDS_DIGEST: CelRule = {
  rule: "!self.uri.startsWith('http') || has(self.sha256)",
  message: 'an http(s) URI must be pinned with a sha256 digest',
  fieldPath: '.sha256',
  reason: 'FieldValueRequired',
};

export function StorageRef(description: string) {
  return Type.Object(
    {
      uri: Type.String({
        description: 'Where the content lives: pvc://CLAIM/path (the claim is mounted into the pod), file:///path (local runs), or http(s)://… with sha256.',
        pattern: STORAGE_URI,
        maxLength: 2048,
      }),
      sha256: Type.Optional(Sha256()),
    },
    { description, 'x-kubernetes-validations': [HTTP_NEEDS_DIGEST] },
  );
}

export const Condition = Type.Object(
  {
    type: Type.String({ description: 'Condition type in CamelCase: Ready, Progressing, Degraded, Succeeded or Failed.', maxLength: 316 }),
    status: StringEnum(['True', 'False', 'Unknown'] as const, { description: 'Whether the condition holds.' }),
    reason: Type.Optional(Type.String({ description: 'One CamelCase word saying why the condition has its status.', maxLength: 1024 })),
    message: Type.Optional(Type.String({ description: 'A human sentence with details.', maxLength: 32768 })),
    lastTransitionTime: Type.Optional(Type.String({ description: 'When the status last changed.', format: 'date-time' })),
    observedGeneration: Type.Optional(Type.Integer({ description: 'The .metadata.generation this condition was computed from.', minimum: 0 })),
  },
  { description: 'A standard Kubernetes condition.' },
);

export const Conditions = Type.Array(Condition, {
  description: 'Standard conditions (Ready, Progressing, Degraded, and Succeeded/Failed for run-to-completion kinds), one per type.',
  maxItems: 16,
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
});

/** Pod placement and size, passed through to the Job or Deployment the operator creates. */
export const Resources = Type.Object(
  {
    gpus: Type.Integer({ description: 'nvidia.com/gpu devices per pod.', minimum: 0, maximum: 16, default: 1 }),
    cpu: Type.Optional(Type.String({ description: 'CPU request per pod, as a Kubernetes quantity (e.g. "4" or "500m").', pattern: QUANTITY, maxLength: 32 })),
    memory: Type.Optional(Type.String({ description: 'Memory request per pod, as a Kubernetes quantity (e.g. "16Gi").', pattern: QUANTITY, maxLength: 32 })),
    image: Type.Optional(Type.String({ description: 'Worker image override; defaults to the operator\'s configured worker image.', maxLength: 512 })),
    nodeSelector: Type.Optional(Type.Record(Type.String(), Type.String({ description: 'Label value.', maxLength: 63 }), { description: 'Node labels the pod must match.', maxProperties: 32 })),
    tolerations: Type.Optional(Type.Array(PassThrough({ description: 'A core/v1 Toleration.' }), { description: 'Tolerations for the pod (core/v1 Toleration).', maxItems: 32 })),
    affinity: Type.Optional(PassThrough({ description: 'Affinity for the pod (core/v1 Affinity).' })),
  },
  { description: 'Compute resources and placement of the worker pods.', default: {} },
);

export const Progress = Type.Object(
  {
    step: Type.Integer({ description: 'Steps done.', minimum: 0 }),
    totalSteps: Type.Integer({ description: 'Steps in the whole run.', minimum: 0 }),
    percent: Type.Integer({ description: 'Progress in percent.', minimum: 0, maximum: 100 }),
    etaSeconds: Type.Optional(Type.Integer({ description: 'Estimated seconds to completion.', minimum: 0 })),
  },
  { description: 'Progress reported by the worker over gRPC.' },
);

export const StatusCommon = {
  observedGeneration: Type.Optional(Type.Integer({ description: 'The .metadata.generation the operator last acted on.', minimum: 0 })),
  conditions: Type.Optional(Conditions),
  stage: Type.Optional(Type.String({ description: 'A short human word for what is happening now (Pending, Pruning, Training, Compressing, Serving, …).', maxLength: 64 })),
};
