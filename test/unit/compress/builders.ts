// Fixture builders for the compression tests: LoRA factors with known structure.
import { gaussianArray, uniform } from '../../../worker/compress/random.js';
import { type SlotFactors } from '../../../worker/compress/slot.js';

/** C = A·B for row-major float32 A (m×k) and B (k×n). */
export function mm(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p] as number;
      for (let j = 0; j < n; j++) c[i * n + j] = (c[i * n + j] as number) + aip * (b[p * n + j] as number);
    }
  }
  return Float32Array.from(c);
}

export function transpose(a: Float32Array, m: number, n: number): Float32Array {
  const t = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j] as number;
  return t;
}

/** Independent random rank-`rank` adapters (the paper's "random LoRAs"). */
export function randomAdapters(n: number, m: number, k: number, rank: number | ((i: number) => number), seed = 1, scaling = 2): SlotFactors[] {
  return Array.from({ length: n }, (_, i) => {
    const r = typeof rank === 'number' ? rank : rank(i);
    return { A: gaussianArray(r * k, seed * 1000 + 2 * i, 1 / Math.sqrt(k)), B: gaussianArray(m * r, seed * 1000 + 2 * i + 1, 0.1), rank: r, scaling };
  });
}

/**
 * Adapters whose updates share a rank-r basis: M_i = U0·S_i·V0ᵀ with B_i = U0·S_i, A_i = V0ᵀ.
 * With `diagonal`, each S_i is diagonal (what JD-Diag can represent exactly).
 */
export function sharedBasisAdapters(n: number, m: number, k: number, r: number, opts: { seed?: number; diagonal?: boolean } = {}): SlotFactors[] {
  const seed = opts.seed ?? 7;
  const u0 = gaussianArray(m * r, seed);
  const v0t = gaussianArray(r * k, seed + 1);
  const rand = uniform(seed + 2);
  return Array.from({ length: n }, (_, i) => {
    const s = opts.diagonal ? diagMatrix(r, () => 0.5 + rand()) : gaussianArray(r * r, seed + 10 + i);
    return { A: Float32Array.from(v0t), B: mm(u0, s, m, r, r), rank: r, scaling: 1 + (i % 3) };
  });
}

function diagMatrix(r: number, value: () => number): Float32Array {
  const out = new Float32Array(r * r);
  for (let i = 0; i < r; i++) out[i * r + i] = value();
  return out;
}

/**
 * Adapters drawn around `clusters` centres: each is its centre's basis with its own small core
 * (diagonal with `diagonal`, the structure JD-Diag represents) and a little noise on B.
 */
export function clusteredAdapters(n: number, clusters: number, m: number, k: number, r: number, seed = 3, opts: { diagonal?: boolean } = {}): { adapters: SlotFactors[]; labels: number[] } {
  const centres = Array.from({ length: clusters }, (_, c) => ({ u: gaussianArray(m * r, seed + 100 * c), vt: gaussianArray(r * k, seed + 100 * c + 1) }));
  const labels = Array.from({ length: n }, (_, i) => i % clusters);
  const rand = uniform(seed + 7);
  const adapters = labels.map((c, i) => {
    const centre = centres[c] as { u: Float32Array; vt: Float32Array };
    const noise = gaussianArray(m * r, seed + 5000 + i, 0.05);
    const core = opts.diagonal ? diagMatrix(r, () => 0.5 + rand()) : gaussianArray(r * r, seed + 9000 + i);
    const B = mm(centre.u, core, m, r, r).map((x, j) => x + (noise[j] as number));
    return { A: Float32Array.from(centre.vt), B, rank: r, scaling: 1 };
  });
  return { adapters, labels };
}

/** ‖B A‖_F computed densely (tests only: fine at test sizes). */
export function denseNorm(a: SlotFactors, m: number, k: number): number {
  const d = mm(a.B, a.A, m, a.rank, k);
  return Math.sqrt(d.reduce((s, x) => s + x * x, 0));
}
