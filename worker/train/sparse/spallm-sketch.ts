// SpaLLM's sketch of one linear layer (ALGORITHMS.md §5): every row is split into `groupsPerRow`
// contiguous column groups; each (row, group) gets a lookup table of 2^bits values and every
// weight a code into its group's table, so Ŵ_ij = LUT[i, g(j), c_ij]. The tables come from a
// weighted 1-D Lloyd k-means of the group's weights with weights a_j = d_j^(−p), d_j = U_jj of
// U = upper Cholesky of H⁻¹ (H the damped calibration Hessian, as SparseGPT/GPTQ build it); the
// codes come from a GPTQ sweep: column by column, each weight takes its table's nearest value and
// the error (w − q)/d_j moves onto the columns not yet assigned through row j of U. Only the
// tables train afterwards.
//
// On the host in float64 like sparsegpt.ts, and for the same reason: the sweep is rows·cols²
// multiply-adds, about a second at cols = 1024, fine for the tiny and demo models.
import { dampedHessian, upperCholeskyOfInverse } from './sparsegpt.js';

export interface SketchInput {
  /** Row-major [rows, cols], float32; not modified. */
  weight: Float32Array;
  rows: number;
  cols: number;
  /** XᵀX over the calibration tokens, cols × cols (its scale does not matter). */
  gram: Float64Array;
  bits: number;
  groupsPerRow: number;
  /** Exponent p of the k-means weights d_j^(−p); the paper's 3–4 works. Default 3. */
  power?: number;
  /** Dampening as a share of the mean diagonal; default 0.01. */
  percDamp?: number;
  /** Lloyd iterations per table; default 25. */
  lloydIterations?: number;
  name: string;
}

export interface Sketch {
  rows: number;
  cols: number;
  bits: number;
  groupsPerRow: number;
  /** Columns per group: the last group takes what is left (cols − (G − 1)·groupSize). */
  groupSize: number;
  /** [rows, groupsPerRow, 2^bits], float32. */
  lut: Float32Array;
  /** [rows, cols]: each weight's index into its (row, group) table. */
  codes: Uint8Array;
}

/** Ŵ = LUT[i, g(j), c_ij], row-major [rows, cols]. */
export function sketchWeight(s: Sketch): Float32Array {
  const k = 1 << s.bits;
  const out = new Float32Array(s.rows * s.cols);
  for (let i = 0; i < s.rows; i++) {
    for (let j = 0; j < s.cols; j++) {
      const g = groupOf(j, s.groupSize, s.groupsPerRow);
      out[i * s.cols + j] = s.lut[(i * s.groupsPerRow + g) * k + (s.codes[i * s.cols + j] as number)] as number;
    }
  }
  return out;
}

/**
 * Flat indices into the LUT ([rows·G·2^bits]) for every weight, row-major [rows, cols]: the
 * training graph gathers Ŵ from the trained tables with them, so the tables' gradient is the
 * scatter-add of ∂L/∂Ŵ over the weights that use each entry.
 */
export function sketchIndices(s: Sketch): BigInt64Array {
  const k = 1 << s.bits;
  const out = new BigInt64Array(s.rows * s.cols);
  for (let i = 0; i < s.rows; i++) {
    for (let j = 0; j < s.cols; j++) out[i * s.cols + j] = BigInt((i * s.groupsPerRow + groupOf(j, s.groupSize, s.groupsPerRow)) * k + (s.codes[i * s.cols + j] as number));
  }
  return out;
}

/** Trainable parameters of a sketch: rows × groups × 2^bits table values. */
export function sketchParameters(s: Pick<Sketch, 'rows' | 'groupsPerRow' | 'bits'>): number {
  return s.rows * s.groupsPerRow * (1 << s.bits);
}

function groupOf(j: number, groupSize: number, groups: number): number {
  return Math.min(groups - 1, Math.floor(j / groupSize));
}

export function checkSketchSettings(bits: number, groupsPerRow: number, cols: number, name: string): number {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new Error(`${name}: bits must be an integer in [1, 8] (codes are bytes), got ${bits}`);
  if (!Number.isInteger(groupsPerRow) || groupsPerRow < 1 || groupsPerRow > cols) throw new Error(`${name}: groupsPerRow must be an integer in [1, ${cols}] (the row has ${cols} columns), got ${groupsPerRow}`);
  return Math.ceil(cols / groupsPerRow);
}

