// LORAM — train small, infer large (ALGORITHMS.md §4), from tokens to the recovered adapter:
//   1. prune the base offline, keeping the first and last few blocks whole:
//        structured   — MLP neurons and KV heads (with their query heads) by Taylor importance;
//        random       — the same units at random (LORAM-Rand);
//        semi         — 2:4 and unstructured — a share of the weights, by the existing pruner
//                       (SparseGPT by default), zeros in a model of the original shapes;
//   2. optionally align the pruned model: continual pre-training on general text (align.ts);
//   3. train LoRA on the pruned (aligned) model: plain LoRA, unmasked, y = Wᴾx + s·BᴾAᴾx;
//   4. recover the adapter to the ORIGINAL shapes (recover.ts); for semi / unstructured the
//      factors already fit and the update is masked, ΔWᴿ = s·(BᴾAᴾ) ⊙ M (unmasked is a flag);
//   5. the inference model is the original, unaligned W₀ + ΔWᴿ: merged, and the adapter in PEFT
//      format for the original model.
// Perplexity on the held-out tokens at each stage: W₀, pruned, aligned, pruned + LoRA, W₀ + ΔWᴿ.
import { join } from 'node:path';
import { buildLoraAdapter, type LoraAdapter, loraConfig } from '../../formats/peft.js';
import { makeTensor } from '../../formats/tensor.js';
import { LINEAR_MODULES, type LlamaConfig, linearPath } from '../../model/llama/config.js';
import { type LoraModuleWeights, type LoraWeights } from '../../model/llama/feeds.js';
import { numParameters, type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { evalPerplexity } from '../../modes/eval.js';
import { type Progress } from '../loop.js';
import { Rng } from '../rng.js';
import { alignModel } from './align.js';
import { fineTune, type FineTuneOptions, type FineTuneResult } from './finetune.js';
import { mergeLora, nonzeroMask } from './merge.js';
import { type SparsityPattern } from './pattern.js';
import { modelSparsity, type PrunedModel, pruneModel } from './prune-model.js';
import { type PrunerKind } from './pruners.js';
import { recoverStructured } from './recover.js';
import { planFromImportance, prunableLayers, prunedConfig, randomImportance, sliceModel, type StructuredPlan, taylorImportance } from './structured.js';

export const LORAM_PRUNINGS = ['structured', 'random', 'semi', 'unstructured'] as const;
export type LoramPruning = (typeof LORAM_PRUNINGS)[number];

export interface LoramSettings {
  pruning: LoramPruning;
  /** Percent of each pruned block's units (structured, random) or weights (unstructured) removed; semi is 2:4, so 50. */
  prunePercent: number;
  keepFirstLayers: number;
  keepLastLayers: number;
  /** The pruner of semi and unstructured. Default sparsegpt. */
  pruner?: PrunerKind;
  /** Continual pre-training of the pruned model before LoRA: general text, optimizer steps, peak learning rate (default the LoRA run's). */
  align?: { tokens: ArrayLike<number>; steps: number; learningRate?: number };
  /** Pruned input columns of A (o_proj, down_proj): zeros (default) or N(0, (1/8)²). */
  prunedInputs?: 'zeros' | 'normal';
  /** semi / unstructured: mask the recovered update with the pruning mask (default true) or merge it whole. */
  maskedDelta?: boolean;
}

export interface LoramOptions extends Omit<FineTuneOptions, 'method' | 'sparsity'> {
  loram: LoramSettings;
  /** Alignment steps as they complete (the LoRA steps go to onTrainProgress). */
  onAlignProgress?: (p: Progress) => void;
}

export interface LoramReport {
  pruning: LoramPruning;
  /** Blocks that were pruned. */
  prunedLayers: number[];
  /** structured / random: the kept neurons and KV heads of every pruned block (null: kept whole). */
  plan: StructuredPlan | null;
  /** Parameters of the model LoRA trains on: the smaller model's, or the nonzeros of a sparse one (what the paper counts). */
  originalParameters: number;
  prunedParameters: number;
  /** originalParameters / prunedParameters. */
  reductionRatio: number;
  perplexityOriginal: number;
  perplexityPruned: number;
  /** After alignment; null without it. */
  perplexityAligned: number | null;
  /** The pruned (aligned) model with its adapter: what the training model reaches. */
  perplexityPrunedLora: number;
  /** W₀ + recovered adapter: the inference model. */
  perplexityRecovered: number;
  /** semi / unstructured with a masked merge: W₀ + the adapter unmasked, which is what the PEFT adapter alone applies. */
  perplexityRecoveredUnmasked: number | null;
  alignLosses: number[];
}

export interface LoramResult extends FineTuneResult {
  loram: LoramReport;
}

/** The status metrics a LORAM run adds to perplexityBefore (W₀) and perplexityAfter (W₀ + recovered). */
export function loramMetrics(r: LoramReport): Record<string, number> {
  const out: Record<string, number> = {
    prunedParameters: r.prunedParameters, parameterReductionRatio: r.reductionRatio, perplexityPruned: r.perplexityPruned, perplexityPrunedLora: r.perplexityPrunedLora,
  };
  if (r.perplexityAligned !== null) out.perplexityAligned = r.perplexityAligned;
  return out;
}

/** Checks the settings against the model; the message names the field and the valid range. */
export function checkLoramSettings(c: LlamaConfig, s: LoramSettings): number[] {
  if (!(LORAM_PRUNINGS as readonly string[]).includes(s.pruning)) throw new Error(`loram.pruning ${JSON.stringify(s.pruning)}: expected one of ${LORAM_PRUNINGS.join(', ')}`);
  if (!(Number.isInteger(s.prunePercent) && s.prunePercent >= 1 && s.prunePercent <= 95)) throw new Error(`loram.prunePercent must be an integer in [1, 95], got ${s.prunePercent}`);
  if (s.pruning === 'semi' && s.prunePercent !== 50) throw new Error(`loram.pruning semi is 2:4, which removes exactly 50 percent, but prunePercent is ${s.prunePercent}`);
  const layers = prunableLayers(c.numHiddenLayers, s.keepFirstLayers, s.keepLastLayers);
  if (layers.length === 0) {
    throw new Error(`loram.keepFirstLayers ${s.keepFirstLayers} and keepLastLayers ${s.keepLastLayers} keep all ${c.numHiddenLayers} blocks of the model whole: nothing is left to prune (together they must be below ${c.numHiddenLayers})`);
  }
  return layers;
}

export async function fineTuneLoram(opts: LoramOptions): Promise<LoramResult> {
  const c = opts.config;
  const s = opts.loram;
  const layers = checkLoramSettings(c, s);
  const structured = s.pruning === 'structured' || s.pruning === 'random';
  if (s.pruning !== 'random' && (!opts.calibration || opts.calibration.length === 0)) throw new Error(`loram pruning ${s.pruning} needs calibration sequences`);
  const perplexity = async (config: LlamaConfig, weights: WeightMap, lora?: LoraWeights): Promise<number> =>
    (await evalPerplexity({ config, weights, ...(lora ? { lora } : {}), sequences: [opts.eval], sequenceLength: opts.training.sequenceLength, cache: opts.cache })).perplexity;
  opts.onStage?.('Evaluating', 0, 1);
  const perplexityOriginal = await perplexity(c, opts.weights);

  // 1. Prune.
  opts.onStage?.('Pruning', 0, layers.length);
  let small = c;
  let smallWeights: WeightMap;
  let plan: StructuredPlan | null = null;
  let pruning: PrunedModel | undefined;
  let masks: Map<string, Float32Array> | undefined;
  if (structured) {
    const importance = s.pruning === 'structured'
      ? await taylorImportance({ config: c, weights: opts.weights, calibration: opts.calibration ?? [], layers, cache: opts.cache })
      : randomImportance(c, layers, opts.seed);
    plan = planFromImportance(c, importance, s.prunePercent);
    small = prunedConfig(c, plan);
    smallWeights = sliceModel(c, opts.weights, plan);
  } else {
    const pattern: SparsityPattern = s.pruning === 'semi' ? { kind: 'n:m', n: 2, m: 4 } : { kind: 'unstructured', percent: s.prunePercent };
    const prunedSet = new Set(layers);
    pruning = await pruneModel({
      config: c, weights: opts.weights, calibration: opts.calibration ?? [], pruner: s.pruner ?? 'sparsegpt', pattern, cache: opts.cache, layers: prunedSet,
      onLayer: (layer, total) => {
        if (prunedSet.has(layer.index)) opts.onPruned?.(layer, total);
        opts.onStage?.('Pruning', layer.index + 1, total);
      },
    });
    smallWeights = pruning.weights;
    masks = new Map(layers.flatMap((l) => LINEAR_MODULES.map((m) => [linearPath(l, m), nonzeroMask((smallWeights.get(`${linearPath(l, m)}.weight`) as WeightTensor).data)] as const)));
  }
  const originalParameters = numParameters(c);
  const prunedParameters = structured ? numParameters(small) : originalParameters - (pruning as PrunedModel).zeros;
  const perplexityPruned = await perplexity(small, smallWeights);
  const report: LoramReport = {
    pruning: s.pruning, prunedLayers: layers, plan, originalParameters, prunedParameters, reductionRatio: originalParameters / prunedParameters,
    perplexityOriginal, perplexityPruned, perplexityAligned: null, perplexityPrunedLora: Number.NaN, perplexityRecovered: Number.NaN, perplexityRecoveredUnmasked: null, alignLosses: [],
  };
  opts.log?.info({ pruning: s.pruning, prunedLayers: layers, originalParameters, prunedParameters, reductionRatio: round(report.reductionRatio), perplexityOriginal: round(perplexityOriginal), perplexityPruned: round(perplexityPruned), ...(small.layerSizes ? { layerSizes: small.layerSizes } : {}) }, 'pruned the base model for training');
  const stopped = (losses: number[], resumedFromStep: number): LoramResult => ({
    merged: new Map(opts.weights), adapter: emptyAdapter(opts), ...(pruning ? { pruning } : {}), sparsity: modelSparsity(c, opts.weights),
    perplexityBefore: perplexityOriginal, perplexityAfter: Number.NaN, losses, interrupted: true, resumedFromStep, loram: report,
  });

  // 2. Align.
  if (s.align) {
    const dir = opts.training.checkpointDir;
    const aligned = await alignModel({
      config: small, weights: smallWeights, tokens: s.align.tokens, cache: opts.cache, ...(masks ? { masks } : {}),
      training: { ...opts.training, steps: s.align.steps, ...(s.align.learningRate ? { learningRate: s.align.learningRate } : {}), checkpointDir: dir ? join(dir, 'align') : null },
      ...(opts.resume === false ? { resume: false } : {}), ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.onAlignProgress ? { onProgress: opts.onAlignProgress } : {}),
    });
    report.alignLosses = aligned.losses;
    if (aligned.interrupted) return stopped([], 0);
    smallWeights = aligned.weights;
  }

  // 3. LoRA on the pruned (aligned) model; its perplexityBefore is the aligned model's.
  const trained = await fineTune({ ...opts, method: 'lora', config: small, weights: smallWeights });
  if (s.align) report.perplexityAligned = trained.perplexityBefore;
  if (trained.interrupted) return stopped(trained.losses, trained.resumedFromStep);
  report.perplexityPrunedLora = trained.perplexityAfter;

  // 4. Recover to the original shapes; 5. merge into the original, unaligned weights.
  const prunedLora = adapterWeights(trained.adapter);
  const normal = new Rng(opts.seed);
  const recovered = plan ? recoverStructured(c, plan, prunedLora, { prunedInputs: s.prunedInputs ?? 'zeros', normal: () => normal.normal() }) : new Map(prunedLora);
  const mergeMasks = masks && s.maskedDelta !== false
    ? new Map([...recovered.keys()].map((path) => [path, masks.get(path) ?? new Float32Array((opts.weights.get(`${path}.weight`) as WeightTensor).data.length).fill(1)]))
    : undefined;
  opts.onStage?.('Merging', 0, 1);
  if (mergeMasks) opts.log?.warn({ pruning: s.pruning }, 'the merged model applies the recovered update masked by the pruning mask; a PEFT adapter cannot carry a mask, so the adapter written applies it whole (perplexityRecoveredUnmasked)');
  const merged = await mergeLora(opts.weights, recovered, opts.cache, mergeMasks);
  opts.onStage?.('Evaluating', 1, 1);
  report.perplexityRecovered = await perplexity(c, merged);
  if (mergeMasks) report.perplexityRecoveredUnmasked = await perplexity(c, opts.weights, recovered);
  const { rank, alpha, targetModules } = opts.adapter;
  const adapter = buildLoraAdapter(
    loraConfig({ r: rank, loraAlpha: alpha, targetModules: [...targetModules], baseModelNameOrPath: opts.baseModelName ?? null }),
    [...recovered].map(([name, m]) => ({ name, A: makeTensor('F32', [...m.A.shape], m.A.data), B: makeTensor('F32', [...m.B.shape], m.B.data) })),
  );
  const r = report;
  opts.log?.info({ perplexityOriginal: round(r.perplexityOriginal), perplexityPrunedLora: round(r.perplexityPrunedLora), perplexityRecovered: round(r.perplexityRecovered), ...(r.perplexityRecoveredUnmasked === null ? {} : { perplexityRecoveredUnmasked: round(r.perplexityRecoveredUnmasked) }) }, 'recovered the adapter for the original model');
  return {
    merged, adapter, ...(pruning ? { pruning } : {}), sparsity: modelSparsity(c, merged), perplexityBefore: perplexityOriginal, perplexityAfter: r.perplexityRecovered,
    losses: trained.losses, interrupted: false, resumedFromStep: trained.resumedFromStep, loram: report,
  };
}

/** An interrupted run has no adapter to write; this placeholder is never saved (train stops first). */
function emptyAdapter(opts: LoramOptions): LoraAdapter {
  return { config: loraConfig({ r: opts.adapter.rank, loraAlpha: opts.adapter.alpha, targetModules: [...opts.adapter.targetModules], baseModelNameOrPath: opts.baseModelName ?? null }), modules: new Map() };
}

function adapterWeights(adapter: LoraAdapter): Map<string, LoraModuleWeights> {
  return new Map([...adapter.modules.values()].map((m) => [m.name, { A: { shape: m.A.shape, data: m.A.data }, B: { shape: m.B.shape, data: m.B.data }, scaling: m.scaling }]));
}

function round(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}
