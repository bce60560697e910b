// Theorem 1 of the paper as a diagnostic: for JD-Full at rank r on unit-norm M̃_i,
//   (1/n)·Σ_{j≤r} s̃_j²  ≤  Σ_i ‖Σ_i‖²_F  ≤  Σ_{j≤min(r², n)} s_j²
// with s the singular values of L = [vec M̃_1, …, vec M̃_n] and s̃ those of Σ_i M̃_i (the lower
// bound is what merging all adapters into one achieves; the reconstruction error is n minus
// the middle term). Builds N×N Grams (N = n·R0), so it is for tests and small diagnostics.
import * as nn from '../onnx/index.js';
import { symmetricEigen } from '../onnx/linalg.js';
import { SessionCache } from '../onnx/session.js';
import { type Slot } from './slot.js';
import { symmetrize } from './small.js';

export interface Theorem1Bounds {
  lower: number;
  upper: number;
}

export async function theorem1Bounds(slot: Slot, rank: number): Promise<Theorem1Bounds> {
  const { n, r0, m, k } = slot;
  const N = n * r0;
  const g = new nn.Graph('jd-theorem1');
  const F = g.input('f', 'float32', [N, m]);
  const G = g.input('g', 'float32', [N, k]);
  const ff = nn.gemm(F, F, undefined, { transB: true });
  const gg = nn.gemm(G, G, undefined, { transB: true });
  g.output(ff, 'ff');
  g.output(gg, 'gg');
  // ⟨M̃_i, M̃_j⟩ = ⟨F_iF_jᵀ, G_iG_jᵀ⟩: block sums of FFᵀ ∘ GGᵀ.
  g.output(nn.reduceSum(nn.reshape(nn.mul(ff, gg), [n, r0, n, r0]), [1, 3]), 'lgram');
  const cache = new SessionCache();
  try {
    const s = await cache.forGraph(g);
    const out = await s.run({ f: nn.tensor('float32', [N, m], slot.f), g: nn.tensor('float32', [N, k], slot.g) });
    const lgram = Float64Array.from((out.lgram as nn.Tensor).data as Float32Array);
    const ffd = Float64Array.from((out.ff as nn.Tensor).data as Float32Array);
    const ggd = Float64Array.from((out.gg as nn.Tensor).data as Float32Array);
    const sL = symmetricEigen(symmetrize(lgram, n), n).values;
    let upper = 0;
    for (let j = 0; j < Math.min(rank * rank, n); j++) upper += Math.max(sL[j] as number, 0);
    // Σ M̃_i = FᵀG: its squared singular values are the eigenvalues of (FFᵀ)^{1/2}(GGᵀ)(FFᵀ)^{1/2},
    // which equal those of (FFᵀ)(GGᵀ); use the symmetric form through the eigenvectors of FFᵀ.
    const ef = symmetricEigen(symmetrize(ffd, N), N);
    const half = new Float64Array(N * N);
    for (let c = 0; c < N; c++) {
      const s = Math.sqrt(Math.max(ef.values[c] as number, 0));
      for (let a = 0; a < N; a++) for (let b = 0; b < N; b++) half[a * N + b] = (half[a * N + b] as number) + (ef.vectors[a * N + c] as number) * (ef.vectors[b * N + c] as number) * s;
    }
    const prod = mul(mul(half, ggd, N), half, N);
    const sT = symmetricEigen(symmetrize(prod, N), N).values;
    let lower = 0;
    for (let j = 0; j < Math.min(rank, N); j++) lower += Math.max(sT[j] as number, 0);
    return { lower: lower / n, upper };
  } finally {
    await cache.dispose();
  }
}

function mul(a: Float64Array, b: Float64Array, r: number): Float64Array {
  const out = new Float64Array(r * r);
  for (let i = 0; i < r; i++) for (let p = 0; p < r; p++) {
    const x = a[i * r + p] as number;
    if (x === 0) continue;
    for (let j = 0; j < r; j++) out[i * r + j] = (out[i * r + j] as number) + x * (b[p * r + j] as number);
  }
  return out;
}
