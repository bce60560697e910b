// SparseFineTune: prune a base model and fine-tune LoRA adapters that merge without losing sparsity.
import { Type, type Static } from '@sinclair/typebox';
import { DECIMAL, HTTP_NEEDS_DIGEST, Name, Progress, Resources, Sha256, STORAGE_URI, StatusCommon, StorageRef, StringEnum } from './schema.js';

export const SPARSE_METHODS = ['losa', 'sparsepeft', 'qa-sparsepeft', 'shears', 'loram', 'spallm', 'lora'] as const;
/** Methods that prune the base model by spec.sparsity before or while training. */
export const PRUNING_METHODS = ['losa', 'sparsepeft', 'qa-sparsepeft', 'shears'] as const;
export const TARGET_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

const methodOnly = (field: string, method: string) => ({
  rule: `!has(self.${field}) || self.method == '${method}'`,
  message: `${field} settings apply only to method ${method}`,
  fieldPath: `.${field}`,
  reason: 'FieldValueForbidden' as const,
});

export const SparseFineTuneSpec = Type.Object(
  {
    baseModel: StorageRef('The Hugging Face checkpoint directory (config.json, safetensors, tokenizer.json) of a Llama-family model.'),
    dataset: Type.Object(
      {
        uri: Type.String({ description: 'Training data: JSON Lines or plain text.', pattern: STORAGE_URI, maxLength: 2048 }),
        sha256: Type.Optional(Sha256()),
        format: StringEnum(['jsonl', 'text'] as const, { description: 'How the data file is laid out.', default: 'jsonl' }),
        textField: Type.String({ description: 'JSON field holding the text in each JSONL row.', default: 'text', maxLength: 128 }),
        evalUri: Type.Optional(Type.String({ description: 'Held-out data for perplexity before and after; a split of the training data when absent.', pattern: STORAGE_URI, maxLength: 2048 })),
      },
      { description: 'The fine-tuning data.', 'x-kubernetes-validations': [HTTP_NEEDS_DIGEST] },
    ),
    calibration: Type.Optional(Type.Object(
      {
        uri: Type.Optional(Type.String({ description: 'Calibration text for the pruner; the training data when absent.', pattern: STORAGE_URI, maxLength: 2048 })),
        samples: Type.Integer({ description: 'Calibration sequences.', minimum: 1, maximum: 4096, default: 128 }),
        sequenceLength: Type.Integer({ description: 'Tokens per calibration sequence.', minimum: 16, maximum: 32768, default: 512 }),
      },
      { description: 'Calibration data for activation-aware pruning (Wanda, SparseGPT).' },
    )),
    method: StringEnum(SPARSE_METHODS, { description: 'The sparse fine-tuning method (see ALGORITHMS.md): losa, sparsepeft, qa-sparsepeft, shears, loram, spallm, or plain lora.' }),
    sparsity: Type.Optional(Type.Object(
      {
        targetPercent: Type.Integer({ description: 'Share of base weights pruned to zero, in percent.', minimum: 0, maximum: 95 }),
        pattern: Type.String({
          description: 'Sparsity pattern: unstructured, structured, or N:M (at most N nonzero weights in every group of M, e.g. "2:4").',
          pattern: '^(unstructured|structured|[1-9][0-9]?:[1-9][0-9]?)$', default: 'unstructured', maxLength: 16,
        }),
        pruner: StringEnum(['wanda', 'sparsegpt', 'magnitude'] as const, { description: 'How weights to prune are chosen.', default: 'wanda' }),
        layerwise: StringEnum(['rmi', 'uniform'] as const, { description: 'Per-layer sparsity allocation: uniform, or by representation mutual information (LoSA).', default: 'uniform' }),
        schedule: Type.Object(
          {
            kind: StringEnum(['cubic', 'linear', 'oneshot'] as const, { description: 'How sparsity ramps up to the target.', default: 'oneshot' }),
            steps: Type.Integer({ description: 'Pruning rounds for cubic and linear schedules.', minimum: 1, maximum: 100, default: 1 }),
          },
          { description: 'Progressive pruning schedule.', default: {} },
        ),
      },
      {
        description: 'The sparsity to reach and how.',
        'x-kubernetes-validations': [{
          rule: "!self.pattern.contains(':') || int(self.pattern.split(':')[0]) < int(self.pattern.split(':')[1])",
          message: 'an N:M pattern needs N < M (e.g. 2:4)', fieldPath: '.pattern',
        }],
      },
    )),
    adapter: Type.Object(
      {
        rank: Type.Integer({ description: 'LoRA rank (the starting rank when ranks are allocated per layer).', minimum: 1, maximum: 1024, default: 8 }),
        maxRank: Type.Optional(Type.Integer({ description: 'Upper bound for per-layer rank allocation.', minimum: 1, maximum: 1024 })),
        alpha: Type.Integer({ description: 'LoRA alpha; the update is scaled by alpha/rank.', minimum: 1, maximum: 4096, default: 16 }),
        targetModules: Type.Array(StringEnum(TARGET_MODULES, { description: 'A linear layer of each transformer block.' }), {
          description: 'Linear layers that get adapters.', minItems: 1, maxItems: 7, 'x-kubernetes-list-type': 'set',
          default: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
        }),
        rankAllocation: StringEnum(['reconstruction-error', 'uniform'] as const, { description: 'Per-layer rank allocation: uniform, or by each layer\'s pruning reconstruction error (LoSA).', default: 'uniform' }),
      },
      {
        description: 'The LoRA adapter to train.', default: {},
        'x-kubernetes-validations': [{ rule: '!has(self.maxRank) || self.rank <= self.maxRank', message: 'rank must not exceed maxRank', fieldPath: '.rank' }],
      },
    ),
    loram: Type.Optional(Type.Object(
      {
        pruning: StringEnum(['structured', 'random', 'semi', 'unstructured'] as const, { description: 'How the training-time model is pruned.', default: 'structured' }),
        keepFirstLayers: Type.Integer({ description: 'Leading layers kept unpruned.', minimum: 0, maximum: 256, default: 2 }),
        keepLastLayers: Type.Integer({ description: 'Trailing layers kept unpruned.', minimum: 0, maximum: 256, default: 1 }),
        align: Type.Optional(Type.Object(
          {
            uri: Type.String({ description: 'Text for continual pre-training alignment of the pruned model.', pattern: STORAGE_URI, maxLength: 2048 }),
            steps: Type.Integer({ description: 'Alignment steps.', minimum: 1, maximum: 1000000 }),
          },
          { description: 'Optional alignment of the pruned model before training.' },
        )),
      },
      { description: 'LORAM: train on a pruned model, apply the recovered adapter to the full model.' },
    )),
    spallm: Type.Optional(Type.Object(
      {
        bits: Type.Integer({ description: 'Bits per sketch index.', minimum: 2, maximum: 8, default: 4 }),
        groupsPerRow: Type.Integer({ description: 'Lookup-table groups per weight row.', minimum: 1, maximum: 64, default: 4 }),
      },
      { description: 'SpaLLM: tune a sketched (lookup-table) model directly.' },
    )),
    elastic: Type.Optional(Type.Object(
      {
        rankChoices: Type.Array(Type.Integer({ description: 'A rank the super-adapter can be cut to.', minimum: 1, maximum: 1024 }), {
          description: 'Ranks trained jointly (Shears/NLS).', minItems: 1, maxItems: 8, 'x-kubernetes-list-type': 'set',
        }),
        subAdapter: StringEnum(['heuristic', 'maximal', 'minimal', 'search'] as const, { description: 'How the deployed sub-adapter is chosen.', default: 'heuristic' }),
      },
      { description: 'Shears elastic adapters.' },
    )),
    training: Type.Object(
      {
        steps: Type.Integer({ description: 'Optimizer steps.', minimum: 1, maximum: 10000000, default: 1000 }),
        batchSize: Type.Integer({ description: 'Sequences per optimizer step.', minimum: 1, maximum: 4096, default: 8 }),
        gradientAccumulation: Type.Integer({ description: 'Micro-batches accumulated per step.', minimum: 1, maximum: 1024, default: 1 }),
        sequenceLength: Type.Integer({ description: 'Tokens per training sequence.', minimum: 8, maximum: 32768, default: 512 }),
        learningRate: Type.String({ description: 'Peak learning rate as a decimal string (e.g. "2e-4").', pattern: DECIMAL, default: '2e-4', maxLength: 32 }),
        warmupPercent: Type.Integer({ description: 'Warm-up share of the steps, in percent.', minimum: 0, maximum: 50, default: 3 }),
        scheduler: StringEnum(['cosine', 'linear', 'constant'] as const, { description: 'Learning-rate decay after warm-up.', default: 'cosine' }),
        maxGradNorm: Type.String({ description: 'Gradient clipping by global norm, as a decimal string; "0" disables.', pattern: DECIMAL, default: '0.3', maxLength: 32 }),
        weightDecay: Type.String({ description: 'Decoupled (AdamW) weight decay, as a decimal string.', pattern: DECIMAL, default: '0', maxLength: 32 }),
        seed: Type.Integer({ description: 'Seed for initialization and data order.', minimum: 0, maximum: 2147483647, default: 42 }),
        checkpointEvery: Type.Integer({ description: 'Steps between checkpoints the run resumes from; 0 = only at the end.', minimum: 0, maximum: 10000000, default: 0 }),
      },
      {
        description: 'Optimization settings.', default: {},
        'x-kubernetes-validations': [{ rule: 'double(self.learningRate) > 0.0 && double(self.learningRate) < 1.0', message: 'learningRate must be a decimal in (0, 1), e.g. "2e-4"', fieldPath: '.learningRate' }],
      },
    ),
    output: Type.Object(
      {
        uri: Type.String({ description: 'Where results are written: the merged sparse model and/or the PEFT adapter.', pattern: '^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|file:///.*)$', maxLength: 2048 }),
        mergedModel: Type.Boolean({ description: 'Write the sparse model with the adapter merged in (sparsity kept).', default: true }),
        adapter: Type.Boolean({ description: 'Write the adapter in PEFT format.', default: true }),
        enrollInto: Type.Optional(Type.Object(
          {
            adapterCluster: Type.String({ description: 'AdapterCluster (same namespace) that should compress this adapter once it is trained.', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$', maxLength: 253 }),
            adapterName: Name('Name of the adapter inside the AdapterCluster.'),
          },
          { description: 'Hand the trained adapter to an AdapterCluster (train → compress → serve chain).' },
        )),
      },
      {
        description: 'What to write and where; output URIs are volumes the pod can write to (pvc or file).',
        'x-kubernetes-validations': [{ rule: 'self.mergedModel || self.adapter', message: 'output must include the merged model, the adapter, or both', fieldPath: '.adapter' }],
      },
    ),
    resources: Resources,
    backoffLimit: Type.Integer({ description: 'Retries of a failed worker pod before the run fails.', minimum: 0, maximum: 10, default: 2 }),
    activeDeadlineSeconds: Type.Optional(Type.Integer({ description: 'Wall-clock limit for the run, in seconds.', minimum: 60, maximum: 2592000 })),
  },
  {
    description: 'What to prune, how to fine-tune, and where to write the results.',
    'x-kubernetes-validations': [
      { rule: "!(self.method in ['losa', 'sparsepeft', 'qa-sparsepeft', 'shears']) || has(self.sparsity)", message: 'methods losa, sparsepeft, qa-sparsepeft and shears need spec.sparsity', fieldPath: '.sparsity', reason: 'FieldValueRequired' },
      methodOnly('loram', 'loram'),
      methodOnly('spallm', 'spallm'),
      methodOnly('elastic', 'shears'),
      { rule: "self.method != 'lora' || !has(self.sparsity) || self.sparsity.targetPercent == 0", message: 'method lora does not prune: use losa or sparsepeft for a sparse model', fieldPath: '.sparsity.targetPercent' },
    ],
  },
);

const LayerMetric = Type.Object(
  {
    index: Type.Integer({ description: 'Layer index.', minimum: 0 }),
    sparsityPercent: Type.Optional(Type.Number({ description: 'Achieved sparsity of the layer, in percent.' })),
    rank: Type.Optional(Type.Integer({ description: 'Adapter rank allocated to the layer.', minimum: 0 })),
    reconstructionError: Type.Optional(Type.Number({ description: 'Relative output error of the pruned layer on calibration data.' })),
  },
  { description: 'Per-layer results.' },
);

export const SparseFineTuneStatus = Type.Object(
  {
    ...StatusCommon,
    progress: Type.Optional(Progress),
    metrics: Type.Optional(Type.Object(
      {
        loss: Type.Optional(Type.Number({ description: 'Latest training loss.' })),
        perplexityBefore: Type.Optional(Type.Number({ description: 'Held-out perplexity of the pruned model before fine-tuning.' })),
        perplexityAfter: Type.Optional(Type.Number({ description: 'Held-out perplexity after fine-tuning and merging.' })),
        achievedSparsityPercent: Type.Optional(Type.Number({ description: 'Share of zeros in the merged model\'s pruned weights, in percent.' })),
        layers: Type.Optional(Type.Array(LayerMetric, { description: 'Per-layer sparsity, rank and reconstruction error.', maxItems: 1024 })),
      },
      { description: 'Training and pruning results reported by the worker.' },
    )),
    outputs: Type.Optional(Type.Object(
      {
        modelUri: Type.Optional(Type.String({ description: 'Merged sparse model.' })),
        adapterUri: Type.Optional(Type.String({ description: 'PEFT adapter.' })),
        digests: Type.Optional(Type.Array(Type.Object(
          { name: Type.String({ description: 'Artifact file.' }), sha256: Sha256('Its sha256.') },
          { description: 'Digest of one written file.' },
        ), { description: 'sha256 of every written file.', maxItems: 256, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })),
      },
      { description: 'What the run wrote.' },
    )),
    resultGeneration: Type.Optional(Type.Integer({ description: 'The .metadata.generation the outputs belong to.', minimum: 0 })),
    jobName: Type.Optional(Type.String({ description: 'The Job running the worker.' })),
    startTime: Type.Optional(Type.String({ description: 'When the current run started.', format: 'date-time' })),
    completionTime: Type.Optional(Type.String({ description: 'When the current run finished.', format: 'date-time' })),
    lineage: Type.Optional(Type.Object(
      {
        adapterCluster: Type.Optional(Type.String({ description: 'AdapterCluster the adapter was handed to.' })),
        adapterName: Type.Optional(Type.String({ description: 'Its name there.' })),
      },
      { description: 'Where the trained adapter went next.' },
    )),
  },
  { description: 'Observed state, written by the operator from worker reports.' },
);

export type SparseFineTuneSpec = Static<typeof SparseFineTuneSpec>;
export type SparseFineTuneStatus = Static<typeof SparseFineTuneStatus>;
