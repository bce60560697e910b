// SparseFineTune: prune a base model and fine-tune LoRA adapters that merge without losing sparsity.
import { Type, type Static } from '@sinclair/typebox';
import { DECIMAL, httpNeedsDigest, Name, ObjectName, Progress, Resources, Sha256, StorageRef, StringEnum, Uri, WritableUri, type CelRule } from './common.js';
import { StatusCommon } from './conditions.js';

export const SPARSE_METHODS = ['losa', 'sparsepeft', 'qa-sparsepeft', 'shears', 'loram', 'spallm', 'lora'] as const;
export type SparseMethod = (typeof SPARSE_METHODS)[number];
/** Methods that prune the base model by spec.sparsity before or while training. */
export const PRUNING_METHODS = ['losa', 'sparsepeft', 'qa-sparsepeft', 'shears'] as const;
export const TARGET_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

const PRUNING_LIST = `[${PRUNING_METHODS.map((m) => `'${m}'`).join(', ')}]`;

/** A method's own settings block is refused under any other method, so a typo in `method` cannot silently drop it. */
const methodOnly = (field: string, method: SparseMethod): CelRule => ({
  rule: `!has(self.${field}) || self.method == '${method}'`,
  message: `${field} settings apply only to method ${method}`,
  fieldPath: `.${field}`,
  reason: 'FieldValueForbidden',
});

// CEL pieces for an N:M pattern string; only evaluated once the pattern is known to contain ':'.
const N = "int(self.pattern.split(':')[0])";
const M = "int(self.pattern.split(':')[1])";
const NM_PERCENT = `100 * (${M} - ${N}) / ${M}`;

const Sparsity = Type.Object(
  {
    targetPercent: Type.Integer({ description: 'Share of the base model\'s prunable weights set to zero, in percent (an N:M pattern fixes it at (M−N)/M).', minimum: 0, maximum: 95 }),
    pattern: Type.String({
      description: 'Where zeros may fall: unstructured, structured (whole neurons and heads), or N:M (at most N nonzero weights in every run of M inputs, e.g. "2:4").',
      pattern: '^(unstructured|structured|[1-9][0-9]?:[1-9][0-9]?)$', default: 'unstructured', maxLength: 16,
    }),
    pruner: StringEnum(['wanda', 'sparsegpt', 'magnitude'] as const, { description: 'How the weights to prune are chosen: Wanda (|W|·‖X‖), SparseGPT (Hessian-aware with weight updates), or magnitude.', default: 'wanda' }),
    layerwise: StringEnum(['rmi', 'uniform'] as const, { description: 'Per-layer sparsity allocation: uniform, or by representation mutual information around the target (LoSA).', default: 'uniform' }),
    schedule: Type.Object(
      {
        kind: StringEnum(['cubic', 'linear', 'oneshot'] as const, { description: 'How sparsity ramps up to the target over the pruning steps.', default: 'oneshot' }),
        steps: Type.Integer({ description: 'Pruning rounds for cubic and linear schedules (LoSA uses 5).', minimum: 1, maximum: 100, default: 1 }),
      },
      { description: 'Progressive pruning schedule.', default: {} },
    ),
  },
  {
    description: 'The sparsity to reach and how.',
    'x-kubernetes-validations': [
      { rule: `!self.pattern.contains(':') || ${N} < ${M}`, message: 'an N:M pattern needs N < M (e.g. 2:4)', fieldPath: '.pattern' },
      {
        rule: `!self.pattern.contains(':') || ${N} >= ${M} || self.targetPercent == ${NM_PERCENT}`,
        message: 'an N:M pattern fixes the sparsity: targetPercent must be 100*(M-N)/M (50 for 2:4 and 4:8, 75 for 1:4)',
        // Quoting the computed percent (string(int)) has no size bound, which blows the CEL cost budget.
        messageExpression: "'pattern ' + self.pattern + ' fixes the sparsity: targetPercent must be 100*(M-N)/M (50 for 2:4 and 4:8, 75 for 1:4)'",
        fieldPath: '.targetPercent',
      },
      { rule: "!self.pattern.contains(':') || self.layerwise == 'uniform'", message: 'an N:M pattern fixes every layer\'s sparsity, so layerwise must be uniform', fieldPath: '.layerwise' },
    ],
  },
);

