// AdapterCluster: compress a collection of LoRA adapters jointly into shared bases.
import { Type, type Static } from '@sinclair/typebox';
import { DNS1123_SUBDOMAIN, IntOrString, Name, Progress, Resources, Sha256, STORAGE_URI, StatusCommon, StorageRef, StringEnum } from './schema.js';

export const COMPRESSION_METHODS = ['jd-full', 'jd-diag', 'svd', 'none'] as const;

const AdapterSource = Type.Object(
  {
    name: Name('Adapter name, unique in the list; clients select it as the OpenAI `model`.'),
    uri: Type.Optional(Type.String({ description: 'PEFT adapter directory (adapter_config.json + adapter_model.safetensors).', pattern: STORAGE_URI, maxLength: 2048 })),
    sha256: Type.Optional(Sha256('Digest of adapter_model.safetensors; pins the content for GitOps.')),
    sparseFineTune: Type.Optional(Type.String({ description: 'A SparseFineTune (same namespace) whose trained adapter to take instead of a URI.', pattern: DNS1123_SUBDOMAIN, maxLength: 253 })),
  },
  {
    description: 'One LoRA adapter to compress.',
    'x-kubernetes-validations': [
      { rule: 'has(self.uri) != has(self.sparseFineTune)', message: 'set exactly one of uri and sparseFineTune', fieldPath: '.uri' },
      { rule: "!has(self.uri) || !self.uri.startsWith('http') || has(self.sha256)", message: 'an http(s) URI must be pinned with a sha256 digest', fieldPath: '.sha256', reason: 'FieldValueRequired' },
    ],
  },
);

export const AdapterClusterSpec = Type.Object(
  {
    baseModel: StorageRef('The base model all adapters were trained on (HF checkpoint directory).'),
    adapters: Type.Array(AdapterSource, {
      description: 'The adapters to compress; names are unique.', minItems: 1, maxItems: 4096,
      'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'],
    }),
    compression: Type.Object(
      {
        method: StringEnum(COMPRESSION_METHODS, { description: 'jd-full (shared bases, full r×r Σ per adapter), jd-diag (diagonal σ), svd (per-adapter truncation), none (serve as is).', default: 'jd-full' }),
        rank: Type.Integer({ description: 'Rank of the shared bases.', minimum: 1, maximum: 1024, default: 16 }),
        clusters: IntOrString<'auto'>({
          description: 'Number of clusters with their own bases, or "auto" to pick rank and clusters that meet targetErrorPercent with the fewest parameters.',
          default: 1,
          'x-kubernetes-validations': [{ rule: "type(self) == int ? (self >= 1 && self <= 1024) : self == 'auto'", message: 'clusters must be an integer from 1 to 1024, or "auto"' }],
        }),
        targetErrorPercent: Type.Optional(Type.Integer({ description: 'Target mean relative reconstruction error, in percent (with clusters: auto).', minimum: 1, maximum: 100 })),
        iterations: Type.Integer({ description: 'Cap on alternating iterations.', minimum: 1, maximum: 1000, default: 10 }),
        incremental: Type.Boolean({ description: 'Project newly added adapters onto the existing bases when their error stays under the target, instead of recompressing everything.', default: true }),
      },
      {
        description: 'How to compress.', default: {},
        'x-kubernetes-validations': [
          { rule: "!has(self.clusters) || type(self.clusters) == int || has(self.targetErrorPercent)", message: 'clusters: auto needs targetErrorPercent', fieldPath: '.targetErrorPercent', reason: 'FieldValueRequired' },
          { rule: "self.method != 'none' || !has(self.targetErrorPercent)", message: 'method none does not compress, so targetErrorPercent does not apply', fieldPath: '.targetErrorPercent', reason: 'FieldValueForbidden' },
        ],
      },
    ),
    qualityGate: Type.Optional(Type.Object(
      {
        evalUri: Type.Optional(Type.String({ description: 'Held-out data for relative performance (JSONL with an `adapter` field, or text).', pattern: STORAGE_URI, maxLength: 2048 })),
        minRelativePerformancePercent: Type.Integer({ description: 'Below this relative performance an adapter is served uncompressed.', minimum: 0, maximum: 100, default: 99 }),
      },
      { description: 'Keep quality: adapters that compress badly are served raw.' },
    )),
    output: Type.Object(
      { uri: Type.String({ description: 'Where bundle revisions are written (manifest.json + bundle.safetensors per revision).', pattern: '^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|file:///.*)$', maxLength: 2048 }) },
      { description: 'Bundle output location.' },
    ),
    resources: Resources,
  },
  { description: 'The adapters to compress jointly and how.' },
);

export const AdapterClusterStatus = Type.Object(
  {
    ...StatusCommon,
    revision: Type.Optional(Type.String({ description: 'Current bundle revision: a content hash of the inputs and settings.', maxLength: 128 })),
    bundleUri: Type.Optional(Type.String({ description: 'Where the current bundle is.' })),
    bundleDigest: Type.Optional(Type.String({ description: 'sha256 of bundle.safetensors.' })),
    parameterSavedPercent: Type.Optional(Type.Number({ description: 'Parameters saved against serving every adapter uncompressed, in percent.' })),
    adapterCount: Type.Optional(Type.Integer({ description: 'Adapters in the current bundle.', minimum: 0 })),
    adapters: Type.Optional(Type.Array(Type.Object(
      {
        name: Type.String({ description: 'Adapter name.' }),
        cluster: Type.Optional(Type.Integer({ description: 'Cluster the adapter belongs to.', minimum: 0 })),
        reconstructionErrorPercent: Type.Optional(Type.Number({ description: 'Relative reconstruction error, in percent.' })),
        relativePerformancePercent: Type.Optional(Type.Number({ description: 'Relative performance against the uncompressed adapter, in percent.' })),
        servedAs: Type.Optional(StringEnum(['compressed', 'raw'] as const, { description: 'Whether the adapter is served from the bundle or uncompressed.' })),
        digest: Type.Optional(Type.String({ description: 'sha256 of the source adapter.' })),
        error: Type.Optional(Type.String({ description: 'Why this adapter could not be used.' })),
      },
      { description: 'Per-adapter result.' },
    ), { description: 'Per-adapter results.', maxItems: 4096, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })),
    clusters: Type.Optional(Type.Array(Type.Object(
      {
        id: Type.Integer({ description: 'Cluster id.', minimum: 0 }),
        size: Type.Integer({ description: 'Adapters in the cluster.', minimum: 0 }),
        rank: Type.Integer({ description: 'Rank of its bases.', minimum: 0 }),
        meanErrorPercent: Type.Optional(Type.Number({ description: 'Mean relative reconstruction error, in percent.' })),
      },
      { description: 'One cluster.' },
    ), { description: 'Per-cluster results.', maxItems: 1024, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['id'] })),
    resultGeneration: Type.Optional(Type.Integer({ description: 'The .metadata.generation the current bundle belongs to.', minimum: 0 })),
    jobName: Type.Optional(Type.String({ description: 'The Job running the compression.' })),
    progress: Type.Optional(Progress),
  },
  { description: 'Observed state, written by the operator.' },
);

export type AdapterClusterSpec = Static<typeof AdapterClusterSpec>;
export type AdapterClusterStatus = Static<typeof AdapterClusterStatus>;
