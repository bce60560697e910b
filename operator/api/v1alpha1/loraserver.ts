// LoRAServer: serve a base model with many adapters behind an OpenAI-compatible API.
import { Type, type Static } from '@sinclair/typebox';
import { httpNeedsDigest, Name, ObjectName, Resources, Sha256, StorageRef, StringEnum, Uri } from './common.js';
import { StatusCommon } from './conditions.js';

const RawAdapter = Type.Object(
  {
    name: Name('Adapter name, unique across the server; clients select it as the OpenAI `model`.'),
    uri: Uri('PEFT adapter directory (adapter_config.json + adapter_model.safetensors).'),
    sha256: Type.Optional(Sha256('Digest of adapter_model.safetensors.')),
  },
  { description: 'An uncompressed adapter served next to the bundles.', 'x-kubernetes-validations': [httpNeedsDigest()] },
);

export const LoRAServerSpec = Type.Object(
  {
    baseModel: StorageRef('The base model (HF checkpoint directory).'),
    adapterClusters: Type.Array(
      ObjectName('An AdapterCluster in the same namespace.'),
      { description: 'AdapterClusters whose current bundle revisions are served.', maxItems: 64, 'x-kubernetes-list-type': 'set', default: [] },
    ),
    adapters: Type.Array(RawAdapter, {
      description: 'Extra uncompressed adapters.', maxItems: 1024, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], default: [],
    }),
    replicas: Type.Integer({ description: 'Serving replicas (within autoscaling bounds when set).', minimum: 0, maximum: 100, default: 1 }),
    routing: Type.Object(
      { policy: StringEnum(['cluster-affinity', 'least-loaded', 'round-robin'] as const, { description: 'How requests are spread over replicas.', default: 'cluster-affinity' }) },
      { description: 'Request routing.', default: {} },
    ),
    engine: Type.Object(
      {
        maxBatchTokens: Type.Integer({ description: 'Tokens per engine step across all sequences.', minimum: 16, maximum: 1048576, default: 8192 }),
        maxBatchSize: Type.Integer({ description: 'Sequences per engine step.', minimum: 1, maximum: 4096, default: 64 }),
        kvCacheTokens: Type.Integer({ description: 'KV-cache capacity in tokens.', minimum: 256, maximum: 16777216, default: 65536 }),
        maxQueue: Type.Integer({ description: 'Queued requests before the server answers 429.', minimum: 1, maximum: 1000000, default: 1024 }),
        dtype: StringEnum(['float32', 'float16', 'bfloat16'] as const, { description: 'Compute precision.', default: 'float16' }),
      },
      {
        description: 'Batching engine limits.', default: {},
        'x-kubernetes-validations': [
          { rule: 'self.maxBatchTokens >= self.maxBatchSize', message: 'maxBatchTokens must be at least maxBatchSize (one token per sequence)', fieldPath: '.maxBatchTokens' },
          { rule: 'self.kvCacheTokens >= self.maxBatchTokens', message: 'kvCacheTokens must hold at least one full batch (maxBatchTokens)', fieldPath: '.kvCacheTokens' },
        ],
      },
    ),
    autoscaling: Type.Optional(Type.Object(
      {
        minReplicas: Type.Integer({ description: 'Lower bound.', minimum: 0, maximum: 100, default: 1 }),
        maxReplicas: Type.Integer({ description: 'Upper bound.', minimum: 1, maximum: 100 }),
        targetQueueDepth: Type.Integer({ description: 'Queued requests per replica to aim for.', minimum: 1, maximum: 100000, default: 16 }),
      },
      {
        description: 'Queue-depth based autoscaling.',
        'x-kubernetes-validations': [{ rule: 'self.minReplicas <= self.maxReplicas', message: 'minReplicas must not exceed maxReplicas', fieldPath: '.minReplicas' }],
      },
    )),
    rollout: Type.Object(
      {
        strategy: StringEnum(['canary', 'all-at-once'] as const, { description: 'canary: load a new bundle revision on one replica first, then the rest.', default: 'canary' }),
        maxUnavailable: Type.Integer({ description: 'Replicas that may be unavailable during a rollout.', minimum: 0, maximum: 100, default: 0 }),
      },
      { description: 'How new bundle revisions reach running replicas (no pod restarts).', default: {} },
    ),
    service: Type.Object(
      {
        type: StringEnum(['ClusterIP', 'NodePort', 'LoadBalancer'] as const, { description: 'Service type.', default: 'ClusterIP' }),
        port: Type.Integer({ description: 'Service port of the OpenAI-compatible API.', minimum: 1, maximum: 65535, default: 8000 }),
      },
      { description: 'The Service in front of the replicas.', default: {} },
    ),
    resources: Resources,
  },
  {
    description: 'What to serve, how many replicas, and the engine settings.',
    'x-kubernetes-validations': [
      { rule: '!has(self.autoscaling) || (self.replicas >= self.autoscaling.minReplicas && self.replicas <= self.autoscaling.maxReplicas)', message: 'replicas must lie within autoscaling.minReplicas and autoscaling.maxReplicas', fieldPath: '.replicas' },
    ],
  },
);