const Adapter = Type.Object(
  {
    rank: Type.Integer({ description: 'LoRA rank: the starting rank when ranks are allocated per layer, the super-adapter rank for elastic adapters.', minimum: 1, maximum: 1024, default: 8 }),
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
    'x-kubernetes-validations': [
      { rule: '!has(self.maxRank) || self.rank <= self.maxRank', message: 'rank must not exceed maxRank', fieldPath: '.rank' },
      { rule: "self.rankAllocation != 'reconstruction-error' || has(self.maxRank)", message: 'rankAllocation reconstruction-error needs maxRank as the bound of per-layer ranks', fieldPath: '.maxRank', reason: 'FieldValueRequired' },
    ],
  },
);

const Loram = Type.Object(
  {
    pruning: StringEnum(['structured', 'random', 'semi', 'unstructured'] as const, { description: 'How the training-time model is pruned: structured (Taylor importance), random, semi (2:4) or unstructured.', default: 'structured' }),
    prunePercent: Type.Integer({ description: 'Share of the prunable weights removed for training, in percent; semi (2:4) removes exactly 50.', minimum: 1, maximum: 95, default: 50 }),
    keepFirstLayers: Type.Integer({ description: 'Leading transformer blocks kept unpruned.', minimum: 0, maximum: 256, default: 2 }),
    keepLastLayers: Type.Integer({ description: 'Trailing transformer blocks kept unpruned.', minimum: 0, maximum: 256, default: 1 }),
    align: Type.Optional(Type.Object(
      {
        uri: Uri('General text for continual pre-training of the pruned model: plain text, or JSON Lines (.jsonl, .json) with dataset.textField.'),
        sha256: Type.Optional(Sha256()),
        steps: Type.Integer({ description: 'Alignment steps.', minimum: 1, maximum: 1000000 }),
        learningRate: Type.String({ description: 'Peak learning rate of alignment as a decimal string: full-parameter training wants a smaller one than LoRA (the LORAM authors align at 5e-5). Batch, sequence length and schedule are those of training.', pattern: DECIMAL, default: '5e-5', maxLength: 32 }),
      },
      {
        description: 'Optional alignment of the pruned model before training (full parameters, lm_head frozen).',
        'x-kubernetes-validations': [
          httpNeedsDigest(),
          { rule: 'double(self.learningRate) > 0.0 && double(self.learningRate) < 1.0', message: 'learningRate must be a decimal in (0, 1), e.g. "5e-5"', fieldPath: '.learningRate' },
        ],
      },
    )),
  },
  {
    description: 'LORAM: train on a pruned model, recover the adapter for the full model.',
    'x-kubernetes-validations': [{ rule: "self.pruning != 'semi' || self.prunePercent == 50", message: 'semi-structured (2:4) pruning removes exactly 50 percent', fieldPath: '.prunePercent' }],
  },
);

const Training = Type.Object(
  {
    steps: Type.Integer({ description: 'Optimizer steps.', minimum: 1, maximum: 10000000, default: 1000 }),
    batchSize: Type.Integer({ description: 'Sequences per optimizer step.', minimum: 1, maximum: 4096, default: 8 }),
    gradientAccumulation: Type.Integer({ description: 'Micro-batches accumulated per step.', minimum: 1, maximum: 1024, default: 1 }),
    sequenceLength: Type.Integer({ description: 'Tokens per training sequence.', minimum: 8, maximum: 32768, default: 512 }),
    learningRate: Type.String({ description: 'Peak learning rate as a decimal string (e.g. "2e-4"); a string because the API conventions keep floats out of spec.', pattern: DECIMAL, default: '2e-4', maxLength: 32 }),
    warmupPercent: Type.Integer({ description: 'Warm-up share of the steps, in percent.', minimum: 0, maximum: 50, default: 3 }),
    scheduler: StringEnum(['cosine', 'linear', 'constant'] as const, { description: 'Learning-rate decay after warm-up.', default: 'cosine' }),
    maxGradNorm: Type.String({ description: 'Gradient clipping by global norm, as a decimal string; "0" disables it.', pattern: DECIMAL, default: '0.3', maxLength: 32 }),
    weightDecay: Type.String({ description: 'Decoupled (AdamW) weight decay, as a decimal string.', pattern: DECIMAL, default: '0', maxLength: 32 }),
    seed: Type.Integer({ description: 'Seed for initialization and data order.', minimum: 0, maximum: 2147483647, default: 42 }),
    checkpointEvery: Type.Integer({ description: 'Steps between checkpoints a restarted run resumes from; 0 = only at the end.', minimum: 0, maximum: 10000000, default: 0 }),
  },
  {
    description: 'Optimization settings.', default: {},
    'x-kubernetes-validations': [
      { rule: 'double(self.learningRate) > 0.0 && double(self.learningRate) < 1.0', message: 'learningRate must be a decimal in (0, 1), e.g. "2e-4"', messageExpression: "'learningRate must be a decimal in (0, 1), e.g. \"2e-4\", not ' + self.learningRate", fieldPath: '.learningRate' },
      { rule: 'double(self.weightDecay) < 1.0', message: 'weightDecay must be below 1', fieldPath: '.weightDecay' },
    ],
  },
);

