// GPTQ (Frantar et al., 2023) for one linear layer, asymmetric, with a scale and an integer zero
// point per row and group of input columns (ALGORITHMS.md §3, QA-SparsePEFT):
//   deq(q) = s_g·(q − z_g),   quant(w) = clamp(round(w/s_g + z_g), 0, 2^bits − 1)
// The sweep is SparseGPT's (sparsegpt.ts: the same damped Hessian and U = upper Cholesky factor of
// H⁻¹) with the quantizer in place of the mask: column by column q = deq(quant(w)),
// err = (w − q)/U_ii pushed onto the later columns through row i of U. A group's s and z are fixed
// when the sweep reaches its first column, from the group's weights as updated so far (the
// reference's find_params: range [min(x, 0), max(x, 0)], s = range/maxq, z = round(−min/s)).
//
// Sparsity: a pruned entry (keep = 0) is set to exactly 0 at its column whatever the earlier
// columns' errors made of it, and that error is compensated like any other (SparseGPT's joint
// prune-and-quantize sweep does the same). z is an integer code, so deq(quant(0)) = s·(z − z) = 0
// and a zero survives every quantization on the grid. Pruned entries are left out of a group's
// range, so the grid is spent on the kept weights.
//
// Rounding is half to even, as ONNX Round (the training graph's fake quantizer) rounds, and the
// grid's arithmetic is float32 (scales are float32, deq is one float32 product), so a weight
// quantized here, in the graph, or by quantizeOnGrid gets the same code.
import { dampedHessian, upperCholeskyOfInverse } from './sparsegpt.js';

export interface QuantSettings {
  /** Bits per code, 2..8: codes are integers in [0, 2^bits − 1], stored one per byte. */
  bits: number;
  /** Input columns sharing one scale and zero point; the last group of a row may be shorter. */
  groupSize: number;
}

/** A linear layer on its quantization grid: codes, and per row and group a scale and a zero point. */
export interface QuantizedLinear extends QuantSettings {
  rows: number;
  cols: number;
  /** Groups per row: ⌈cols / groupSize⌉. */
  groups: number;
  /** Row-major [rows, cols], each in [0, 2^bits − 1]. */
  codes: Uint8Array;
  /** Row-major [rows, groups]. */
  scales: Float32Array;
  /** Row-major [rows, groups], integer codes in [0, 2^bits − 1]. */
  zeros: Uint8Array;
}

/** Checks bits and group size, naming the spec fields, and returns the largest code. */
export function checkQuantSettings(q: QuantSettings): number {
  if (!(Number.isInteger(q.bits) && q.bits >= 2 && q.bits <= 8)) throw new Error(`quantization.bits must be an integer in [2, 8] (codes are stored one per byte), got ${q.bits}`);
  if (!(Number.isInteger(q.groupSize) && q.groupSize >= 1)) throw new Error(`quantization.groupSize must be a positive integer, got ${q.groupSize}`);
  return 2 ** q.bits - 1;
}

/** Round half to even, as ONNX Round and torch.round. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** s and z of a group from its values (find_params of the GPTQ reference, asymmetric). */
/**
 * groupParams of values[start, end), leaving out the entries whose keep[keepStart + (j − start)] is
 * 0 (pruned: they stay exactly 0 and must not widen the range).
 */
function keptGroupParams(values: ArrayLike<number>, start: number, end: number, keep: ArrayLike<number> | undefined, keepStart: number, maxq: number): { scale: number; zero: number } {
  let min = 0;
  let max = 0;
  for (let j = start; j < end; j++) {
    if (keep && keep[keepStart + j - start] === 0) continue;
    const w = values[j] as number;
    if (w < min) min = w;
    if (w > max) max = w;
  }
  return groupParams(min, max, maxq);
}

