// JD-Full: shared orthonormal U (m×r), V (k×r) and a full r×r Σ_i = Uᵀ M̃_i V per adapter,
// maximizing Σ_i ‖Uᵀ M̃_i V‖² (equivalently minimizing Σ_i ‖M̃_i − U Σ_i Vᵀ‖²).
import { cholQr2, randomOrthonormal } from './basis.js';
import { FullSteps, type Side, type StepOut } from './full-steps.js';
import { type Basis, type JdKernels } from './kernels.js';
import { errorsFromCaptured, type Slot, totalEnergy } from './slot.js';
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
  const history: number[] = [];
  let iterations = 0;
  let converged = false;
  let energy = total / 2;
  const mu = (): number => (SHIFT * Math.max(energy, 1e-12)) / r;
  // A subspace change below a tolerance ≤ 0 can never stop the loop; skip computing it.
  const checkChange = opts.tolerance > 0;

  let fromIterations: { fu: Float32Array; u: Float32Array } | undefined;
  if ((opts.variant ?? 'alternating') === 'eigen') {
    while (iterations < opts.iterations && !converged) {
      const s = await kernels.eigenStep(slot, r, U, V, mu());
      energy = s.energy;
      history.push(total - energy);
      const nu = await cholQr2(kernels, { q: s.zu, R: identityR(r) }, s.gu, checkChange ? U : undefined, m, r);
      const nv = await cholQr2(kernels, { q: s.zv, R: identityR(r) }, s.gv, checkChange ? V : undefined, k, r);
      [U, V] = [nu.basis, nv.basis];
      iterations++;
      converged = checkChange && isConverged(nu.change, nv.change, r, opts.tolerance);
    }
  } else {
    const inner = Math.max(1, opts.innerIterations ?? 2);
    const steps = await FullSteps.create(kernels, slot, r);
    // Half U writes G·V into prods[0], which half V starts from; half V writes F·U into prods[1],
    // which the next half U starts from.
    const prods = [new Float32Array(slot.n * slot.r0 * r), new Float32Array(slot.n * slot.r0 * r)] as const;
    // U as the next half U starts from it: lazy at first, then as the half V's run materialized it.
    let uCur: Float32Array | Basis = U;
    while (iterations < opts.iterations && !converged) {
      const onU = (e: number): void => {
        energy = e;
        history.push(total - e);
      };
      const u = await halfStep(kernels, steps, steps.u, r, uCur, iterations > 0 ? prods[1] : undefined, V, prods[0], inner, mu, onU, checkChange);
      const v = await halfStep(kernels, steps, steps.v, r, u.other, prods[0], u.basis, prods[1], inner, mu, (e) => (energy = e), checkChange);
      [U, V, uCur] = [u.basis, v.basis, v.other];
      fromIterations = { fu: prods[1], u: v.other };
      iterations++;
      converged = checkChange && isConverged(u.change, v.change, r, opts.tolerance);
    }
  }

  // After alternating steps F·U and U are at hand, so the errors can come from the cores' energies.
  let final: { err2: Float64Array; core: Float32Array; u: Float32Array; v: Float32Array } | undefined;
  if (fromIterations) {
    const c = await kernels.cores(slot, r, fromIterations.fu, V);
    const err2 = errorsFromCaptured(slot, c.energy);
    if (err2) final = { err2, core: c.core, u: fromIterations.u, v: c.v };
  }
  final ??= await kernels.errors(slot, r, U, V);
  const objective = final.err2.reduce((a, b) => a + b, 0);
  history.push(objective);
  const errors = new Float64Array(final.err2.length);
  for (let i = 0; i < errors.length; i++) errors[i] = Math.sqrt(final.err2[i] as number);
  return { method: 'jd-full', rank: r, iterations, converged, objective, history, U: final.u, V: final.v, sigma: final.core, errors };
}

/** ‖U − U_old U_oldᵀ U‖_F / ‖U‖_F with ‖U‖_F = √r (ALGORITHMS.md §6), on both sides. */
function isConverged(changeU: number, changeV: number, r: number, tolerance: number): boolean {
  return Math.sqrt(Math.max(changeU, changeV) / r) < tolerance;
}

/**
 * One side: `inner` shifted subspace steps from `cur`, then one Cholesky-QR pass of the last Z on
 * a float64 Gram, applied in float64 by whichever run uses the basis next (q·R, see basisIn64): as
 * orthonormal as float32 CholQR2, without its second graph run. `xCur` is X·cur when known; Y·other
 * is written into `yOther`, and `other` comes back materialized.
 */
async function halfStep(
  kernels: JdKernels,
  steps: FullSteps,
  side: Side,
  r: number,
  cur: Float32Array | Basis,
  xCur: Float32Array | undefined,
  other: Basis,
  yOther: Float32Array,
  inner: number,
  mu: () => number,
  onEnergy: (e: number) => void,
  checkChange: boolean,
): Promise<{ basis: Basis; change: number; other: Float32Array }> {
  const first = await steps.first(side, cur, xCur, other, mu(), yOther, inner === 1);
  onEnergy(first.energy);
  let step: StepOut = first;
  for (let s = 1; s < inner; s++) {
    // Only the span matters between steps, so a float32 Gram and a lazy Cholesky-QR pass suffice.
    step = await steps.next(side, s, { q: step.z, R: orthonormalizer(step.gram, r).inv }, mu(), s === inner - 1);
  }
  const basis = { q: step.z, R: orthonormalizer(step.gram, r).inv };
  const change = checkChange ? (await kernels.orth64(basis, cur, side.p, r)).change : Number.NaN;
  return { basis, change, other: first.other };
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