export const SparseFineTuneSpec = Type.Object(
  {
    baseModel: StorageRef('The Hugging Face checkpoint directory (config.json, safetensors, tokenizer.json) of a Llama-family model.'),
    dataset: Type.Object(
      {
        uri: Uri('Training data: JSON Lines or plain text.'),
        sha256: Type.Optional(Sha256()),
        format: StringEnum(['jsonl', 'text'] as const, { description: 'How the data file is laid out.', default: 'jsonl' }),
        textField: Type.String({ description: 'JSON field holding the text of each JSONL row.', default: 'text', minLength: 1, maxLength: 128 }),
        evalUri: Type.Optional(Uri('Held-out data for perplexity before and after; a split of the training data when absent.')),
        evalSha256: Type.Optional(Sha256('Digest pinning evalUri (required when it is http(s)).')),
      },
      { description: 'The fine-tuning data.', 'x-kubernetes-validations': [httpNeedsDigest(), httpNeedsDigest('evalUri', 'evalSha256')] },
    ),
    calibration: Type.Optional(Type.Object(
      {
        uri: Type.Optional(Uri('Calibration text for the pruner; the training data when absent.')),
        sha256: Type.Optional(Sha256()),
        samples: Type.Integer({ description: 'Calibration sequences.', minimum: 1, maximum: 4096, default: 128 }),
        sequenceLength: Type.Integer({ description: 'Tokens per calibration sequence.', minimum: 16, maximum: 32768, default: 512 }),
      },
      { description: 'Calibration data for activation-aware pruning (Wanda, SparseGPT) and layer importance.', 'x-kubernetes-validations': [httpNeedsDigest()] },
    )),
    method: StringEnum(SPARSE_METHODS, { description: 'The sparse fine-tuning method: losa, sparsepeft, qa-sparsepeft, shears, loram, spallm, or plain lora (no pruning).' }),
    sparsity: Type.Optional(Sparsity),
    adapter: Adapter,
    quantization: Type.Optional(Type.Object(
      {
        bits: Type.Integer({ description: 'Bits per quantized base weight (GPTQ, asymmetric).', minimum: 2, maximum: 8, default: 4 }),
        groupSize: Type.Integer({ description: 'Input columns sharing one scale and zero point; a layer with fewer inputs is one group per row.', minimum: 8, maximum: 8192, default: 128 }),
      },
      { description: 'QA-SparsePEFT: quantization of the sparse base the adapter is trained through and merged into.' },
    )),
    loram: Type.Optional(Loram),
    spallm: Type.Optional(Type.Object(
      {
        bits: Type.Integer({ description: 'Bits per sketch code: each lookup table holds 2^bits values.', minimum: 1, maximum: 8, default: 4 }),
        groupsPerRow: Type.Integer({ description: 'Lookup-table groups per weight row.', minimum: 1, maximum: 64, default: 4 }),
      },
      { description: 'SpaLLM: tune a sketched (lookup-table) model directly.' },
    )),
    elastic: Type.Optional(Type.Object(
      {
        rankChoices: Type.Array(Type.Integer({ description: 'A rank the super-adapter can be cut to.', minimum: 1, maximum: 1024 }), {
          description: 'Ranks trained jointly (Shears/NLS), e.g. [32, 24, 16]; each at most adapter.rank.', minItems: 1, maxItems: 8, 'x-kubernetes-list-type': 'set',
        }),
        subAdapter: StringEnum(['heuristic', 'maximal', 'minimal', 'search'] as const, { description: 'How the deployed sub-adapter is chosen: heuristic (the middle of the choices ranked largest first), maximal (the largest), minimal (the smallest), or search (NSGA-II over a rank per block and group: the lowest held-out loss among the Pareto-optimal sub-adapters no larger than the heuristic).', default: 'heuristic' }),
      },
      { description: 'Shears elastic adapters.' },
    )),
    training: Training,
    output: Type.Object(
      {
        uri: WritableUri('Where results are written (pvc:// or file://): the merged sparse model and/or the PEFT adapter.'),
        mergedModel: Type.Boolean({ description: 'Write the sparse model with the adapter merged in (sparsity kept).', default: true }),
        adapter: Type.Boolean({ description: 'Write the adapter in PEFT format.', default: true }),
        enrollInto: Type.Optional(Type.Object(
          {
            adapterCluster: ObjectName('AdapterCluster (same namespace) that should compress this adapter once it is trained.'),
            adapterName: Name('Name of the adapter inside the AdapterCluster.'),
          },
          { description: 'Hand the trained adapter to an AdapterCluster (train → compress → serve chain).' },
        )),
      },
      {
        description: 'What to write and where.',
        'x-kubernetes-validations': [
          { rule: 'self.mergedModel || self.adapter', message: 'output must include the merged model, the adapter, or both', fieldPath: '.adapter' },
          { rule: '!has(self.enrollInto) || self.adapter', message: 'enrolling into an AdapterCluster needs the adapter written', fieldPath: '.enrollInto' },
        ],
      },
    ),
    resources: Resources,
    backoffLimit: Type.Integer({ description: 'Retries of a crashed worker pod before the run fails.', minimum: 0, maximum: 10, default: 2 }),
    activeDeadlineSeconds: Type.Optional(Type.Integer({ description: 'Wall-clock limit for the run, in seconds.', minimum: 60, maximum: 2592000 })),
  },
  {
    description: 'What to prune, how to fine-tune, and where to write the results.',
    'x-kubernetes-validations': [
      { rule: `!(self.method in ${PRUNING_LIST}) || has(self.sparsity)`, message: 'methods losa, sparsepeft, qa-sparsepeft and shears need spec.sparsity', fieldPath: '.sparsity', reason: 'FieldValueRequired' },
      { rule: `!has(self.sparsity) || self.method in ${PRUNING_LIST}`, message: 'sparsity applies only to methods losa, sparsepeft, qa-sparsepeft and shears (loram prunes by spec.loram; lora and spallm do not prune)', fieldPath: '.sparsity', reason: 'FieldValueForbidden' },
      methodOnly('quantization', 'qa-sparsepeft'),
      methodOnly('loram', 'loram'),
      methodOnly('spallm', 'spallm'),
      methodOnly('elastic', 'shears'),
      { rule: '!has(self.elastic) || self.elastic.rankChoices.all(r, r <= self.adapter.rank)', message: 'every elastic rank choice must be at most adapter.rank, the rank of the super-adapter', fieldPath: '.elastic.rankChoices' },
    ],
  },
);

