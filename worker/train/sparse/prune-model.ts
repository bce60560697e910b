// Pruning a whole model block by block (ALGORITHMS.md §1): the calibration sequences are embedded,
// then for each block in order — statistics of its linear layers' inputs with its dense weights,
// prune every linear layer of the block, run the pruned block to get the next block's inputs. So
// the inputs of block l come from the already-pruned blocks before it, as in the Wanda and
// SparseGPT reference code. Embeddings, norms and the LM head are not pruned.
import { LINEAR_MODULES } from '../../formats/hf-checkpoint.js';
import { type LlamaConfig, linearPath, linearShape } from '../../model/llama/config.js';
import { EMBED, type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { type SessionCache } from '../../onnx/session.js';
import { BlockRunner, embedTokens } from './calibration.js';
import { countZeros, patternPercent, type SparsityPattern } from './pattern.js';
import { type InputStats, type PrunerKind, pruneLinear, statsNeeded } from './pruners.js';

export interface PruneModelOptions {
  config: LlamaConfig;
  /** Dense weights; not modified. */
  weights: WeightMap;
  /** Calibration token sequences, all of one length. */
  calibration: readonly (readonly number[])[];
  pruner: PrunerKind;
  pattern: SparsityPattern;
  cache: SessionCache;
  /** Calibration sequences per session run. Default 8. */
  batch?: number;
  /** Blocks to prune; default every block. The others pass their inputs on unpruned (LORAM keeps the first and last few). */
  layers?: ReadonlySet<number>;
  onLayer?: (layer: LayerPruneResult, layers: number) => void;
}

export interface LayerPruneResult {
  index: number;
  /** Zeros and weights in the block's linear layers. */
  zeros: number;
  total: number;
  sparsityPercent: number;
  /** ‖Y_dense − Y_pruned‖_F / ‖Y_dense‖_F of the block's output, both from the same (already pruned upstream) inputs. */
  reconstructionError: number;
}

export interface PrunedModel {
  /** Every tensor of the model: the pruned linear weights, the rest shared with the input map. */
  weights: Map<string, WeightTensor>;
  layers: LayerPruneResult[];
  zeros: number;
  total: number;
  achievedSparsityPercent: number;
}

export async function pruneModel(opts: PruneModelOptions): Promise<PrunedModel> {
  const c = opts.config;
  const { calibration } = opts;
  const n = calibration.length;
  const t = calibration[0]?.length ?? 0;
  if (n === 0 || t === 0) throw new Error('pruning needs at least one non-empty calibration sequence');
  const embedding = opts.weights.get(EMBED);
  if (!embedding) throw new Error(`pruning: missing weight ${EMBED}`);
  for (const [s, seq] of calibration.entries()) {
    for (const id of seq) if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new Error(`calibration sequence ${s} has token ${id}: expected an id in [0, ${c.vocabSize})`);
  }
  const weights = new Map(opts.weights);
  const runner = new BlockRunner(c, opts.cache, t, opts.batch);
  const kind = statsNeeded(opts.pruner);
  const pruneAny = patternPercent(opts.pattern) > 0;
  let hidden = embedTokens(embedding, calibration, c.hiddenSize);
  const layers: LayerPruneResult[] = [];
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const prune = pruneAny && (opts.layers?.has(l) ?? true);
    const dense = await runner.run(l, weights, hidden, n, t, prune ? kind : 'none');
    let zeros = 0;
    let total = 0;
    dense.groups.forEach((modules, g) => {
      const raw = dense.stats[g];
      for (const m of modules) {
        const name = `${linearPath(l, m)}.weight`;
        const w = weights.get(name) as WeightTensor;
        const [rows, cols] = linearShape(c, m);
        if (prune) {
          const stats: InputStats | undefined = raw ? { tokens: dense.tokens, sumSquares: kind === 'gram' ? diagonal(raw, cols) : raw, ...(kind === 'gram' ? { gram: raw } : {}) } : undefined;
          const pruned = pruneLinear(opts.pruner, { weight: w.data, rows, cols, name }, opts.pattern, stats);
          weights.set(name, { shape: w.shape, data: pruned.weight });
          zeros += pruned.zeros;
        } else zeros += countZeros(w.data);
        total += rows * cols;
      }
    });
    const after = await runner.run(l, weights, hidden, n, t, 'none');
    const result: LayerPruneResult = { index: l, zeros, total, sparsityPercent: (100 * zeros) / total, reconstructionError: relativeError(dense.hidden, after.hidden) };
    layers.push(result);
    opts.onLayer?.(result, c.numHiddenLayers);
    hidden = after.hidden;
  }
  const zeros = layers.reduce((s, l) => s + l.zeros, 0);
  const total = layers.reduce((s, l) => s + l.total, 0);
  return { weights, layers, zeros, total, achievedSparsityPercent: (100 * zeros) / total };
}

/** Zeros and weights of the linear layers of each block, and in all: what "sparsity" means for a model here. */
export function modelSparsity(c: LlamaConfig, weights: WeightMap): { zeros: number; total: number; percent: number; layers: { index: number; zeros: number; total: number; sparsityPercent: number }[] } {
  const layers = [];
  for (let l = 0; l < c.numHiddenLayers; l++) {
    let zeros = 0;
    let total = 0;
    for (const m of LINEAR_MODULES) {
      const w = weights.get(`${linearPath(l, m)}.weight`);
      if (!w) throw new Error(`missing weight ${linearPath(l, m)}.weight`);
      zeros += countZeros(w.data);
      total += w.data.length;
    }
    layers.push({ index: l, zeros, total, sparsityPercent: (100 * zeros) / total });
  }
  const zeros = layers.reduce((s, l) => s + l.zeros, 0);
  const total = layers.reduce((s, l) => s + l.total, 0);
  return { zeros, total, percent: (100 * zeros) / total, layers };
}

function diagonal(gram: Float64Array, n: number): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => gram[i * n + i] as number);
}

function relativeError(reference: Float32Array, other: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i] as number;
    num += (r - (other[i] as number)) ** 2;
    den += r * r;
  }
  return den > 0 ? Math.sqrt(num / den) : 0;
}
