// JD-Full: shared orthonormal U (m×r), V (k×r) and a full r×r Σ_i = Uᵀ M̃_i V per adapter,
// maximizing Σ_i ‖Uᵀ M̃_i V‖² (equivalently minimizing Σ_i ‖M̃_i − U Σ_i Vᵀ‖²).
import { cholQr2, randomOrthonormal } from './basis.js';
import { type Basis, type JdKernels } from './kernels.js';
import { type Slot, totalEnergy } from './slot.js';
import { orthonormalizer } from './small.js';
import { type JdOptions, type SlotResult } from './types.js';

/**
 * Σ_i M V Vᵀ Mᵀ is only positive semidefinite, so the steps multiply by it plus μI (same
 * eigenvectors, never a lower objective): Z keeps full column rank when r exceeds the rank
 * of the adapters, and κ(Z) stays ≲ 1/SHIFT for Cholesky-QR in float32.
 */
const SHIFT = 1e-2;

export async function jdFull(kernels: JdKernels, slot: Slot, opts: JdOptions): Promise<SlotResult> {
  const { m, k } = slot;
  const r = checkRank(slot, opts.rank);
  const total = totalEnergy(slot);
  let U = opts.init?.U ?? (await randomOrthonormal(kernels, m, r, opts.seed));
  let V = opts.init?.V ?? (await randomOrthonormal(kernels, k, r, opts.seed + 1));
  let energy = total / 2;
  const history: number[] = [];
  let iterations = 0;
  let converged = false;
  const variant = opts.variant ?? 'alternating';
  const inner = Math.max(1, opts.innerIterations ?? 2);
  const mu = (): number => (SHIFT * Math.max(energy, 1e-12)) / r;

  while (iterations < opts.iterations && !converged) {
    let changeU: number;
    let changeV: number;
    if (variant === 'eigen') {
      const s = await kernels.eigenStep(slot, r, U, V, mu());
      energy = s.energy;
      history.push(total - energy);
      const nu = await cholQr2(kernels, { q: s.zu, R: identityR(r) }, s.gu, U, m, r);
      const nv = await cholQr2(kernels, { q: s.zv, R: identityR(r) }, s.gv, V, k, r);
      [U, V, changeU, changeV] = [nu.basis, nv.basis, nu.change, nv.change];
    } else {
      const u = await halfStep(kernels, slot.f, slot.g, slot, m, k, r, U, V, inner, mu, (e) => {
        energy = e;
        history.push(total - e);
      });
      const v = await halfStep(kernels, slot.g, slot.f, slot, k, m, r, V, u.basis, inner, mu, (e) => {
        energy = e;
      });
      [U, V, changeU, changeV] = [u.basis, v.basis, u.change, v.change];
    }
    iterations++;
    // ‖U − U_old U_oldᵀ U‖_F / ‖U‖_F with ‖U‖_F = √r (ALGORITHMS.md §6), on both sides.
    converged = Math.sqrt(Math.max(changeU, changeV) / r) < opts.tolerance;
  }

  const final = await kernels.errors(slot, r, U, V);
  const objective = final.err2.reduce((a, b) => a + b, 0);
  history.push(objective);
  return {
    method: 'jd-full',
    rank: r,
    iterations,
    converged,
    objective,
    history,
    U: final.u,
    V: final.v,
    sigma: final.core,
    errors: Float64Array.from(final.err2, Math.sqrt),
  };
}

/** One side: `inner` shifted subspace steps from `x`'s current basis, then CholQR2. */
async function halfStep(
  kernels: JdKernels,
  x: Float32Array,
  y: Float32Array,
  slot: Slot,
  p: number,
  q: number,
  r: number,
  cur: Basis,
  other: Basis,
  inner: number,
  mu: () => number,
  onEnergy: (e: number) => void,
): Promise<{ basis: Basis; change: number }> {
  let z: Basis = cur;
  for (let s = 0; s < inner; s++) {
    const step = await kernels.step(x, y, slot.n, slot.r0, p, q, r, z, other, mu());
    if (s === 0) onEnergy(step.energy);
    if (s === inner - 1) return cholQr2(kernels, { q: step.z, R: identityR(r) }, step.gram, cur, p, r);
    // Only the span matters between steps, so one Cholesky-QR pass, applied lazily, suffices.
    z = { q: step.z, R: orthonormalizer(step.gram, r).inv };
  }
  throw new Error('unreachable: inner ≥ 1');
}

function identityR(r: number): Float64Array {
  const out = new Float64Array(r * r);
  for (let i = 0; i < r; i++) out[i * r + i] = 1;
  return out;
}

/** The rank a slot can hold: at most min(m, k) orthonormal columns. */
export function checkRank(slot: Slot, rank: number): number {
  if (!Number.isInteger(rank) || rank < 1) throw new Error(`rank ${rank} is invalid: expected a positive integer`);
  return Math.min(rank, slot.m, slot.k);
}
