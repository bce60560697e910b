// Orthonormal bases for the JD iterations, by Cholesky-QR on graph-computed Grams, because ONNX
// has no QR and the d×r matrices stay in graphs. Either twice in float32 (CholQR2: the second
// pass restores the orthogonality the first loses, ≈ ε·κ² → ε for κ up to ~1/√ε, which the
// callers' shift guarantees), or once on a float64 Gram with the factor applied in float64 by the
// run that uses the basis (basisIn64), which is as orthonormal and saves a run.
import { type Basis, type JdKernels } from './kernels.js';
import { gaussianArray } from './random.js';
import { matmul, orthonormalizer } from './small.js';

export interface Orthonormalized {
  basis: Basis;
  /** ‖Q − P PᵀQ‖²_F against the previous basis P. */
  change: number;
}

/** Q with QᵀQ = I spanning z·zR, given the Gram of z·zR; `prev` is only for the change measure (NaN without it). */
export async function cholQr2(kernels: JdKernels, z: Basis, gram: Float64Array, prev: Basis | undefined, p: number, r: number): Promise<Orthonormalized> {
  const first = orthonormalizer(gram, r);
  const pass = await kernels.orth({ q: z.q, R: isIdentity(z.R, r) ? first.inv : matmul(z.R, first.inv, r, r, r) }, prev, p, r);
  const second = orthonormalizer(pass.gram, r);
  return { basis: { q: pass.q, R: second.inv }, change: pass.change };
}

function isIdentity(a: Float64Array, r: number): boolean {
  for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) if (a[i * r + j] !== (i === j ? 1 : 0)) return false;
  return true;
}

/**
 * The orthonormalized Q factor of a seeded Gaussian p×r matrix (ALGORITHMS.md §6
 * initialization), as q·R for basisIn64: one Cholesky-QR pass on its float64 Gram.
 */
export async function randomOrthonormal(kernels: JdKernels, p: number, r: number, seed: number): Promise<Basis> {
  const q = gaussianArray(p * r, seed);
  return { q, R: orthonormalizer(await kernels.gram64(q, p, r), r).inv };
}
