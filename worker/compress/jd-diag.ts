// JD-Diag: free U (m×r), V (k×r) and a diagonal σ_i per adapter, by alternating least
// squares (Appendix A.1 case 2): σ_i, then U, then V, then a rescale that leaves every
// U diag(σ_i) Vᵀ unchanged but keeps the three factors at comparable scales.
import { cholQr2, materialize } from './basis.js';
import { type Basis, type JdKernels } from './kernels.js';
import { checkRank } from './jd-full.js';
import { gaussianArray } from './random.js';
import { type Slot, totalEnergy } from './slot.js';
import { choleskyUpper, hadamard, identity, invSymPsd, pinvSym } from './small.js';
import { type JdOptions, type SlotResult } from './types.js';

export async function jdDiag(kernels: JdKernels, slot: Slot, opts: JdOptions): Promise<SlotResult> {
  const { m, k, n } = slot;
  const r = checkRank(slot, opts.rank);
  const total = totalEnergy(slot);
  let U: Basis = opts.init?.U ?? { q: gaussianArray(m * r, opts.seed), R: identity(r) };
  let V: Basis = opts.init?.V ?? { q: gaussianArray(k * r, opts.seed + 1), R: identity(r) };
  const history: number[] = [];
  let iterations = 0;
  let converged = false;
  let sigma: Float64Array = new Float64Array(n * r);

  // σ for the current (U, V) and the objective of the model before and after that solve.
  const solveSigma = async (): Promise<{ before: number; after: number; gu: Float64Array; gv: Float64Array }> => {
    const p = await kernels.project(slot, r, U, V, ['diag', 'gu', 'gv']);
    const d = p.diag as Float64Array;
    const gu = p.gu as Float64Array;
    const gv = p.gv as Float64Array;
    const G = hadamard(gu, gv);
    const before = total - 2 * dot(sigma, d) + quadSum(sigma, G, n, r);
    sigma = solveRows(G, d, n, r);
    const after = total - 2 * dot(sigma, d) + quadSum(sigma, G, n, r);
    return { before, after, gu, gv };
  };

  let state = await solveSigma();
  history.push(state.after);
  while (iterations < opts.iterations && !converged) {
    const S = outerSum(sigma, n, r);
    // U = (Σ M_i V Σ_i)(Σ Σ_i VᵀV Σ_i)⁻¹ with Σ Σ_i VᵀV Σ_i = (VᵀV) ∘ Σ σ_iσ_iᵀ; a pseudo-inverse
    // when that is singular (a σ column all zero), where the minimum-norm solution is still optimal.
    const sig32 = Float32Array.from(sigma);
    const nu = await kernels.diagUpdate(slot.f, slot.g, n, slot.r0, m, k, r, V, sig32, invSymPsd(hadamard(state.gv, S), r));
    U = { q: nu.u, R: identity(r) };
    const nv = await kernels.diagUpdate(slot.g, slot.f, n, slot.r0, k, m, r, U, sig32, invSymPsd(hadamard(nu.gram, S), r));
    // Rescale: ρ = √Σ‖σ_i‖², σ /= ρ, U *= ρ; then balance ‖U‖_F and ‖V‖_F.
    const rho = Math.sqrt(dot(sigma, sigma)) || 1;
    sigma = sigma.map((x) => x / rho);
    const normU = rho * Math.sqrt(trace(nu.gram, r));
    const normV = Math.sqrt(trace(nv.gram, r));
    const c = normU > 0 && normV > 0 ? Math.sqrt(normV / normU) : 1;
    U = { q: nu.u, R: identity(r, rho * c) };
    V = { q: nv.u, R: identity(r, 1 / c) };
    iterations++;
    const prev = history[history.length - 1] as number;
    state = await solveSigma();
    history[history.length] = state.before;
    converged = opts.tolerance > 0 && prev - state.before <= opts.tolerance * Math.max(prev, 1e-30);
  }
  // The last σ solve is exact for the final (U, V); report that (lower) objective.
  history[history.length - 1] = Math.min(state.after, history[history.length - 1] as number);

  const sig32 = Float32Array.from(sigma);
  const err2 = await diagErrors(kernels, slot, r, U, V, state.gu, state.gv, sig32);
  const objective = err2.reduce((a, b) => a + b, 0);
  return {
    method: 'jd-diag',
    rank: r,
    iterations,
    converged,
    objective,
    history,
    U: await materialize(kernels, U, m, r),
    V: await materialize(kernels, V, k, r),
    sigma: sig32,
    errors: Float64Array.from(err2, Math.sqrt),
  };
}

