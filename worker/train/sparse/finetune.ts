// A fine-tuning run of `lora`, `sparsepeft`, `qa-sparsepeft`, `shears` or `losa` from tokens to merged weights,
// without files or reports (the train mode owns those):
//   sparsepeft: prune the base block by block (Wanda, SparseGPT or magnitude; unstructured or N:M),
//               then train LoRA with ΔW = s·(B·A) ⊙ M, M = 1[W_pruned ≠ 0] (no gradient through M),
//               and merge W' = W_pruned + ΔW, which keeps every zero (ALGORITHMS.md §3);
//   qa-sparsepeft: qa-sparsepeft.ts — prune as sparsepeft does, quantize the pruned base with GPTQ,
//               train the masked LoRA through the fixed grid (straight-through), merge by quant(W̃);
//   shears:     shears.ts — prune as sparsepeft does, then train an elastic super-adapter
//               (a rank drawn per group at every step) and extract sub-adapters from it;
//   lora:       train plain LoRA on the dense base and merge W' = W + s·B·A;
//   losa:       losa.ts — prune and train in rounds, per-layer sparsity and ranks.
// Perplexity on the held-out tokens is measured before training (the pruned model for
// sparsepeft and shears) and after, on the merged weights that get written.
import { type Logger } from 'pino';
import { type LinearModule } from '../../formats/hf-checkpoint.js';
import { type LoraAdapter } from '../../formats/peft.js';
import { type LlamaConfig, linearPath } from '../../model/llama/config.js';
import { type LoraWeights, maskFeeds } from '../../model/llama/feeds.js';
import { type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { evalPerplexity } from '../../modes/eval.js';
import { type SessionCache } from '../../onnx/session.js';
import { loraAdapterOf, type TrainedLora, trainedLora } from './lora-result.js';
import { trainResuming } from './resume.js';
import { type Progress, type TrainConfig } from '../loop.js';
import { createLlamaTrainModel } from '../model-step.js';
import { Rng } from '../rng.js';
import { type ShrinkRule } from './dynamic-rank.js';
import { type LosaRound, losaFineTune, type RoundSplit } from './losa.js';
import { mergeLora, nonzeroMask } from './merge.js';
import { type SparsityPattern } from './pattern.js';
import { checkQuantSettings, type QuantSettings } from './gptq.js';
import { qaSparsePeftFineTune } from './qa-sparsepeft.js';
import { type ElasticOptions, shearsFineTune } from './shears.js';
import { type LayerPruneResult, modelSparsity, type PrunedModel, pruneModel } from './prune-model.js';
import { type PrunerKind } from './pruners.js';
import { type ScheduleKind } from './sparsity-schedule.js';

export const FINETUNE_METHODS = ['lora', 'sparsepeft', 'qa-sparsepeft', 'losa', 'shears'] as const;
export type FineTuneMethod = (typeof FINETUNE_METHODS)[number];

/** What the run is doing, for progress reports: the CRD's stage names. */
export type Stage = 'Pruning' | 'Quantizing' | 'Sketching' | 'Evaluating' | 'Training' | 'Merging';

export interface FineTuneOptions {
  method: FineTuneMethod;
  config: LlamaConfig;
  /** The dense base weights; not modified. */
  weights: WeightMap;
  /** Token streams: training and held-out. */
  train: ArrayLike<number>;
  eval: readonly number[];
  /** sparsepeft: the pruner's calibration sequences (one length) and what to prune. */
  calibration?: readonly (readonly number[])[];
  /** losa also reads the rounds' schedule and the layer rates' allocation (default uniform). */
  sparsity?: { pruner: PrunerKind; pattern: SparsityPattern; schedule?: { kind: ScheduleKind; steps: number }; layerwise?: 'rmi' | 'uniform' };
  /** losa: rank is the starting mean rank, maxRank bounds a layer's, rankAllocation (default reconstruction-error) how they spread. */
  adapter: { rank: number; alpha: number; targetModules: readonly LinearModule[]; maxRank?: number; rankAllocation?: 'reconstruction-error' | 'uniform' };
  /**
   * losa: what a layer's cut rank columns become (dynamic-rank.ts; default discard, as in the
   * paper) and how data and steps are shared among the rounds (losa.ts; default reference).
   */
  losa?: { shrink?: ShrinkRule; split?: RoundSplit };
  /** qa-sparsepeft: the base's GPTQ grid (default 4 bits, groups of 128 input columns). */
  quantization?: QuantSettings;
  /** shears: the ranks the super-adapter trains to be cut to (adapter.rank is r_max) and which cut is the result. */
  elastic?: ElasticOptions;
  /** The loop's config: steps, batch, sequence length (also the evaluation window), schedule, checkpoints. */
  training: Partial<TrainConfig> & Pick<TrainConfig, 'steps' | 'sequenceLength'>;
  /** Seed of the LoRA A initialization (PEFT's kaiming-uniform); the loop's own seed orders the data. */
  seed: number;
  /** Resume from the newest checkpoint under training.checkpointDir when there is one. Default true. */
  resume?: boolean;
  /** adapter_config.json's base_model_name_or_path. */
  baseModelName?: string;
  cache: SessionCache;
  log?: Logger;
  onStage?: (stage: Stage, step: number, totalSteps: number) => void;
  /** Each pruned block; losa gives the rank the block trains with next. */
  onPruned?: (layer: LayerPruneResult & { rank?: number }, layers: number) => void;
  /** losa: each round's schedule, rates, errors and ranks. */
  onLosaRound?: (round: LosaRound) => void;
  onTrainProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

export interface FineTuneResult {
  /** Every tensor of the model with the adapter merged in. */
  merged: Map<string, WeightTensor>;
  adapter: LoraAdapter;
  /** sparsepeft: the pruning's per-block results. */
  pruning?: PrunedModel;
  /** Zeros of the merged model's linear layers, per block and in all. */
  sparsity: ReturnType<typeof modelSparsity>;
  perplexityBefore: number;
  perplexityAfter: number;
  losses: number[];
  /** The run stopped at a signal before its last step: nothing is merged, the checkpoint is what counts. */
  interrupted: boolean;
  /** The step a resumed run started from (0 for a fresh run). */
  resumedFromStep: number;
  /** losa: the final rank of each block's adapter (the others train one rank everywhere). */
  ranks?: number[];
}

export async function fineTune(opts: FineTuneOptions): Promise<FineTuneResult> {
  if (opts.method === 'losa') return losaFineTune(opts);
  const c = opts.config;
  const { rank, alpha, targetModules } = opts.adapter;
  if (!(Number.isInteger(rank) && rank >= 1)) throw new Error(`adapter.rank must be a positive integer, got ${rank}`);
  if (targetModules.length === 0) throw new Error('adapter.targetModules is empty: expected modules such as q_proj, v_proj');
  const targets = Array.from({ length: c.numHiddenLayers }, (_, l) => targetModules.map((m) => linearPath(l, m))).flat();

  let base: WeightMap = opts.weights;
  let pruning: PrunedModel | undefined;
  let masks: Map<string, Float32Array> | undefined;
  const prunes = opts.method === 'sparsepeft' || opts.method === 'qa-sparsepeft' || opts.method === 'shears';
  if (opts.quantization && opts.method !== 'qa-sparsepeft') throw new Error(`quantization applies only to method qa-sparsepeft, not ${opts.method}`);
  if (opts.quantization) checkQuantSettings(opts.quantization);
  if (prunes) {
    if (!opts.sparsity) throw new Error(`method ${opts.method} needs sparsity (pruner and pattern)`);
    if (!opts.calibration || opts.calibration.length === 0) throw new Error(`method ${opts.method} needs calibration sequences for the pruner`);
    opts.onStage?.('Pruning', 0, c.numHiddenLayers);
    pruning = await pruneModel({
      config: c, weights: opts.weights, calibration: opts.calibration, pruner: opts.sparsity.pruner, pattern: opts.sparsity.pattern, cache: opts.cache,
      onLayer: (layer, layers) => {
        opts.onPruned?.(layer, layers);
        opts.onStage?.('Pruning', layer.index + 1, layers);
      },
    });
    base = pruning.weights;
    masks = new Map(targets.map((path) => [path, nonzeroMask((base.get(`${path}.weight`) as WeightTensor).data)]));
    opts.log?.info({ pruner: opts.sparsity.pruner, achievedSparsityPercent: pruning.achievedSparsityPercent, layers: pruning.layers.map((l) => ({ index: l.index, sparsityPercent: l.sparsityPercent, reconstructionError: l.reconstructionError })) }, 'pruned the base model');
  } else if (opts.sparsity) throw new Error('method lora does not prune: sparsity applies to sparsepeft, qa-sparsepeft and shears');

  const perplexity = async (weights: WeightMap): Promise<number> =>
    (await evalPerplexity({ config: c, weights, sequences: [opts.eval], sequenceLength: opts.training.sequenceLength, cache: opts.cache })).perplexity;
  opts.onStage?.('Evaluating', 0, 2);
  const perplexityBefore = await perplexity(base);
  if (opts.method === 'qa-sparsepeft') return qaSparsePeftFineTune(opts, { targets, base, masks: masks as Map<string, Float32Array>, pruning: pruning as PrunedModel, perplexityBefore, perplexity });
  if (opts.method === 'shears') return shearsFineTune(opts, { targets, base, masks: masks as Map<string, Float32Array>, pruning: pruning as PrunedModel, perplexityBefore, perplexity });

  const rng = new Rng(opts.seed);
  const model = await createLlamaTrainModel({
    config: c, weights: base, mode: 'lora', lora: { targets, rank, alpha }, cache: opts.cache, random: () => rng.next(),
    ...(masks ? { masks: { loraMasks: targets, feeds: maskFeeds(new Map([...masks].map(([p, m]) => [p, { shape: (base.get(`${p}.weight`) as WeightTensor).shape, data: m }])), 'lora') } } : {}),
  });
  let losses: number[];
  let interrupted = false;
  let resumedFromStep = 0;
  let lora: TrainedLora;
  try {
    const run = await trainResuming(model, opts);
    losses = run.losses;
    resumedFromStep = run.resumedFromStep;
    interrupted = losses.length < opts.training.steps;
    lora = trainedLora(model, targets, alpha / rank);
  } finally {
    await model.dispose();
  }

  const adapter = loraAdapterOf(lora, { rank, alpha, targetModules, ...(opts.baseModelName ? { baseModelName: opts.baseModelName } : {}) });
  if (interrupted) {
    return { merged: new Map(base), adapter, ...(pruning ? { pruning } : {}), sparsity: modelSparsity(c, base), perplexityBefore, perplexityAfter: Number.NaN, losses, interrupted, resumedFromStep };
  }
  opts.onStage?.('Merging', 0, 1);
  const merged = await mergeLora(base, lora as LoraWeights, opts.cache, masks);
  opts.onStage?.('Evaluating', 1, 2);
  const perplexityAfter = await perplexity(merged);
  return { merged, adapter, ...(pruning ? { pruning } : {}), sparsity: modelSparsity(c, merged), perplexityBefore, perplexityAfter, losses, interrupted, resumedFromStep };
}
