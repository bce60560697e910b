// Pruning a whole model block by block (ALGORITHMS.md §1) on the walk of blockwise.ts: each block's
// linear layers are pruned on inputs that come through the already-pruned blocks before it, as in
// the Wanda and SparseGPT reference code. Embeddings, norms and the LM head are not pruned.
import { LINEAR_MODULES } from '../../formats/hf-checkpoint.js';
import { type LlamaConfig, linearPath } from '../../model/llama/config.js';
import { type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { type SessionCache } from '../../onnx/session.js';
import { replaceBlockwise } from './blockwise.js';
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
  const kind = statsNeeded(opts.pruner);
  const pruneAny = patternPercent(opts.pattern) > 0;
  const prunes = (l: number): boolean => pruneAny && (opts.layers?.has(l) ?? true);
  const zeros = new Array<number>(opts.config.numHiddenLayers).fill(0);
  const totals = new Array<number>(opts.config.numHiddenLayers).fill(0);
  const layers: LayerPruneResult[] = [];
  const { weights } = await replaceBlockwise({
    config: opts.config, weights: opts.weights, calibration: opts.calibration, cache: opts.cache, ...(opts.batch === undefined ? {} : { batch: opts.batch }),
    what: 'pruning',
    stats: (l) => (prunes(l) ? kind : 'none'),
    replace: ({ layer, path, weight, rows, cols, tokens, stats: raw }) => {
      totals[layer] = (totals[layer] as number) + rows * cols;
      if (!prunes(layer)) {
        zeros[layer] = (zeros[layer] as number) + countZeros(weight.data);
        return undefined;
      }
      const stats: InputStats | undefined = raw ? { tokens, sumSquares: kind === 'gram' ? diagonal(raw, cols) : raw, ...(kind === 'gram' ? { gram: raw } : {}) } : undefined;
      const pruned = pruneLinear(opts.pruner, { weight: weight.data, rows, cols, name: path }, opts.pattern, stats);
      zeros[layer] = (zeros[layer] as number) + pruned.zeros;
      return pruned.weight;
    },
    onBlock: (block, count) => {
      const z = zeros[block.index] as number;
      const total = totals[block.index] as number;
      const result: LayerPruneResult = { index: block.index, zeros: z, total, sparsityPercent: (100 * z) / total, reconstructionError: block.reconstructionError };
      layers.push(result);
      opts.onLayer?.(result, count);
    },
  });
  const zeroCount = layers.reduce((s, l) => s + l.zeros, 0);
  const total = layers.reduce((s, l) => s + l.total, 0);
  return { weights, layers, zeros: zeroCount, total, achievedSparsityPercent: (100 * zeroCount) / total };
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
