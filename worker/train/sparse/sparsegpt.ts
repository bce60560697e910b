// SparseGPT (Frantar & Alistarh, 2023) for one linear layer, as the authors' sparsegpt.py does it
// (ALGORITHMS.md §1):
//   H = (2/N)·XᵀX; dead inputs (H_jj = 0) get H_jj = 1 and a zero column; H += 0.01·mean(diag H)·I;
//   U = upper Cholesky factor of H⁻¹; then in blocks of 128 columns: choose the block's pruned
//   entries by W_ij²/U_jj² (N:M: per row in every group of M columns, chosen when the sweep reaches
//   the group, from the weights as updated so far), and sweep the columns left to right, each
//   pruned entry's error (w − q)/U_ii pushed onto the columns right of it through row i of U; after
//   the block, the block's errors go onto all later columns at once.
//
// One difference from the reference, on purpose: the reference prunes every score ≤ the value at
// index ⌊p·n⌋ of the sorted block (⌊p·n⌋ + 1 entries, more with ties); here exactly
// ⌊p·rows·end⌋ − ⌊p·rows·start⌋ entries of each block are pruned, so the layer's count is exactly
// ⌊p·rows·cols⌋ (p the target share).
//
// All of it runs on the host in float64: the d_in×d_in Cholesky factorizations and inverse cost
// ~d_in³ and the sweep ~rows·d_in² multiply-adds, about a second at d_in = 1024 and fine for the
// tiny and demo models; a 4096-wide model would want the block update (a d_out×128 by 128×d_in
// product per block) and the factorizations as graphs.
import { cholesky } from '../../onnx/linalg.js';
import { prunedCount, pruneGroup, type SparsityPattern } from './pattern.js';

export interface SparseGptInput {
  /** Row-major [rows, cols], float32; not modified. */
  weight: Float32Array;
  rows: number;
  cols: number;
  /** XᵀX over the calibration tokens, cols × cols; its scale does not matter (the dampening is relative). */
  gram: Float64Array;
  pattern: SparsityPattern;
  name: string;
  /** Columns per lazy-update block; default 128 (rounded down to a multiple of M for N:M). */
  blockSize?: number;
  /** Dampening as a share of the mean diagonal; default 0.01. */
  percDamp?: number;
  /**
   * Unstructured only: prune exactly this many entries instead of ⌊percent·rows·cols⌋ (LoSA sets
   * every layer's count itself); the blocks share it in proportion to their columns.
   */
  zeros?: number;
}

/** Returns the pruned and updated weight, row-major float32. */
export function sparseGpt(inp: SparseGptInput): Float32Array {
  return sparseGptMasked(inp).weight;
}

/**
 * The pruned weight and which entries the selection kept (1) or pruned (0). A kept entry can be
 * zero too (an input that was zero before and stays), so the mask is not the weight's nonzeros.
 */
export function sparseGptMasked(inp: SparseGptInput): { weight: Float32Array; keep: Uint8Array } {
  const { rows, cols, pattern, name } = inp;
  if (inp.zeros !== undefined && (pattern.kind !== 'unstructured' || !(Number.isInteger(inp.zeros) && inp.zeros >= 0 && inp.zeros <= rows * cols))) {
    throw new Error(`${name}: a count of ${inp.zeros} zeros needs an unstructured pattern and an integer in [0, ${rows * cols}]`);
  }
  const keepAll = new Uint8Array(rows * cols);
  if (inp.gram.length !== cols * cols) throw new Error(`${name}: the Gram matrix holds ${inp.gram.length} values, expected ${cols}×${cols}`);
  const W = Float64Array.from(inp.weight);
  const U = upperCholeskyOfInverse(dampedHessian(inp.gram, W, rows, cols, inp.percDamp), cols, name);

  let block = inp.blockSize ?? 128;
  if (pattern.kind === 'n:m') block = Math.max(pattern.m, block - (block % pattern.m));
  for (let i1 = 0; i1 < cols; i1 += block) {
    const i2 = Math.min(i1 + block, cols);
    const count = i2 - i1;
    const W1 = new Float64Array(rows * count);
    for (let r = 0; r < rows; r++) for (let j = 0; j < count; j++) W1[r * count + j] = W[r * cols + i1 + j] as number;
    const keep = new Uint8Array(rows * count).fill(1);
    const score = new Float64Array(rows * count);
    const fillScores = (from: number, to: number): void => {
      for (let j = from; j < to; j++) {
        const u = U[(i1 + j) * cols + i1 + j] as number;
        for (let r = 0; r < rows; r++) score[r * count + j] = (W1[r * count + j] as number) ** 2 / (u * u);
      }
    };
    if (pattern.kind === 'unstructured') {
      fillScores(0, count);
      // Cumulative counts, so the blocks add up to exactly ⌊p·rows·cols⌋ (or to the count given).
      const k = inp.zeros === undefined
        ? prunedCount(pattern.percent, rows * i2) - prunedCount(pattern.percent, rows * i1)
        : Math.floor((inp.zeros * i2) / cols) - Math.floor((inp.zeros * i1) / cols);
      pruneBlockLowest(keep, score, k);
    }
    const err = new Float64Array(rows * count);
    for (let i = 0; i < count; i++) {
      if (pattern.kind === 'n:m' && i % pattern.m === 0) {
        fillScores(i, i + pattern.m);
        for (let r = 0; r < rows; r++) pruneGroup(keep, score, r * count + i, pattern.m, pattern.m - pattern.n);
      }
      const d = U[(i1 + i) * cols + i1 + i] as number;
      for (let r = 0; r < rows; r++) {
        const w = W1[r * count + i] as number;
        const q = keep[r * count + i] === 0 ? 0 : w;
        const e = (w - q) / d;
        err[r * count + i] = e;
        if (e !== 0) {
          // W1[r, i:] −= e · U[i, i:]; at column i itself this leaves exactly q.
          const urow = (i1 + i) * cols + i1;
          for (let j = i + 1; j < count; j++) W1[r * count + j] = (W1[r * count + j] as number) - e * (U[urow + j] as number);
        }
        W1[r * count + i] = q;
      }
    }
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < count; j++) {
        W[r * cols + i1 + j] = W1[r * count + j] as number;
        keepAll[r * cols + i1 + j] = keep[r * count + j] as number;
      }
      // The block's errors onto every later column: W[r, i2:] −= err[r, :] · U[i1:i2, i2:].
      for (let j = 0; j < count; j++) {
        const e = err[r * count + j] as number;
        if (e === 0) continue;
        const urow = (i1 + j) * cols;
        for (let c = i2; c < cols; c++) W[r * cols + c] = (W[r * cols + c] as number) - e * (U[urow + c] as number);
      }
    }
  }
  return { weight: Float32Array.from(W), keep: keepAll };
}

