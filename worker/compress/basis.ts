// Orthonormal bases for the JD iterations: random starts and Cholesky-QR run twice
// (CholQR2) on graph-computed Grams, because ONNX has no QR and the d×r matrices stay in
// graphs. The second pass restores the orthogonality float32 loses in the first
// (≈ ε·κ² → ε for κ up to ~1/√ε, which the callers' shift guarantees).
import { type Basis, type JdKernels } from './kernels.js';
import { gaussianArray } from './random.js';
import { identity, matmul, orthonormalizer } from './small.js';

export interface Orthonormalized {
  basis: Basis;
  /** ‖Q − P PᵀQ‖²_F against the previous basis P. */
  change: number;
  /** R with (the input z·R_in) = Q·R, r×r; on demand, since only JD-Diag's errors use it and an r³ product in JS costs about a graph run at r = 64. */
  R: () => Float64Array;
}

/** Q with QᵀQ = I spanning z·zR, given the Gram of z·zR; `prev` is only for the change measure (NaN without it). */
export async function cholQr2(kernels: JdKernels, z: Basis, gram: Float64Array, prev: Basis | undefined, p: number, r: number): Promise<Orthonormalized> {
  const first = orthonormalizer(gram, r);
  const pass = await kernels.orth({ q: z.q, R: isIdentity(z.R, r) ? first.inv : matmul(z.R, first.inv, r, r, r) }, prev, p, r);
  const second = orthonormalizer(pass.gram, r);
  return { basis: { q: pass.q, R: second.inv }, change: pass.change, R: () => matmul(second.fwd, first.fwd, r, r, r) };
}

function isIdentity(a: Float64Array, r: number): boolean {
  for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) if (a[i * r + j] !== (i === j ? 1 : 0)) return false;
  return true;
}

/** Materializes z·R and its Gram (for inputs whose Gram is not known yet). */
export async function withGram(kernels: JdKernels, z: Basis, p: number, r: number): Promise<{ q: Float32Array; gram: Float64Array }> {
  const out = await kernels.orth(z, undefined, p, r);
  return { q: out.q, gram: out.gram };
}

/** The orthonormalized Q factor of a seeded Gaussian p×r matrix (ALGORITHMS.md §6 initialization). */
export async function randomOrthonormal(kernels: JdKernels, p: number, r: number, seed: number): Promise<Basis> {
  const raw = { q: gaussianArray(p * r, seed), R: identity(r) };
  const { q, gram } = await withGram(kernels, raw, p, r);
  return (await cholQr2(kernels, { q, R: identity(r) }, gram, undefined, p, r)).basis;
}

/** The basis as a plain p×r float32 matrix. */
export async function materialize(kernels: JdKernels, b: Basis, p: number, r: number): Promise<Float32Array> {
  return (await kernels.orth(b, undefined, p, r)).q;
}
