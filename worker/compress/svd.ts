// The per-LoRA baseline: each adapter's own rank-r truncated SVD (Eckart–Young), from its thin
// factors: with the R0×R0 Grams of B̃ and Ã (the Rᵀ R of their QR factorizations), the singular
// values of B̃Ã are those of Gb^{1/2} Ga^{1/2}, so nothing m×k is formed and only R0×R0
// eigenproblems run on the host.
import { type JdKernels } from './kernels.js';
import { type Slot } from './slot.js';
import { symmetrize } from './small.js';
import { symmetricEigen } from '../onnx/linalg.js';
import { type SlotResult } from './types.js';

export async function perAdapterSvd(kernels: JdKernels, slot: Slot, rank: number): Promise<SlotResult> {
  const { n, r0, m, k } = slot;
  const r = Math.min(rank, m, k);
  const { gf, gg } = await kernels.grams(slot);
  const X = new Float32Array(n * r0 * r);
  const Y = new Float32Array(n * r0 * r);
  const sigma = new Float32Array(n * r);
  const err2 = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ri = slot.ranks[i] as number;
    const gb = block(gf, i, r0, ri);
    const ga = block(gg, i, r0, ri);
    const eb = symmetricEigen(symmetrize(gb, ri), ri);
    const half = new Float64Array(ri * ri);
    const pinvHalf = new Float64Array(ri * ri);
    const top = Math.max(eb.values[0] as number, 0);
    for (let c = 0; c < ri; c++) {
      const lambda = eb.values[c] as number;
      if (!(lambda > 1e-12 * top)) continue;
      const s = Math.sqrt(lambda);
      for (let a = 0; a < ri; a++) {
        for (let b = 0; b < ri; b++) {
          const w = (eb.vectors[a * ri + c] as number) * (eb.vectors[b * ri + c] as number);
          half[a * ri + b] = (half[a * ri + b] as number) + w * s;
          pinvHalf[a * ri + b] = (pinvHalf[a * ri + b] as number) + w / s;
        }
      }
    }
    // K = Gb^{1/2} Ga Gb^{1/2} = E S² Eᵀ: S are the singular values of B̃Ã.
    const K = mul(mul(half, ga, ri), half, ri);
    const ek = symmetricEigen(symmetrize(K, ri), ri);
    let total = 0;
    for (let c = 0; c < ri; c++) total += Math.max(ek.values[c] as number, 0);
    let kept = 0;
    for (let c = 0; c < Math.min(r, ri); c++) {
      const s2 = Math.max(ek.values[c] as number, 0);
      const s = Math.sqrt(s2);
      if (s2 <= 1e-14 * total) continue;
      kept += s2;
      sigma[i * r + c] = s;
      // U_i = B̃ Gb^{+1/2} E, V_i = Ãᵀ Gb^{1/2} E S⁻¹: X_i, Y_i are their R0×r coefficients.
      for (let a = 0; a < ri; a++) {
        let x = 0;
        let y = 0;
        for (let b = 0; b < ri; b++) {
          const e = ek.vectors[b * ri + c] as number;
          x += (pinvHalf[a * ri + b] as number) * e;
          y += (half[a * ri + b] as number) * e;
        }
        X[(i * r0 + a) * r + c] = x;
        Y[(i * r0 + a) * r + c] = y / s;
      }
    }
    err2[i] = total > 0 ? Math.max(total - kept, 0) / total : 0;
  }
  const U = await kernels.blockProducts(slot.f, n, r0, m, X, r);
  const V = await kernels.blockProducts(slot.g, n, r0, k, Y, r);
  const objective = err2.reduce((a, b) => a + b, 0);
  return { method: 'svd', rank: r, iterations: 0, converged: true, objective, history: [objective], U, V, sigma, errors: Float64Array.from(err2, Math.sqrt) };
}

function block(grams: Float32Array, i: number, r0: number, ri: number): Float64Array {
  const out = new Float64Array(ri * ri);
  for (let a = 0; a < ri; a++) for (let b = 0; b < ri; b++) out[a * ri + b] = grams[(i * r0 + a) * r0 + b] as number;
  return out;
}

function mul(a: Float64Array, b: Float64Array, r: number): Float64Array {
  const out = new Float64Array(r * r);
  for (let i = 0; i < r; i++) for (let p = 0; p < r; p++) {
    const x = a[i * r + p] as number;
    for (let j = 0; j < r; j++) out[i * r + j] = (out[i * r + j] as number) + x * (b[p * r + j] as number);
  }
  return out;
}