/**
 * The Hessian the sweep factors, from XᵀX (a copy; `gram` is not modified): an input that was never
 * active (H_jj = 0) gets H_jj = 1 and its column of W (float64, row-major [rows, cols]) zeroed in
 * place — nothing to preserve there, and H stays invertible —, then H += percDamp·mean(diag H)·I.
 * GPTQ (gptq.ts) runs the same sweep on the same Hessian.
 */
export function dampedHessian(gram: Float64Array, W: Float64Array, rows: number, cols: number, percDamp = 0.01): Float64Array {
  const H = Float64Array.from(gram);
  let meanDiag = 0;
  for (let j = 0; j < cols; j++) {
    if (H[j * cols + j] === 0) {
      H[j * cols + j] = 1;
      for (let r = 0; r < rows; r++) W[r * cols + j] = 0;
    }
    meanDiag += H[j * cols + j] as number;
  }
  const damp = percDamp * (meanDiag / cols);
  for (let j = 0; j < cols; j++) H[j * cols + j] = (H[j * cols + j] as number) + damp;
  return H;
}

/** Exactly k entries of the block with the lowest scores (ties: lower index). */
function pruneBlockLowest(keep: Uint8Array, score: Float64Array, k: number): void {
  if (k <= 0) return;
  const sorted = Float64Array.from(score).sort();
  const cut = sorted[Math.min(k, score.length) - 1] as number;
  let below = 0;
  for (const s of score) if (s < cut) below++;
  let ties = k - below;
  for (let i = 0; i < score.length; i++) {
    const s = score[i] as number;
    if (s < cut || (s === cut && ties-- > 0)) keep[i] = 0;
  }
}

/**
 * U upper-triangular with H⁻¹ = UᵀU (torch: cholesky → cholesky_inverse → cholesky(upper=True)).
 * Row i of U is what the sweep uses to spread column i's error onto the columns after it.
 */
export function upperCholeskyOfInverse(H: Float64Array, n: number, name = 'layer'): Float64Array {
  let L: Float64Array;
  try {
    L = cholesky(H, n);
  } catch (err) {
    throw new Error(`${name}: the dampened Hessian is not positive definite (${(err as Error).message}); the calibration inputs may hold NaN or Inf`, { cause: err });
  }
  // L⁻¹, lower-triangular, by forward substitution one column at a time.
  const Li = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    Li[j * n + j] = 1 / (L[j * n + j] as number);
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += (L[i * n + k] as number) * (Li[k * n + j] as number);
      Li[i * n + j] = -s / (L[i * n + i] as number);
    }
  }
  // H⁻¹ = L⁻ᵀ L⁻¹: entry (i, j) sums over the rows k ≥ max(i, j) where both columns are nonzero.
  const Hinv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += (Li[k * n + i] as number) * (Li[k * n + j] as number);
      Hinv[i * n + j] = s;
      Hinv[j * n + i] = s;
    }
  }
  const Lh = cholesky(Hinv, n);
  const U = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) U[i * n + j] = Lh[j * n + i] as number;
  return U;
}
