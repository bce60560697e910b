// Building blocks shared by the three kinds. The TypeBox schemas are the one source of truth: the
// TypeScript types are Static<> of them and scripts/gen-crds.ts writes them out as the CRD YAML, so
// every helper here must yield a structural OpenAPI v3 node (a `type` everywhere; no $ref, const or
// anyOf) once TypeBox's symbol keys are dropped.
import { FormatRegistry, Kind, Type, TypeRegistry, type TUnsafe } from '@sinclair/typebox';

export interface CelRule {
  rule: string;
  /** Shown when the rule fails (and when messageExpression cannot be evaluated). */
  message: string;
  /** A CEL string expression for a message that quotes the bad value. */
  messageExpression?: string;
  /** Relative to the node the rule sits on, so the error names the offending field, not its parent. */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

/** Options every schema node takes: a description is mandatory (a unit test walks the schemas for it). */
export interface Doc {
  description: string;
  default?: unknown;
  'x-kubernetes-validations'?: CelRule[];
  [key: string]: unknown;
}

// Custom kinds, so TypeBox's Value.Check/Default/Clean understand the nodes that Type.Union or
// Type.Literal would have spelled as anyOf/const, which CRDs reject.
TypeRegistry.Set<{ enum: string[] }>('StringEnum', (schema, value) => typeof value === 'string' && schema.enum.includes(value));
TypeRegistry.Set('IntOrString', (_schema, value) => typeof value === 'string' || Number.isInteger(value));
TypeRegistry.Set('PassThrough', (_schema, value) => typeof value === 'object' && value !== null && !Array.isArray(value));
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', (value) => RFC3339.test(value));

/** A string enum whose TypeScript type is the literal union. */
export function StringEnum<const T extends readonly string[]>(values: T, doc: Doc): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ [Kind]: 'StringEnum', type: 'string', enum: [...values], ...doc });
}

/** An int-or-string field (e.g. `clusters: 7 | auto`); CEL rules pin down which strings mean what. */
export function IntOrString<S extends string>(doc: Doc): TUnsafe<number | S> {
  return Type.Unsafe<number | S>({ [Kind]: 'IntOrString', 'x-kubernetes-int-or-string': true, ...doc });
}

/** A free-form object passed through to a child (affinity): Kubernetes validates it there. */
export function PassThrough(doc: Doc): TUnsafe<Record<string, unknown>> {
  return Type.Unsafe<Record<string, unknown>>({ [Kind]: 'PassThrough', type: 'object', 'x-kubernetes-preserve-unknown-fields': true, ...doc });
}

export const DNS1123_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
export const DNS1123_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
export const SHA256 = '^[a-f0-9]{64}$';
/** pvc://CLAIM/path, file:///abs/path, or http(s)://… (which must come with a sha256). */
export const STORAGE_URI = '^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|file:///.*|https?://[^\\s]+)$';
/** Outputs must be volumes a pod can write to. */
export const WRITABLE_URI = '^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|file:///.*)$';
/** Non-negative decimal, optionally in scientific notation: learning rates, norms ("2e-4", "0.3"). */
export const DECIMAL = '^([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?$';
/** A Kubernetes resource.Quantity ("4", "500m", "16Gi", "1e3"). */
export const QUANTITY = '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$';

export const Name = (description: string) => Type.String({ description, pattern: DNS1123_LABEL, minLength: 1, maxLength: 63 });

/** A reference to another object of this project in the same namespace. */
export const ObjectName = (description: string) => Type.String({ description, pattern: DNS1123_SUBDOMAIN, minLength: 1, maxLength: 253 });

export const Sha256 = (description = 'Hex-encoded sha256 digest (64 lowercase hex characters) the content must match.') =>
  Type.String({ description, pattern: SHA256, minLength: 64, maxLength: 64 });

export const Uri = (description: string) => Type.String({ description, pattern: STORAGE_URI, maxLength: 2048 });
export const WritableUri = (description: string) => Type.String({ description, pattern: WRITABLE_URI, maxLength: 2048 });

/** Content fetched over http(s) is pinned by digest; `uri` and `digest` name sibling fields. */
export function httpNeedsDigest(uri = 'uri', digest = 'sha256'): CelRule {
  return {
    rule: `!has(self.${uri}) || !self.${uri}.startsWith('http') || has(self.${digest})`,
    message: `an http(s) ${uri} must be pinned with a ${digest} digest`,
    fieldPath: `.${digest}`,
    reason: 'FieldValueRequired',
  };
}

export function StorageRef(description: string) {
  return Type.Object(
    {
      uri: Uri('Where the content lives: pvc://CLAIM/path (the claim is mounted into the pod), file:///path (local runs), or http(s)://… with sha256.'),
      sha256: Type.Optional(Sha256()),
    },
    { description, 'x-kubernetes-validations': [httpNeedsDigest()] },
  );
}

const Toleration = Type.Object(
  {
    key: Type.Optional(Type.String({ description: 'Taint key the toleration applies to; empty with operator Exists matches every taint.', maxLength: 317 })),
    operator: Type.Optional(StringEnum(['Exists', 'Equal'] as const, { description: 'Exists matches any value; Equal (the default) matches value.' })),
    value: Type.Optional(Type.String({ description: 'Taint value to match with operator Equal.', maxLength: 63 })),
    effect: Type.Optional(StringEnum(['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const, { description: 'Taint effect to match; empty matches all effects.' })),
    tolerationSeconds: Type.Optional(Type.Integer({ description: 'How long a NoExecute taint is tolerated before eviction.', minimum: 0 })),
  },
  { description: 'A core/v1 Toleration.' },
);

/** Pod size and placement, passed through to the Job or Deployment the operator creates. */
export const Resources = Type.Object(
  {
    gpus: Type.Integer({ description: 'nvidia.com/gpu devices per pod (0 runs on CPU).', minimum: 0, maximum: 16, default: 1 }),
    cpu: Type.Optional(Type.String({ description: 'CPU request per pod, as a Kubernetes quantity (e.g. "4" or "500m").', pattern: QUANTITY, maxLength: 32 })),
    memory: Type.Optional(Type.String({ description: 'Memory request per pod, as a Kubernetes quantity (e.g. "16Gi").', pattern: QUANTITY, maxLength: 32 })),
    image: Type.Optional(Type.String({ description: 'Worker image override; the operator\'s configured worker image when absent.', minLength: 1, maxLength: 512 })),
    nodeSelector: Type.Optional(Type.Record(Type.String(), Type.String({ description: 'Label value.', maxLength: 63 }), { description: 'Node labels the pod must match.', maxProperties: 32 })),
    tolerations: Type.Optional(Type.Array(Toleration, { description: 'Taints the pod tolerates (core/v1 Toleration).', maxItems: 32 })),
    affinity: Type.Optional(PassThrough({ description: 'Affinity for the pod (core/v1 Affinity), passed through unchanged.' })),
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
