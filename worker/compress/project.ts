// Projection of new adapters onto existing bases, and the incremental update rule: a new
// adapter joins a bundle without recompression when its projection error stays under a
// threshold; otherwise the collection is recompressed.
//   JD-Full: Σ = Uᵀ M̃ V, computed as (UᵀB̃)(ÃV).   JD-Diag: σ = ((UᵀU)∘(VᵀV))⁻¹ diag(Uᵀ M̃ V).
import { diagErrors, diagSigma } from './jd-diag.js';
import { type JdKernels } from './kernels.js';
import { type Slot } from './slot.js';
import { identity } from './small.js';

/** One cluster's bases, one entry per slot in slot order. */
export interface ClusterBases {
  slots: ReadonlyArray<{ U: Float32Array; V: Float32Array; rank: number }>;
}

export interface Projection {
  /** The cluster with the lowest summed squared error. */
  cluster: number;
  /** Per slot: r×r (Full) or r (Diag), for unit-norm M̃. */
  sigma: Float32Array[];
  /** Per slot: ‖M − norm·UΣVᵀ‖_F/‖M‖_F. */
  errors: number[];
  meanError: number;
}

/** Projects every adapter of `slots` (packed new adapters) onto each cluster and keeps the best. */
export async function projectAdapters(kernels: JdKernels, slots: readonly Slot[], clusters: readonly ClusterBases[], method: 'jd-full' | 'jd-diag'): Promise<Projection[]> {
  const n = slots[0]?.n ?? 0;
  const perCluster: Array<{ err2: Float64Array[]; sigma: Float32Array[][] }> = [];
  for (const bases of clusters) {
    const err2: Float64Array[] = [];
    const sigma: Float32Array[][] = [];
    for (const [s, slot] of slots.entries()) {
      const b = bases.slots[s];
      if (!b) throw new Error(`cluster bases have ${bases.slots.length} module slots, but slot ${s} (${slot.name}) was given`);
      const U = { q: b.U, R: identity(b.rank) };
      const V = { q: b.V, R: identity(b.rank) };
      const size = method === 'jd-full' ? b.rank * b.rank : b.rank;
      if (method === 'jd-full') {
        const res = await kernels.errors(slot, b.rank, U, V);
        err2.push(res.err2);
        sigma.push(Array.from({ length: n }, (_, i) => res.core.slice(i * size, (i + 1) * size)));
      } else {
        const ds = await diagSigma(kernels, slot, b.rank, U, V);
        const sig = Float32Array.from(ds.sigma);
        err2.push(await diagErrors(kernels, slot, b.rank, U, V, ds.gu, ds.gv, sig));
        sigma.push(Array.from({ length: n }, (_, i) => sig.slice(i * size, (i + 1) * size)));
      }
    }
    perCluster.push({ err2, sigma });
  }
  return Array.from({ length: n }, (_, i) => {
    const total = (c: number): number => perCluster[c]!.err2.reduce((acc, e) => acc + e[i]!, 0);
    let best = 0;
    for (let c = 1; c < perCluster.length; c++) if (total(c) < total(best)) best = c;
    const chosen = perCluster[best]!;
    const errors = chosen.err2.map((e) => Math.sqrt(e[i]!));
    return { cluster: best, sigma: chosen.sigma.map((s) => s[i]!), errors, meanError: errors.reduce((a, b) => a + b, 0) / Math.max(errors.length, 1) };
  });
}

export interface IncrementalDecision {
  action: 'project' | 'recompress';
  /** The new adapter with the highest mean error, and that error. */
  worst: { index: number; meanError: number } | null;
}

/** Add by projection while every new adapter's mean error is at most `maxErrorPercent`; else recompress. */
export function incrementalDecision(projections: readonly Projection[], maxErrorPercent: number): IncrementalDecision {
  if (!(maxErrorPercent >= 0)) throw new Error(`maxErrorPercent ${maxErrorPercent} is invalid: expected a number ≥ 0`);
  let worst: IncrementalDecision['worst'] = null;
  projections.forEach((p, index) => {
    if (!worst || p.meanError > worst.meanError) worst = { index, meanError: p.meanError };
  });
  const ok = projections.every((p) => p.meanError * 100 <= maxErrorPercent);
  return { action: ok ? 'project' : 'recompress', worst };
}