const LayerMetric = Type.Object(
  {
    index: Type.Integer({ description: 'Transformer block index.', minimum: 0 }),
    sparsityPercent: Type.Optional(Type.Number({ description: 'Achieved sparsity of the block, in percent.' })),
    rank: Type.Optional(Type.Integer({ description: 'Adapter rank allocated to the block.', minimum: 0 })),
    reconstructionError: Type.Optional(Type.Number({ description: 'Relative output error of the pruned block on calibration data.' })),
  },
  { description: 'Per-layer results.' },
);

const Digest = Type.Object(
  {
    name: Type.String({ description: 'Artifact file, relative to the output URI.' }),
    uri: Type.Optional(Type.String({ description: 'Full URI of the file.' })),
    sha256: Sha256('Its sha256.'),
    sizeBytes: Type.Optional(Type.Integer({ description: 'Its size in bytes.', minimum: 0 })),
  },
  { description: 'Digest of one written file.' },
);

export const SparseFineTuneStatus = Type.Object(
  {
    ...StatusCommon,
    progress: Type.Optional(Progress),
    metrics: Type.Optional(Type.Object(
      {
        loss: Type.Optional(Type.Number({ description: 'Latest training loss.' })),
        perplexityBefore: Type.Optional(Type.Number({ description: 'Held-out perplexity of the pruned model before fine-tuning (loram: of the original model, which the recovered adapter is for; qa-sparsepeft: of the pruned model quantized by GPTQ).' })),
        perplexityAfter: Type.Optional(Type.Number({ description: 'Held-out perplexity after fine-tuning and merging (loram: the original model with the recovered adapter; shears: the pruned model with the chosen sub-adapter; qa-sparsepeft: the merged model on the base\'s quantization grid).' })),
        prunedParameters: Type.Optional(Type.Number({ description: 'loram: parameters of the pruned model the adapter trained on (its nonzeros for semi and unstructured).' })),
        parameterReductionRatio: Type.Optional(Type.Number({ description: 'loram: parameters of the original model over those of the pruned one.' })),
        perplexityPruned: Type.Optional(Type.Number({ description: 'loram, qa-sparsepeft: held-out perplexity of the pruned model (qa-sparsepeft: before quantization).' })),
        perplexityAligned: Type.Optional(Type.Number({ description: 'loram: held-out perplexity of the pruned model after alignment.' })),
        perplexityPrunedLora: Type.Optional(Type.Number({ description: 'loram: held-out perplexity of the pruned (aligned) model with its adapter, before recovery.' })),
        perplexityMaximal: Type.Optional(Type.Number({ description: 'shears: held-out perplexity of the pruned model with the maximal sub-adapter (every module at the largest rank choice) merged.' })),
        perplexityHeuristic: Type.Optional(Type.Number({ description: 'shears: held-out perplexity with the heuristic sub-adapter (the middle rank choice) merged.' })),
        perplexityMinimal: Type.Optional(Type.Number({ description: 'shears: held-out perplexity with the minimal sub-adapter (the smallest rank choice) merged.' })),
        perplexityDense: Type.Optional(Type.Number({ description: 'spallm: held-out perplexity of the dense base before it was sketched (perplexityBefore is the untuned sketch\'s).' })),
        trainableParameters: Type.Optional(Type.Number({ description: 'spallm: lookup-table values trained (rows × groups per row × 2^bits over the sketched layers).' })),
        achievedSparsityPercent: Type.Optional(Type.Number({ description: 'Share of zeros in the merged model\'s prunable weights, in percent.' })),
        layers: Type.Optional(Type.Array(LayerMetric, { description: 'Per-layer sparsity, rank and reconstruction error.', maxItems: 1024 })),
      },
      { description: 'Training and pruning results reported by the worker; measurements, hence numbers.' },
    )),
    outputs: Type.Optional(Type.Object(
      {
        modelUri: Type.Optional(Type.String({ description: 'Merged sparse model.' })),
        adapterUri: Type.Optional(Type.String({ description: 'PEFT adapter (spallm, which trains no adapter: its sketch, sketch.safetensors).' })),
        digests: Type.Optional(Type.Array(Digest, { description: 'sha256 of every written file.', maxItems: 256, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })),
      },
      { description: 'What the run wrote.' },
    )),
    resultGeneration: Type.Optional(Type.Integer({ description: 'The .metadata.generation the outputs belong to.', minimum: 0 })),
    jobName: Type.Optional(Type.String({ description: 'The Job running the worker.' })),
    startTime: Type.Optional(Type.String({ description: 'When the current run started (RFC 3339).', format: 'date-time' })),
    completionTime: Type.Optional(Type.String({ description: 'When the current run finished (RFC 3339).', format: 'date-time' })),
    lineage: Type.Optional(Type.Object(
      {
        adapterCluster: Type.Optional(Type.String({ description: 'AdapterCluster the adapter was handed to.' })),
        adapterName: Type.Optional(Type.String({ description: 'Its name there.' })),
        bundleRevision: Type.Optional(Type.String({ description: 'First bundle revision of that AdapterCluster that includes the adapter.' })),
      },
      { description: 'Where the trained adapter went next (train → compress → serve).' },
    )),
  },
  { description: 'Observed state, written by the operator from worker reports.' },
);

export type SparseFineTuneSpec = Static<typeof SparseFineTuneSpec>;
export type SparseFineTuneStatus = Static<typeof SparseFineTuneStatus>;
