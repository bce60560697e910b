// One linear layer's pruning, given statistics of its calibration inputs (ALGORITHMS.md §1):
//   magnitude — score |W_ij|, over the whole layer (Wanda's reference magnitude baseline);
//   wanda     — score |W_ij|·‖X_:,j‖₂, per output row (or per N:M group), weights kept as they are;
//   sparsegpt — sparsegpt.ts: Hessian-aware selection that also updates the kept weights.
// The result has exact zeros where pruned: sparsity is a property of the numbers, not of a mask
// carried beside them.
import { checkGroups, countZeros, patternPercent, selectLayerCount, selectNM, selectPerLayer, selectPerRow, selectRowsCount, type SparsityPattern } from './pattern.js';
import { sparseGpt, sparseGptMasked } from './sparsegpt.js';

export const PRUNERS = ['magnitude', 'wanda', 'sparsegpt'] as const;
export type PrunerKind = (typeof PRUNERS)[number];

/** Statistics of the calibration inputs X (tokens × cols) of a linear layer. */
export interface InputStats {
  /** Tokens the statistics were summed over. */
  tokens: number;
  /** Σ_t x_tj² per input channel j (Wanda's squared norms). */
  sumSquares: Float64Array;
  /** XᵀX, cols × cols row-major (SparseGPT's Hessian up to the factor 2/N). */
  gram?: Float64Array;
}

/** What a pruner needs besides the weights: nothing, the channel norms, or the full Gram matrix. */
export function statsNeeded(kind: PrunerKind): 'none' | 'sumsq' | 'gram' {
  return kind === 'magnitude' ? 'none' : kind === 'wanda' ? 'sumsq' : 'gram';
}

export interface LinearToPrune {
  /** Row-major [rows, cols]; left untouched. */
  weight: Float32Array;
  rows: number;
  cols: number;
  /** For error messages: the module path. */
  name: string;
}

export interface PrunedLinear {
  /** The pruned weight: exact zeros where pruned; SparseGPT also changes the kept entries. */
  weight: Float32Array;
  zeros: number;
}

export function pruneLinear(kind: PrunerKind, layer: LinearToPrune, pattern: SparsityPattern, stats?: InputStats): PrunedLinear {
  const { rows, cols, weight, name } = layer;
  if (weight.length !== rows * cols) throw new Error(`${name}: weight holds ${weight.length} values, expected ${rows}×${cols}`);
  checkGroups(pattern, cols, name);
  if (kind === 'sparsegpt') {
    if (!stats?.gram) throw new Error(`${name}: sparsegpt needs the Gram matrix XᵀX of the layer's calibration inputs`);
    const pruned = sparseGpt({ weight, rows, cols, gram: stats.gram, pattern, name });
    return { weight: pruned, zeros: countZeros(pruned) };
  }
  const scores = scoresOf(kind, layer, stats);
  const keep = pattern.kind === 'n:m'
    ? selectNM(scores, rows, cols, pattern.n, pattern.m)
    : kind === 'magnitude' ? selectPerLayer(scores, rows, cols, patternPercent(pattern)) : selectPerRow(scores, rows, cols, patternPercent(pattern));
  const out = Float32Array.from(weight);
  for (let i = 0; i < out.length; i++) if (keep[i] === 0) out[i] = 0;
  return { weight: out, zeros: countZeros(out) };
}

/** What a caller that sets each layer's rate itself (LoSA) asks of one layer. */
export type PruneTarget = { kind: 'count'; zeros: number } | { kind: 'n:m'; n: number; m: number };

export interface MaskedPrunedLinear extends PrunedLinear {
  /** 1 where the selection kept the entry, 0 where it pruned it: exactly `zeros` zeros for a count. */
  keep: Uint8Array;
}

/**
 * Prunes exactly `target.zeros` entries of the layer (Wanda: spread over the rows, at most one
 * apart; magnitude and SparseGPT: over the whole layer), or to an N:M pattern, and returns the
 * selection with the weight. LoSA needs the selection itself: an entry pruned in an earlier round
 * is zero but may be kept now, and its adapter must then be free to grow it back.
 */
export function pruneLinearMasked(kind: PrunerKind, layer: LinearToPrune, target: PruneTarget, stats?: InputStats): MaskedPrunedLinear {
  const { rows, cols, weight, name } = layer;
  if (weight.length !== rows * cols) throw new Error(`${name}: weight holds ${weight.length} values, expected ${rows}×${cols}`);
  const pattern: SparsityPattern = target.kind === 'n:m' ? target : { kind: 'unstructured', percent: 0 };
  checkGroups(pattern, cols, name);
  if (kind === 'sparsegpt') {
    if (!stats?.gram) throw new Error(`${name}: sparsegpt needs the Gram matrix XᵀX of the layer's calibration inputs`);
    const pruned = sparseGptMasked({ weight, rows, cols, gram: stats.gram, pattern, name, ...(target.kind === 'count' ? { zeros: target.zeros } : {}) });
    return { ...pruned, zeros: countZeros(pruned.weight) };
  }
  const scores = scoresOf(kind, layer, stats);
  const keep = target.kind === 'n:m'
    ? selectNM(scores, rows, cols, target.n, target.m)
    : kind === 'magnitude' ? selectLayerCount(scores, rows * cols, target.zeros) : selectRowsCount(scores, rows, cols, target.zeros);
  const out = Float32Array.from(weight);
  for (let i = 0; i < out.length; i++) if (keep[i] === 0) out[i] = 0;
  return { weight: out, keep, zeros: countZeros(out) };
}

/** Magnitude |W_ij| or Wanda |W_ij|·‖X_:,j‖₂; lower is pruned first. */
function scoresOf(kind: PrunerKind, layer: LinearToPrune, stats: InputStats | undefined): Float64Array {
  const { rows, cols, weight, name } = layer;
  if (kind === 'magnitude') return Float64Array.from(weight, Math.abs);
  if (kind !== 'wanda') throw new Error(`invalid pruner ${JSON.stringify(kind)}: expected one of ${PRUNERS.join(', ')}`);
  if (!stats) throw new Error(`${name}: wanda needs the squared norms of the layer's calibration inputs`);
  if (stats.sumSquares.length !== cols) throw new Error(`${name}: input statistics have ${stats.sumSquares.length} channels, the layer ${cols} inputs`);
  const norms = stats.sumSquares.map(Math.sqrt);
  const scores = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) scores[r * cols + j] = Math.abs(weight[r * cols + j] as number) * (norms[j] as number);
  return scores;
}

/**
 * Relative output error of a pruned layer on its calibration inputs,
 * ‖(W − Ŵ)Xᵀ‖²_F / ‖WXᵀ‖²_F = tr(ΔW G ΔWᵀ) / tr(W G Wᵀ) with G = XᵀX, so X itself is not needed.
 * O(rows·cols²) on the host: for tests and small layers.
 */
export function relativeOutputError(dense: Float32Array, pruned: Float32Array, gram: Float64Array, rows: number, cols: number): number {
  let num = 0;
  let den = 0;
  const d = new Float64Array(cols);
  const w = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      w[j] = dense[r * cols + j] as number;
      d[j] = (w[j] as number) - (pruned[r * cols + j] as number);
    }
    for (let i = 0; i < cols; i++) {
      let gd = 0;
      let gw = 0;
      for (let j = 0; j < cols; j++) {
        const g = gram[i * cols + j] as number;
        gd += g * (d[j] as number);
        gw += g * (w[j] as number);
      }
      num += (d[i] as number) * gd;
      den += (w[i] as number) * gw;
    }
  }
  return den > 0 ? num / den : 0;
}