export function groupParams(min: number, max: number, maxq: number): { scale: number; zero: number } {
  let lo = Math.min(min, 0);
  let hi = Math.max(max, 0);
  if (lo === 0 && hi === 0) {
    lo = -1;
    hi = 1;
  }
  const scale = Math.fround((hi - lo) / maxq);
  // −lo/s is in [0, maxq] up to rounding; the clamp keeps z a valid code.
  const zero = Math.min(maxq, Math.max(0, roundHalfEven(-lo / scale)));
  return { scale, zero };
}

/** quant(w) on one group's grid, in float32 arithmetic as the graph computes it. */
export function quantCode(w: number, scale: number, zero: number, maxq: number): number {
  return Math.min(maxq, Math.max(0, roundHalfEven(Math.fround(Math.fround(w / scale) + zero))));
}

/** deq(q) = s·(q − z), one float32 product. */
export function dequantCode(code: number, scale: number, zero: number): number {
  return Math.fround(scale * (code - zero));
}

/** The float32 weights the codes stand for. */
export function dequantize(q: QuantizedLinear): Float32Array {
  const out = new Float32Array(q.rows * q.cols);
  for (let r = 0; r < q.rows; r++) {
    for (let j = 0; j < q.cols; j++) {
      const g = r * q.groups + Math.floor(j / q.groupSize);
      out[r * q.cols + j] = dequantCode(q.codes[r * q.cols + j] as number, q.scales[g] as number, q.zeros[g] as number);
    }
  }
  return out;
}

/** Codes of `weight` on a fixed grid (the scales and zeros of `grid`): the merge of QA-SparsePEFT. */
export function quantizeOnGrid(weight: Float32Array, grid: QuantizedLinear): QuantizedLinear {
  const maxq = checkQuantSettings(grid);
  if (weight.length !== grid.rows * grid.cols) throw new Error(`quantize on grid: weight holds ${weight.length} values, the grid is ${grid.rows}×${grid.cols}`);
  const codes = new Uint8Array(weight.length);
  for (let r = 0; r < grid.rows; r++) {
    for (let j = 0; j < grid.cols; j++) {
      const g = r * grid.groups + Math.floor(j / grid.groupSize);
      codes[r * grid.cols + j] = quantCode(weight[r * grid.cols + j] as number, grid.scales[g] as number, grid.zeros[g] as number, maxq);
    }
  }
  return { ...grid, codes };
}

export interface GptqInput extends QuantSettings {
  /** Row-major [rows, cols], float32; not modified. */
  weight: Float32Array;
  rows: number;
  cols: number;
  /** XᵀX over the calibration tokens, cols × cols (its scale does not matter). */
  gram: Float64Array;
  /** 0 where the entry is pruned and must stay exactly 0; absent: nothing is pruned. */
  keep?: ArrayLike<number>;
  name: string;
  /** Dampening as a share of the mean diagonal; default 0.01. */
  percDamp?: number;
}

