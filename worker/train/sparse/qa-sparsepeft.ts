// QA-SparsePEFT (SQFT, ALGORITHMS.md §3): on the base pruned as sparsepeft prunes it,
//   1. quantize every linear layer with GPTQ (quantization.bits, asymmetric, a scale and an
//      integer zero point per row and group of quantization.groupSize input columns, clamped to
//      a layer's input count), pruned entries held at exactly 0 (gptq.ts, quantize-model.ts);
//   2. train LoRA with W̃ = W_q + s·(B·A) ⊙ M (W_q the dequantized base, M = 1[pruned base ≠ 0])
//      and the forward through deq(quant(W̃)) on the grid GPTQ fixed, gradients straight through
//      (model/llama/lora.ts);
//   3. merge by quant(W̃) on that grid: the merged model is a 4-bit model (written as its
//      dequantized float32 weights, and its codes, scales and zeros beside them). A pruned entry
//      has W_q = 0 and a masked delta of 0, so its code is z and its weight s·(z − z) = 0.
// The mask is the pruning's (the pruned base's nonzeros), not the quantized base's: a kept weight
// GPTQ happened to round to its group's zero code may still be trained away from it.
import { LINEAR_MODULES } from '../../formats/hf-checkpoint.js';
import { makeTensor, type Tensor } from '../../formats/tensor.js';
import { type LlamaConfig, linearPath } from '../../model/llama/config.js';
import { type Feeds, maskFeeds } from '../../model/llama/feeds.js';
import { loraQuantInputNames } from '../../model/llama/params.js';
import { type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import * as nn from '../../onnx/index.js';
import { loraAdapterOf, type TrainedLora, trainedLora } from './lora-result.js';
import { trainResuming } from './resume.js';
import { createLlamaTrainModel } from '../model-step.js';
import { Rng } from '../rng.js';
import { type FineTuneOptions, type FineTuneResult } from './finetune.js';
import { checkQuantSettings, dequantize, type QuantizedLinear, quantizeOnGrid, type QuantSettings } from './gptq.js';
import { mergeLora, nonzeroMask } from './merge.js';
import { modelSparsity } from './prune-model.js';
import { quantizeModel } from './quantize-model.js';
import { type PrunedBase } from './shears.js';

/** The paper's setting: 4 bits, groups of 128 input columns. */
export const DEFAULT_QUANTIZATION: QuantSettings = { bits: 4, groupSize: 128 };

export interface QaSparsePeftResult extends FineTuneResult {
  quantization: {
    settings: QuantSettings;
    /** Held-out perplexity of the pruned base before quantization (perplexityBefore is the quantized one's). */
    perplexityPruned: number;
    /** Module path → the group size used where the setting exceeded the layer's input count. */
    clamped: Map<string, number>;
    /** Every linear layer of the merged model on its grid (of the quantized base when interrupted). */
    linears: Map<string, QuantizedLinear>;
    /** Per block, the relative output error GPTQ left on the calibration inputs. */
    layers: { index: number; reconstructionError: number }[];
  };
}

/** The grid of each target as the fake quantizer's feeds: scales and zeros [out, groups], column → group [in]. */
export function quantGridFeeds(linears: ReadonlyMap<string, QuantizedLinear>, targets: readonly string[]): Feeds {
  const feeds: Feeds = {};
  for (const path of targets) {
    const q = linears.get(path);
    if (!q) throw new Error(`${path}: no quantization grid for this LoRA target`);
    const names = loraQuantInputNames(path);
    feeds[names.scales] = nn.tensor('float32', [q.rows, q.groups], q.scales);
    feeds[names.zeros] = nn.tensor('float32', [q.rows, q.groups], Float32Array.from(q.zeros));
    feeds[names.groups] = nn.tensor('int64', [q.cols], BigInt64Array.from({ length: q.cols }, (_, j) => BigInt(Math.floor(j / q.groupSize))));
  }
  return feeds;
}

export async function qaSparsePeftFineTune(opts: FineTuneOptions, pruned: PrunedBase): Promise<QaSparsePeftResult> {
  const c: LlamaConfig = opts.config;
  const settings = opts.quantization ?? DEFAULT_QUANTIZATION;
  checkQuantSettings(settings);
  const { rank, alpha, targetModules } = opts.adapter;
  const { targets, masks, pruning } = pruned;
  const keep = new Map<string, Float32Array>();
  for (let l = 0; l < c.numHiddenLayers; l++) {
    for (const m of LINEAR_MODULES) keep.set(linearPath(l, m), nonzeroMask((pruned.base.get(`${linearPath(l, m)}.weight`) as WeightTensor).data));
  }

  opts.onStage?.('Quantizing', 0, c.numHiddenLayers);
  const quantized = await quantizeModel({
    config: c, weights: pruned.base, keep, calibration: opts.calibration as readonly (readonly number[])[], ...settings, cache: opts.cache,
    onLayer: (layer, layers) => opts.onStage?.('Quantizing', layer.index + 1, layers),
  });
  if (quantized.clamped.size > 0) {
    opts.log?.warn({ groupSize: settings.groupSize, clamped: Object.fromEntries(quantized.clamped) }, 'quantization.groupSize exceeds the input count of some layers: their rows are one group each');
  }
  const base = quantized.weights;
  opts.onStage?.('Evaluating', 1, 3);
  const perplexityBefore = await pruned.perplexity(base);
  opts.log?.info({ ...settings, perplexityPruned: pruned.perplexityBefore, perplexityQuantized: perplexityBefore, layers: quantized.layers }, 'quantized the pruned base with GPTQ');

  const rng = new Rng(opts.seed);
  const model = await createLlamaTrainModel({
    config: c, weights: base, mode: 'lora', lora: { targets, rank, alpha }, cache: opts.cache, random: () => rng.next(),
    masks: { loraMasks: targets, feeds: maskFeeds(new Map([...masks].map(([p, m]) => [p, { shape: (base.get(`${p}.weight`) as WeightTensor).shape, data: m }])), 'lora') },
    quant: { bits: settings.bits, feeds: quantGridFeeds(quantized.linears, targets) },
  });
  let lora: TrainedLora;
  let losses: number[];
  let resumedFromStep = 0;
  try {
    const run = await trainResuming(model, opts);
    losses = run.losses;
    resumedFromStep = run.resumedFromStep;
    lora = trainedLora(model, targets, alpha / rank);
  } finally {
    await model.dispose();
  }
  const adapter = loraAdapterOf(lora, { rank, alpha, targetModules, ...(opts.baseModelName ? { baseModelName: opts.baseModelName } : {}) });
  const quantization = { settings, perplexityPruned: pruned.perplexityBefore, clamped: quantized.clamped, linears: quantized.linears, layers: quantized.layers };
  if (losses.length < opts.training.steps) {
    return { merged: new Map(base), adapter, pruning, sparsity: modelSparsity(c, base), perplexityBefore, perplexityAfter: Number.NaN, losses, interrupted: true, resumedFromStep, quantization };
  }

  opts.onStage?.('Merging', 0, 1);
  const { merged, linears } = await mergeQuantized(base, lora, masks, quantized.linears, opts);
  opts.onStage?.('Evaluating', 2, 3);
  const perplexityAfter = await pruned.perplexity(merged);
  return {
    merged, adapter, pruning, sparsity: modelSparsity(c, merged), perplexityBefore, perplexityAfter, losses, interrupted: false, resumedFromStep,
    quantization: { ...quantization, linears },
  };
}

/**
 * quant(W_q + s·(B·A) ⊙ M) on each target's fixed grid: the masked merge (the same graph ops, in the
 * same order, as the training forward) and then the codes on the host, whose float32 arithmetic
 * and rounding are the graph's, so the merged model is the model the last step trained.
 */
async function mergeQuantized(
  base: WeightMap, lora: Map<string, { A: WeightTensor; B: WeightTensor; scaling: number }>, masks: ReadonlyMap<string, Float32Array>,
  grids: ReadonlyMap<string, QuantizedLinear>, opts: FineTuneOptions,
): Promise<{ merged: Map<string, WeightTensor>; linears: Map<string, QuantizedLinear> }> {
  const adapted = await mergeLora(base, lora, opts.cache, masks);
  const merged = new Map(adapted);
  const linears = new Map(grids);
  for (const path of lora.keys()) {
    const name = `${path}.weight`;
    const w = adapted.get(name) as WeightTensor;
    const q = quantizeOnGrid(w.data, grids.get(path) as QuantizedLinear);
    linears.set(path, q);
    merged.set(name, { shape: w.shape, data: dequantize(q) });
  }
  return { merged, linears };
}

/** File name, inside the merged model's folder, of the 4-bit codes and their grid. */
export const QUANTIZATION_FILE = 'quantization.safetensors';

/**
 * The merged model's codes and grid as safetensors tensors, per linear module path:
 *   <path>.qweight U8 [out, in]      one code per byte (not packed), in [0, 2^bits − 1]
 *   <path>.scales  F32 [out, groups]
 *   <path>.qzeros  U8 [out, groups]  integer zero points
 * with W[o, i] = scales[o, g]·(qweight[o, i] − qzeros[o, g]), g = ⌊i / group_size⌋; group_size is
 * min(quantization.groupSize, in) per module, listed in the metadata beside bits.
 */
export function quantizationTensors(linears: ReadonlyMap<string, QuantizedLinear>, settings: QuantSettings): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const tensors = new Map<string, Tensor>();
  const groupSizes: Record<string, number> = {};
  for (const [path, q] of [...linears].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    tensors.set(`${path}.qweight`, makeTensor('U8', [q.rows, q.cols], q.codes));
    tensors.set(`${path}.scales`, makeTensor('F32', [q.rows, q.groups], q.scales));
    tensors.set(`${path}.qzeros`, makeTensor('U8', [q.rows, q.groups], q.zeros));
    groupSizes[path] = q.groupSize;
  }
  const metadata = {
    format: 'tessera-gptq-asymmetric',
    bits: String(settings.bits),
    group_size: String(settings.groupSize),
    group_sizes: JSON.stringify(groupSizes),
    dequantize: 'W[o, i] = scales[o, i // group_size] * (qweight[o, i] - qzeros[o, i // group_size])',
  };
  return { tensors, metadata };
}
