// AdapterCluster: compress a collection of LoRA adapters jointly into shared bases.
import { Type, type Static } from '@sinclair/typebox';
import { httpNeedsDigest, IntOrString, Name, ObjectName, Progress, Resources, Sha256, StorageRef, StringEnum, Uri, WritableUri } from './common.js';
import { StatusCommon } from './conditions.js';

export const COMPRESSION_METHODS = ['jd-full', 'jd-diag', 'svd', 'none'] as const;

const AdapterSource = Type.Object(
  {
    name: Name('Adapter name, unique in the list; clients select it as the OpenAI `model`.'),
    uri: Type.Optional(Uri('PEFT adapter directory (adapter_config.json + adapter_model.safetensors).')),
    sha256: Type.Optional(Sha256('Digest of adapter_model.safetensors; pins the content for GitOps.')),
    sparseFineTune: Type.Optional(ObjectName('A SparseFineTune (same namespace) whose trained adapter to take instead of a URI.')),
  },
  {
    description: 'One LoRA adapter to compress.',
    'x-kubernetes-validations': [
      { rule: 'has(self.uri) != has(self.sparseFineTune)', message: 'set exactly one of uri and sparseFineTune', fieldPath: '.uri' },
      httpNeedsDigest(),
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
        targetErrorPercent: Type.Optional(Type.Integer({
          description: 'Target mean relative reconstruction error, in percent: what clusters: auto aims for, and the most an incrementally projected adapter may have before everything is recompressed.',
          minimum: 1, maximum: 100,
        })),
        iterations: Type.Integer({ description: 'Cap on alternating iterations.', minimum: 1, maximum: 1000, default: 10 }),
        incremental: Type.Boolean({ description: 'Project newly added adapters onto the existing bases when their error stays under the target, instead of recompressing everything.', default: true }),
      },
      {
        description: 'How to compress.', default: {},
        'x-kubernetes-validations': [
          { rule: "!has(self.clusters) || type(self.clusters) == int || has(self.targetErrorPercent)", message: 'clusters: auto needs targetErrorPercent', fieldPath: '.targetErrorPercent', reason: 'FieldValueRequired' },
          { rule: "self.method != 'none' || !has(self.targetErrorPercent)", message: 'method none does not compress, so targetErrorPercent does not apply', fieldPath: '.targetErrorPercent', reason: 'FieldValueForbidden' },
          {
            rule: "self.method in ['jd-full', 'jd-diag'] || (type(self.clusters) == int && self.clusters == 1)",
            message: 'clusters apply only to the joint methods jd-full and jd-diag; svd and none treat every adapter alone',
            fieldPath: '.clusters',
          },
        ],
      },
    ),
    qualityGate: Type.Optional(Type.Object(
      {
        evalUri: Type.Optional(Uri('Held-out data for relative performance (JSONL with an `adapter` field naming the adapter each row belongs to).')),
        evalSha256: Type.Optional(Sha256('Digest pinning evalUri (required when it is http(s)).')),
        minRelativePerformancePercent: Type.Integer({ description: 'Below this relative performance an adapter is served uncompressed.', minimum: 0, maximum: 100, default: 99 }),
      },
      { description: 'Keep quality: adapters that compress badly are served raw.', 'x-kubernetes-validations': [httpNeedsDigest('evalUri', 'evalSha256')] },
    )),
    output: Type.Object(
      { uri: WritableUri('Where bundle revisions are written, one folder per revision (manifest.json + bundle.safetensors); pvc:// or file://.') },
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
        sparseFineTune: Type.Optional(Type.String({ description: 'The SparseFineTune that trained the adapter, when it came from one (lineage).' })),
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
    startTime: Type.Optional(Type.String({ description: 'When the current compression run started (RFC 3339).', format: 'date-time' })),
    completionTime: Type.Optional(Type.String({ description: 'When the current compression run finished (RFC 3339).', format: 'date-time' })),
    progress: Type.Optional(Progress),
  },
  { description: 'Observed state, written by the operator.' },
);

export type AdapterClusterSpec = Static<typeof AdapterClusterSpec>;
export type AdapterClusterStatus = Static<typeof AdapterClusterStatus>;