/** GPTQ: the codes, the grid, and the dequantized weight. */
export function gptq(inp: GptqInput): QuantizedLinear & { weight: Float32Array } {
  const { rows, cols, name, groupSize } = inp;
  const maxq = checkQuantSettings(inp);
  if (inp.weight.length !== rows * cols) throw new Error(`${name}: weight holds ${inp.weight.length} values, expected ${rows}×${cols}`);
  if (inp.gram.length !== cols * cols) throw new Error(`${name}: the Gram matrix holds ${inp.gram.length} values, expected ${cols}×${cols}`);
  if (inp.keep && inp.keep.length !== rows * cols) throw new Error(`${name}: the keep mask holds ${inp.keep.length} values, expected ${rows}×${cols}`);
  const kept = (i: number): boolean => !inp.keep || inp.keep[i] !== 0;
  const W = Float64Array.from(inp.weight);
  const U = upperCholeskyOfInverse(dampedHessian(inp.gram, W, rows, cols, inp.percDamp), cols, name);
  const groups = Math.ceil(cols / groupSize);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * groups);
  const zeros = new Uint8Array(rows * groups);
  const out = new Float32Array(rows * cols);

  // Lazy blocks of whole groups (about 128 columns), so a group's range is read from weights that
  // already hold every earlier column's error.
  const block = Math.max(groupSize, groupSize * Math.floor(128 / groupSize));
  for (let i1 = 0; i1 < cols; i1 += block) {
    const i2 = Math.min(i1 + block, cols);
    const count = i2 - i1;
    const W1 = new Float64Array(rows * count);
    for (let r = 0; r < rows; r++) for (let j = 0; j < count; j++) W1[r * count + j] = W[r * cols + i1 + j] as number;
    const err = new Float64Array(rows * count);
    for (let i = 0; i < count; i++) {
      const col = i1 + i;
      const g = Math.floor(col / groupSize);
      if (col % groupSize === 0) {
        const end = Math.min(i + groupSize, count);
        for (let r = 0; r < rows; r++) {
          const p = keptGroupParams(W1, r * count + i, r * count + end, inp.keep, r * cols + i1 + i, maxq);
          scales[r * groups + g] = p.scale;
          zeros[r * groups + g] = p.zero;
        }
      }
      const d = U[col * cols + col] as number;
      for (let r = 0; r < rows; r++) {
        const s = scales[r * groups + g] as number;
        const z = zeros[r * groups + g] as number;
        const w = W1[r * count + i] as number;
        const code = kept(r * cols + col) ? quantCode(w, s, z, maxq) : z;
        const q = dequantCode(code, s, z);
        codes[r * cols + col] = code;
        out[r * cols + col] = q;
        const e = (w - q) / d;
        err[r * count + i] = e;
        if (e === 0) continue;
        const urow = col * cols + i1;
        for (let j = i + 1; j < count; j++) W1[r * count + j] = (W1[r * count + j] as number) - e * (U[urow + j] as number);
      }
    }
    // The block's errors onto every later column: W[r, i2:] −= err[r, :] · U[i1:i2, i2:].
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < count; j++) {
        const e = err[r * count + j] as number;
        if (e === 0) continue;
        const urow = (i1 + j) * cols;
        for (let c = i2; c < cols; c++) W[r * cols + c] = (W[r * cols + c] as number) - e * (U[urow + c] as number);
      }
    }
  }
  return { rows, cols, bits: inp.bits, groupSize, groups, codes, scales, zeros, weight: out };
}

/**
 * Round to nearest on a min-max grid of the weight as it is (no error feedback): the baseline GPTQ
 * improves on. `grid` quantizes on given scales and zeros instead of the weight's own.
 */
export function roundToNearest(weight: Float32Array, rows: number, cols: number, settings: QuantSettings, keep?: ArrayLike<number>, grid?: QuantizedLinear): QuantizedLinear & { weight: Float32Array } {
  const maxq = checkQuantSettings(settings);
  const { groupSize } = settings;
  const groups = Math.ceil(cols / groupSize);
  let scales = grid?.scales;
  let zeros = grid?.zeros;
  if (!scales || !zeros) {
    scales = new Float32Array(rows * groups);
    zeros = new Uint8Array(rows * groups);
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < groups; g++) {
        const start = r * cols + g * groupSize;
        const p = keptGroupParams(weight, start, r * cols + Math.min(cols, (g + 1) * groupSize), keep, start, maxq);
        scales[r * groups + g] = p.scale;
        zeros[r * groups + g] = p.zero;
      }
    }
  }
  const q: QuantizedLinear = { rows, cols, bits: settings.bits, groupSize, groups, codes: new Uint8Array(rows * cols), scales, zeros };
  const withCodes = quantizeOnGrid(Float32Array.from(weight, (w, i) => (keep && keep[i] === 0 ? 0 : w)), q);
  return { ...withCodes, weight: dequantize(withCodes) };
}
