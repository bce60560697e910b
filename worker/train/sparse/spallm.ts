// SpaLLM end to end (ALGORITHMS.md §5): sketch the base layer by layer on calibration data, then
// fine-tune only the lookup tables on the training text; the result is the sketch (tables and
// codes) and the model it decodes to. No adapter: the tuned tables are the model.
import { type Logger } from 'pino';
import { makeTensor, type Tensor } from '../../formats/tensor.js';
import { type LlamaConfig } from '../../model/llama/config.js';
import { type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { evalPerplexity } from '../../modes/eval.js';
import { type SessionCache } from '../../onnx/session.js';
import { trainResuming } from './resume.js';
import { type Progress, type TrainConfig } from '../loop.js';
import { createSketchTrainModel, type SketchLayerResult, sketchModel } from './spallm-model.js';
import { type FineTuneOptions, type FineTuneResult } from './finetune.js';
import { modelSparsity } from './prune-model.js';
import { type Sketch, sketchWeight } from './spallm-sketch.js';

export interface SpallmSettings {
  bits: number;
  groupsPerRow: number;
  /** Exponent p of the k-means weights d_j^(−p); default 3. */
  power?: number;
}

export interface SpallmOptions {
  config: LlamaConfig;
  /** The dense base weights; not modified. */
  weights: WeightMap;
  train: ArrayLike<number>;
  eval: readonly number[];
  calibration: readonly (readonly number[])[];
  spallm: SpallmSettings;
  training: Partial<TrainConfig> & Pick<TrainConfig, 'steps' | 'sequenceLength'>;
  resume?: boolean;
  cache: SessionCache;
  log?: Logger;
  onStage?: (stage: 'Sketching' | 'Evaluating' | 'Training', step: number, totalSteps: number) => void;
  onSketched?: (layer: SketchLayerResult, layers: number) => void;
  onTrainProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

export interface SpallmResult {
  /** Every tensor of the model, the sketched layers decoded from the tuned tables. */
  merged: Map<string, WeightTensor>;
  /** Weight name → its sketch with the tuned tables. */
  sketches: Map<string, Sketch>;
  layers: SketchLayerResult[];
  perplexityDense: number;
  /** The sketch before tuning. */
  perplexityBefore: number;
  perplexityAfter: number;
  trainableParameters: number;
  sketchedWeights: number;
  losses: number[];
  interrupted: boolean;
  resumedFromStep: number;
}

export async function fineTuneSpallm(opts: SpallmOptions): Promise<SpallmResult> {
  const c = opts.config;
  if (opts.calibration.length === 0) throw new Error('method spallm needs calibration sequences for the sketch');
  const perplexity = async (weights: WeightMap): Promise<number> =>
    (await evalPerplexity({ config: c, weights, sequences: [opts.eval], sequenceLength: opts.training.sequenceLength, cache: opts.cache })).perplexity;
  opts.onStage?.('Evaluating', 0, 3);
  const perplexityDense = await perplexity(opts.weights);
  opts.onStage?.('Sketching', 0, c.numHiddenLayers);
  const sketched = await sketchModel({
    config: c, weights: opts.weights, calibration: opts.calibration, bits: opts.spallm.bits, groupsPerRow: opts.spallm.groupsPerRow, cache: opts.cache,
    ...(opts.spallm.power === undefined ? {} : { power: opts.spallm.power }),
    onLayer: (layer, layers) => {
      opts.onSketched?.(layer, layers);
      opts.onStage?.('Sketching', layer.index + 1, layers);
    },
  });
  opts.log?.info({ bits: opts.spallm.bits, groupsPerRow: opts.spallm.groupsPerRow, trainableParameters: sketched.trainableParameters, sketchedWeights: sketched.sketchedWeights, layers: sketched.layers }, 'sketched the base model');
  opts.onStage?.('Evaluating', 1, 3);
  const perplexityBefore = await perplexity(sketched.weights);

  const model = await createSketchTrainModel({ config: c, weights: sketched.weights, sketches: sketched.sketches, cache: opts.cache });
  let losses: number[];
  let resumedFromStep = 0;
  let sketches: Map<string, Sketch>;
  try {
    const run = await trainResuming(model, opts);
    losses = run.losses;
    resumedFromStep = run.resumedFromStep;
    sketches = model.sketchesOf();
  } finally {
    await model.dispose();
  }
  const merged = new Map(sketched.weights);
  for (const [name, s] of sketches) merged.set(name, { shape: (merged.get(name) as WeightTensor).shape, data: sketchWeight(s) });
  const interrupted = losses.length < opts.training.steps;
  opts.onStage?.('Evaluating', 2, 3);
  const perplexityAfter = interrupted ? Number.NaN : await perplexity(merged);
  return { merged, sketches, layers: sketched.layers, perplexityDense, perplexityBefore, perplexityAfter, trainableParameters: sketched.trainableParameters, sketchedWeights: sketched.sketchedWeights, losses, interrupted, resumedFromStep };
}

/**
 * The sketch as safetensors entries: `<module>.lut` F32 [rows, groups, 2^bits] and `<module>.codes`
 * U8 [rows, cols] per sketched layer (module = the weight name without `.weight`); Ŵ_ij =
 * lut[i, ⌊j / ⌈cols/groups⌉⌋ (the last group takes the rest), codes_ij].
 */
export function sketchTensors(sketches: ReadonlyMap<string, Sketch>): Array<[string, Tensor]> {
  const out: Array<[string, Tensor]> = [];
  for (const [name, s] of sketches) {
    const base = name.replace(/\.weight$/, '');
    out.push([`${base}.lut`, makeTensor('F32', [s.rows, s.groupsPerRow, 1 << s.bits], s.lut)], [`${base}.codes`, makeTensor('U8', [s.rows, s.cols], s.codes)]);
  }
  return out;
}

export const DEFAULT_SPALLM: SpallmSettings = { bits: 4, groupsPerRow: 4 };
/** The sketch in the adapter folder: the tuned tables and the codes, what SpaLLM trains instead of an adapter. */
export const SKETCH_FILE = 'sketch.safetensors';

/** A SpaLLM run in the shape the train workload reports and writes: no LoRA adapter, the sketch instead. */
export interface SpallmRunResult extends Pick<FineTuneResult, 'merged' | 'sparsity' | 'perplexityBefore' | 'perplexityAfter' | 'losses' | 'interrupted' | 'resumedFromStep'> {
  spallm: { settings: SpallmSettings; perplexityDense: number; trainableParameters: number; sketchedWeights: number; sketches: Map<string, Sketch>; layers: SketchLayerResult[] };
}

export async function spallmFineTune(opts: FineTuneOptions & { spallm: SpallmSettings }): Promise<SpallmRunResult> {
  if (!opts.calibration) throw new Error('method spallm needs calibration sequences for the sketch');
  const r = await fineTuneSpallm({
    config: opts.config, weights: opts.weights, train: opts.train, eval: opts.eval, calibration: opts.calibration, spallm: opts.spallm, training: opts.training, cache: opts.cache,
    ...(opts.resume === undefined ? {} : { resume: opts.resume }), ...(opts.log ? { log: opts.log } : {}), ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onTrainProgress ? { onTrainProgress: opts.onTrainProgress } : {}),
    ...(opts.onStage ? { onStage: opts.onStage } : {}),
  });
  return {
    merged: r.merged, sparsity: modelSparsity(opts.config, r.merged), perplexityBefore: r.perplexityBefore, perplexityAfter: r.perplexityAfter, losses: r.losses, interrupted: r.interrupted, resumedFromStep: r.resumedFromStep,
    spallm: { settings: opts.spallm, perplexityDense: r.perplexityDense, trainableParameters: r.trainableParameters, sketchedWeights: r.sketchedWeights, sketches: r.sketches, layers: r.layers },
  };
}

/** The sketch file's tensors and metadata (method, bits, groups per row, group size per module). */
export function sketchFile(r: SpallmRunResult['spallm']): { tensors: Array<[string, Tensor]>; metadata: Record<string, string> } {
  const groupSizes = Object.fromEntries([...r.sketches].map(([name, s]) => [name.replace(/\.weight$/, ''), s.groupSize]));
  return { tensors: sketchTensors(r.sketches), metadata: { method: 'spallm', bits: String(r.settings.bits), groups_per_row: String(r.settings.groupsPerRow), group_sizes: JSON.stringify(groupSizes) } };
}
