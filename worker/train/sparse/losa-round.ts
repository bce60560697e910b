// One LoSA pruning round (ALGORITHMS.md §2) on the model with the adapter merged in, W + s(BA)⊙M:
//   1. layer rates: RMI importance by CKA of every block's input on the calibration set, then the
//      closed-form rates around S_t (or S_t everywhere when layerwise is uniform), then exact counts;
//   2. prune block by block as pruneModel does — statistics from the block on the outputs of the
//      already-pruned blocks, every linear module to its count, the pruned block's output feeds
//      the next — keeping each module's selection;
//   3. e_l, each block's output error against the dense model's, which the rank allocation reads.
// The caller unmerges with the new selection afterwards; this file only prunes and measures.
import { LINEAR_MODULES } from '../../formats/hf-checkpoint.js';
import { type LlamaConfig, linearPath, linearShape } from '../../model/llama/config.js';
import { EMBED, type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { type BlockRunner, embedTokens } from './calibration.js';
import { type CenteredGram, ckaMatrix, type LayerImportance, rmiImportance } from './cka.js';
import { allocateLayerRates, layerZeroCounts, moduleZeroCounts } from './layer-rates.js';
import { countZeros, prunedCount } from './pattern.js';
import { type LayerPruneResult } from './prune-model.js';
import { type InputStats, type PrunerKind, pruneLinearMasked, type PruneTarget, statsNeeded } from './pruners.js';
import { channelNorms, reconstructionError } from './rank-allocation.js';
import { type PruningRound } from './sparsity-schedule.js';

/** The dense model's block outputs on the calibration set (Yd) and their channel norms σ, once per run. */
export interface DenseReference {
  outputs: Float32Array[];
  norms: Float64Array[];
}

export interface Calibration {
  sequences: readonly (readonly number[])[];
  runner: BlockRunner;
  gram: CenteredGram;
}

export async function denseReference(config: LlamaConfig, weights: WeightMap, cal: Calibration): Promise<DenseReference> {
  const [n, t] = dims(cal.sequences);
  let hidden = embedTokens(weight(weights, EMBED), cal.sequences, config.hiddenSize);
  const outputs: Float32Array[] = [];
  for (let l = 0; l < config.numHiddenLayers; l++) {
    hidden = (await cal.runner.run(l, weights, hidden, n, t, 'none')).hidden;
    outputs.push(hidden);
  }
  return { outputs, norms: outputs.map((y) => channelNorms(y, config.hiddenSize)) };
}

export interface RoundOptions {
  config: LlamaConfig;
  /** W + s(BA)⊙M: what this round prunes. Not modified. */
  merged: WeightMap;
  cal: Calibration;
  dense: DenseReference;
  pruner: PrunerKind;
  round: PruningRound;
  /** unstructured (rates per layer) or a fixed N:M pattern (every layer alike, every round). */
  nm?: { n: number; m: number };
  layerwise: 'rmi' | 'uniform';
  /** Module paths with an adapter: the others cannot grow back a zero, so their zeros stay counted. */
  adapted: ReadonlySet<string>;
  onLayer?: (layer: number, layers: number) => void;
}

export interface RoundResult {
  /** The pruned merged weights: every tensor of the model. */
  weights: Map<string, WeightTensor>;
  /** Module path → the selection, 1 kept / 0 pruned, for every linear module. */
  keep: Map<string, Float32Array>;
  /** rmi only: what the rates were chosen from. */
  importance?: LayerImportance;
  /** The rate asked of each block (fraction); the counts realise it to a weight. */
  rates: number[];
  /** Per block: zeros, sparsity and e_l as reconstructionError. */
  layers: LayerPruneResult[];
}

export async function pruneRound(opts: RoundOptions): Promise<RoundResult> {
  const c = opts.config;
  const layers = c.numHiddenLayers;
  const [n, t] = dims(opts.cal.sequences);
  const mean = opts.round.percent / 100;
  const sizes = LINEAR_MODULES.map((m) => linearShape(c, m)[0] * linearShape(c, m)[1]);
  const layerSize = sizes.reduce((s, x) => s + x, 0);

  let importance: LayerImportance | undefined;
  let rates = Array.from({ length: layers }, () => mean);
  if (!opts.nm && opts.layerwise === 'rmi' && layers > 1) {
    importance = await blockImportance(c, opts.merged, opts.cal);
    rates = allocateLayerRates(importance.importance, mean, opts.round.delta);
  }
  // Exactly ⌊S_t·N⌋ zeros in the model, so the last round lands on the target count to the weight.
  const counts = opts.nm ? [] : layerZeroCounts(rates, rates.map(() => layerSize), prunedCount(opts.round.percent, layers * layerSize));

  const weights = new Map(opts.merged);
  const keep = new Map<string, Float32Array>();
  const kind = statsNeeded(opts.pruner);
  const results: LayerPruneResult[] = [];
  let hidden = embedTokens(weight(weights, EMBED), opts.cal.sequences, c.hiddenSize);
  for (let l = 0; l < layers; l++) {
    const floors = LINEAR_MODULES.map((m) => (opts.adapted.has(linearPath(l, m)) ? 0 : countZeros(weight(weights, `${linearPath(l, m)}.weight`).data)));
    const moduleCounts = opts.nm ? [] : moduleZeroCounts(counts[l] as number, sizes, floors);
    const before = await opts.cal.runner.run(l, weights, hidden, n, t, kind);
    let zeros = 0;
    before.groups.forEach((modules, g) => {
      const raw = before.stats[g];
      for (const m of modules) {
        const path = linearPath(l, m);
        const name = `${path}.weight`;
        const w = weight(weights, name);
        const [rows, cols] = linearShape(c, m);
        const stats: InputStats | undefined = raw ? { tokens: before.tokens, sumSquares: kind === 'gram' ? diagonal(raw, cols) : raw, ...(kind === 'gram' ? { gram: raw } : {}) } : undefined;
        const target: PruneTarget = opts.nm ? { kind: 'n:m', ...opts.nm } : { kind: 'count', zeros: moduleCounts[LINEAR_MODULES.indexOf(m)] as number };
        const pruned = pruneLinearMasked(opts.pruner, { weight: w.data, rows, cols, name }, target, stats);
        weights.set(name, { shape: w.shape, data: pruned.weight });
        keep.set(path, Float32Array.from(pruned.keep));
        for (const k of pruned.keep) if (k === 0) zeros++;
      }
    });
    const after = await opts.cal.runner.run(l, weights, hidden, n, t, 'none');
    const error = reconstructionError(opts.dense.outputs[l] as Float32Array, after.hidden, opts.dense.norms[l] as Float64Array);
    results.push({ index: l, zeros, total: layerSize, sparsityPercent: (100 * zeros) / layerSize, reconstructionError: error });
    opts.onLayer?.(l, layers);
    hidden = after.hidden;
  }
  return { weights, keep, ...(importance ? { importance } : {}), rates, layers: results };
}

/** CKA-based importance of every block from its input on the calibration set, through `weights` unpruned. */
export async function blockImportance(c: LlamaConfig, weights: WeightMap, cal: Calibration): Promise<LayerImportance> {
  const [n, t] = dims(cal.sequences);
  if (n < 2) throw new Error(`layer importance by CKA compares calibration sequences with each other: it needs at least 2, got ${n}`);
  let hidden = embedTokens(weight(weights, EMBED), cal.sequences, c.hiddenSize);
  const grams: Float64Array[] = [];
  for (let l = 0; l < c.numHiddenLayers; l++) {
    grams.push(await cal.gram.of(hidden, n));
    if (l + 1 < c.numHiddenLayers) hidden = (await cal.runner.run(l, weights, hidden, n, t, 'none')).hidden;
  }
  return rmiImportance(ckaMatrix(grams), c.numHiddenLayers);
}

function dims(sequences: readonly (readonly number[])[]): [number, number] {
  const n = sequences.length;
  const t = sequences[0]?.length ?? 0;
  if (n === 0 || t === 0) throw new Error('LoSA needs at least one non-empty calibration sequence');
  return [n, t];
}

function weight(weights: WeightMap, name: string): WeightTensor {
  const w = weights.get(name);
  if (!w) throw new Error(`LoSA: the model has no weight ${name}`);
  return w;
}

function diagonal(gram: Float64Array, n: number): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => gram[i * n + i] as number);
}