/** Hessian-weighted sketch with the GPTQ sweep (SpaLLM's compression). */
export function sketchLinear(inp: SketchInput): Sketch {
  const { rows, cols, bits, groupsPerRow, name } = inp;
  const groupSize = checkSketchSettings(bits, groupsPerRow, cols, name);
  if (inp.weight.length !== rows * cols) throw new Error(`${name}: the weight holds ${inp.weight.length} values, expected ${rows}×${cols}`);
  if (inp.gram.length !== cols * cols) throw new Error(`${name}: the Gram matrix holds ${inp.gram.length} values, expected ${cols}×${cols}`);
  const W = Float64Array.from(inp.weight);
  const U = upperCholeskyOfInverse(dampedHessian(inp.gram, W, rows, cols, inp.percDamp), cols, name);
  const power = inp.power ?? 3;
  const a = new Float64Array(cols);
  for (let j = 0; j < cols; j++) a[j] = (U[j * cols + j] as number) ** -power;
  const k = 1 << bits;
  const lut = new Float32Array(rows * groupsPerRow * k);
  for (let i = 0; i < rows; i++) {
    for (let g = 0; g < groupsPerRow; g++) {
      const start = g * groupSize;
      const end = g === groupsPerRow - 1 ? cols : Math.min(cols, start + groupSize);
      lut.set(lloyd1d(W.subarray(i * cols + start, i * cols + end), a.subarray(start, end), k, inp.lloydIterations ?? 25), (i * groupsPerRow + g) * k);
    }
  }
  const codes = new Uint8Array(rows * cols);
  for (let j = 0; j < cols; j++) {
    const g = groupOf(j, groupSize, groupsPerRow);
    const d = U[j * cols + j] as number;
    for (let i = 0; i < rows; i++) {
      const w = W[i * cols + j] as number;
      const base = (i * groupsPerRow + g) * k;
      const c = nearest(lut, base, k, w);
      codes[i * cols + j] = c;
      const err = (w - (lut[base + c] as number)) / d;
      if (err === 0) continue;
      const row = i * cols;
      for (let t = j + 1; t < cols; t++) W[row + t] = (W[row + t] as number) - err * (U[j * cols + t] as number);
    }
  }
  return { rows, cols, bits, groupsPerRow, groupSize, lut, codes };
}

/** Baselines for the checks: plain (unweighted) k-means tables with nearest codes, or a uniform min–max grid per group (round to nearest). */
export function sketchPlain(inp: Omit<SketchInput, 'gram' | 'power' | 'percDamp'>, kind: 'kmeans' | 'rtn'): Sketch {
  const { rows, cols, bits, groupsPerRow, name } = inp;
  const groupSize = checkSketchSettings(bits, groupsPerRow, cols, name);
  const k = 1 << bits;
  const lut = new Float32Array(rows * groupsPerRow * k);
  const codes = new Uint8Array(rows * cols);
  const ones = new Float64Array(cols).fill(1);
  for (let i = 0; i < rows; i++) {
    for (let g = 0; g < groupsPerRow; g++) {
      const start = g * groupSize;
      const end = g === groupsPerRow - 1 ? cols : Math.min(cols, start + groupSize);
      const values = Float64Array.from(inp.weight.subarray(i * cols + start, i * cols + end));
      const base = (i * groupsPerRow + g) * k;
      lut.set(kind === 'kmeans' ? lloyd1d(values, ones.subarray(start, end), k, inp.lloydIterations ?? 25) : uniformGrid(values, k), base);
      for (let j = start; j < end; j++) codes[i * cols + j] = nearest(lut, base, k, inp.weight[i * cols + j] as number);
    }
  }
  return { rows, cols, bits, groupsPerRow, groupSize, lut, codes };
}

function nearest(lut: Float32Array, base: number, k: number, w: number): number {
  let best = 0;
  let bestD = Infinity;
  for (let c = 0; c < k; c++) {
    const d = Math.abs(w - (lut[base + c] as number));
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

function uniformGrid(values: Float64Array, k: number): Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const out = new Float32Array(k);
  for (let c = 0; c < k; c++) out[c] = k === 1 ? (lo + hi) / 2 : lo + ((hi - lo) * c) / (k - 1);
  return out;
}

/**
 * Weighted 1-D k-means (Lloyd) of `values` with `weights`, from the weighted quantiles; a center
 * that loses all its points keeps its value. With fewer distinct values than k the extra centers
 * repeat values, which costs nothing: a code just never uses them.
 */
export function lloyd1d(values: ArrayLike<number>, weights: ArrayLike<number>, k: number, iterations: number): Float32Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => (values[x] as number) - (values[y] as number));
  let total = 0;
  for (let i = 0; i < n; i++) total += weights[i] as number;
  const centers = new Float64Array(k);
  // Start from the weighted quantiles at (c + ½)/k: every center begins inside the data.
  let acc = 0;
  let c = 0;
  for (const i of order) {
    acc += weights[i] as number;
    while (c < k && acc >= ((c + 0.5) / k) * total) centers[c++] = values[i] as number;
  }
  for (; c < k; c++) centers[c] = n ? (values[order[n - 1] as number] as number) : 0;
  const sum = new Float64Array(k);
  const mass = new Float64Array(k);
  for (let it = 0; it < iterations; it++) {
    sum.fill(0);
    mass.fill(0);
    for (let i = 0; i < n; i++) {
      const v = values[i] as number;
      let best = 0;
      let bestD = Infinity;
      for (let t = 0; t < k; t++) {
        const d = Math.abs(v - (centers[t] as number));
        if (d < bestD) {
          bestD = d;
          best = t;
        }
      }
      sum[best] = (sum[best] as number) + (weights[i] as number) * v;
      mass[best] = (mass[best] as number) + (weights[i] as number);
    }
    let moved = false;
    for (let t = 0; t < k; t++) {
      if (!((mass[t] as number) > 0)) continue;
      const next = (sum[t] as number) / (mass[t] as number);
      if (next !== centers[t]) moved = true;
      centers[t] = next;
    }
    if (!moved) break;
  }
  return Float32Array.from(centers);
}