/** Squared errors of U diag(σ_i) Vᵀ, measured in orthonormal bases U = Q_U R_U, V = Q_V R_V. */
export async function diagErrors(kernels: JdKernels, slot: Slot, r: number, U: Basis, V: Basis, gu: Float64Array, gv: Float64Array, sigma: Float32Array): Promise<Float64Array> {
  const qu = await cholQr2(kernels, U, gu, U, slot.m, r);
  const qv = await cholQr2(kernels, V, gv, V, slot.k, r);
  return (await kernels.errors(slot, r, qu.basis, qv.basis, { sigma, ru: qu.R, rv: qv.R })).err2;
}

/** σ_i = ((UᵀU)∘(VᵀV))⁻¹ diag(Uᵀ M̃_i V) for fixed U, V: the optimal diagonal for every adapter. */
export async function diagSigma(kernels: JdKernels, slot: Slot, r: number, U: Basis, V: Basis): Promise<{ sigma: Float64Array; d: Float64Array; G: Float64Array; gu: Float64Array; gv: Float64Array }> {
  const p = await kernels.project(slot, r, U, V, ['diag', 'gu', 'gv']);
  const G = hadamard(p.gu as Float64Array, p.gv as Float64Array);
  const d = p.diag as Float64Array;
  return { sigma: solveRows(G, d, slot.n, r), d, G, gu: p.gu as Float64Array, gv: p.gv as Float64Array };
}

/** σ_i = G⁻¹ d_i for every adapter (Cholesky, or the pseudo-inverse when G is singular). */
function solveRows(G: Float64Array, d: Float64Array, n: number, r: number): Float64Array {
  const upper = choleskyUpper(G, r);
  const out = new Float64Array(n * r);
  if (upper) {
    for (let i = 0; i < n; i++) {
      // RᵀR x = d: forward then back substitution.
      const y = new Float64Array(r);
      for (let a = 0; a < r; a++) {
        let s = d[i * r + a] as number;
        for (let b = 0; b < a; b++) s -= (upper[b * r + a] as number) * (y[b] as number);
        y[a] = s / (upper[a * r + a] as number);
      }
      for (let a = r - 1; a >= 0; a--) {
        let s = y[a] as number;
        for (let b = a + 1; b < r; b++) s -= (upper[a * r + b] as number) * (out[i * r + b] as number);
        out[i * r + a] = s / (upper[a * r + a] as number);
      }
    }
    return out;
  }
  const inv = pinvSym(G, r);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < r; a++) {
      let s = 0;
      for (let b = 0; b < r; b++) s += (inv[a * r + b] as number) * (d[i * r + b] as number);
      out[i * r + a] = s;
    }
  }
  return out;
}

function outerSum(sigma: Float64Array, n: number, r: number): Float64Array {
  const out = new Float64Array(r * r);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < r; a++) {
      const sa = sigma[i * r + a] as number;
      for (let b = 0; b < r; b++) out[a * r + b] = (out[a * r + b] as number) + sa * (sigma[i * r + b] as number);
    }
  }
  return out;
}

/** Σ_i σ_iᵀ G σ_i. */
function quadSum(sigma: Float64Array, G: Float64Array, n: number, r: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < r; a++) {
      let row = 0;
      for (let b = 0; b < r; b++) row += (G[a * r + b] as number) * (sigma[i * r + b] as number);
      s += (sigma[i * r + a] as number) * row;
    }
  }
  return s;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

function trace(a: Float64Array, r: number): number {
  let s = 0;
  for (let i = 0; i < r; i++) s += a[i * r + i] as number;
  return s;
}