export const LoRAServerStatus = Type.Object(
  {
    ...StatusCommon,
    replicas: Type.Optional(Type.Integer({ description: 'Replicas that exist.', minimum: 0 })),
    readyReplicas: Type.Optional(Type.Integer({ description: 'Replicas ready to serve with the desired revision active.', minimum: 0 })),
    endpoint: Type.Optional(Type.String({ description: 'Base URL of the OpenAI-compatible API.' })),
    servedAdapters: Type.Optional(Type.Integer({ description: 'Adapters servable now.', minimum: 0 })),
    bundleRevision: Type.Optional(Type.Object(
      {
        desired: Type.Optional(Type.String({ description: 'Revision set the replicas should serve (bundle revisions of the referenced AdapterClusters).' })),
        current: Type.Optional(Type.String({ description: 'The last revision set every replica activated; new replicas start with it.' })),
        failed: Type.Optional(Type.Object(
          {
            revision: Type.String({ description: 'The revision set that did not load.' }),
            pod: Type.String({ description: 'The replica that refused it.' }),
            message: Type.String({ description: 'Why, as the replica said.' }),
            time: Type.String({ description: 'When (RFC 3339).', format: 'date-time' }),
          },
          { description: 'The last rollout that failed; its replicas kept serving the revision they had. Cleared when a later revision rolls out.' },
        )),
        active: Type.Optional(Type.Array(Type.Object(
          { pod: Type.String({ description: 'Replica pod.' }), revision: Type.String({ description: 'Revision it serves.' }) },
          { description: 'One replica\'s active revision.' },
        ), { description: 'Active revision per replica.', maxItems: 100, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['pod'] })),
      },
      { description: 'Desired and active bundle revisions.' },
    )),
    serving: Type.Optional(Type.Object(
      {
        requestsPerSecond: Type.Optional(Type.Number({ description: 'Requests per second over all replicas.' })),
        tokensPerSecond: Type.Optional(Type.Number({ description: 'Generated tokens per second over all replicas.' })),
        p50LatencyMs: Type.Optional(Type.Number({ description: 'Median request latency.' })),
        p99LatencyMs: Type.Optional(Type.Number({ description: '99th percentile request latency.' })),
        queueDepth: Type.Optional(Type.Integer({ description: 'Queued requests over all replicas.', minimum: 0 })),
      },
      { description: 'Serving statistics reported by the replicas.' },
    )),
    bundles: Type.Optional(Type.Array(Type.Object(
      {
        adapterCluster: Type.String({ description: 'The AdapterCluster.' }),
        revision: Type.String({ description: 'Its bundle revision in the current set.' }),
        uri: Type.String({ description: 'Where the bundle is.' }),
        sha256: Type.Optional(Type.String({ description: 'sha256 of its bundle.safetensors, checked by every replica that loads it.' })),
      },
      { description: 'One bundle of the current revision set.' },
    ), { description: 'The bundles of bundleRevision.current.', maxItems: 64, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['adapterCluster'] })),
    deploymentName: Type.Optional(Type.String({ description: 'The Deployment running the replicas.' })),
  },
  { description: 'Observed state, written by the operator.' },
);

export type LoRAServerSpec = Static<typeof LoRAServerSpec>;
export type LoRAServerStatus = Static<typeof LoRAServerStatus>;
