// JD-Diag: free U (m×r), V (k×r) and a diagonal σ_i per adapter, by alternating least
// squares (Appendix A.1 case 2): σ_i, then U, then V, then a rescale that leaves every
// U diag(σ_i) Vᵀ unchanged but keeps the three factors at comparable scales.
import { DiagSteps } from './diag-steps.js';
import { type Basis, type JdKernels } from './kernels.js';
import { checkRank } from './jd-full.js';
import { gaussianArray } from './random.js';
import { errorsFromCaptured, type Slot, totalEnergy } from './slot.js';
import { choleskyLower, hadamard, identity, invPd, invSymPsd, matmul, orthonormalizer, pinvSym, scale } from './small.js';
import { type JdOptions, type SlotResult } from './types.js';

export async function jdDiag(kernels: JdKernels, slot: Slot, opts: JdOptions): Promise<SlotResult> {
  const { m, k, n } = slot;
  const r = checkRank(slot, opts.rank);
  const total = totalEnergy(slot);
  const steps = await DiagSteps.create(kernels, slot, r);
  const start = await steps.start(
    opts.init?.U ?? { q: gaussianArray(m * r, opts.seed), R: identity(r) },
    opts.init?.V ?? { q: gaussianArray(k * r, opts.seed + 1), R: identity(r) },
  );
  // U = a·uq and V = b·vq: the rescale moves scalars, not matrices.
  let [uq, vq, a, b] = [start.u, start.v, 1, 1];
  let [gu, gv] = [start.gu, start.gv];
  const history: number[] = [];
  let iterations = 0;
  let converged = false;

  // σ = G⁻¹d for G = (UᵀU)∘(VᵀV) and d_i = diag(Uᵀ M̃_i V) = dScale·dRaw_i; the objective
  // before (with the previous σ and its S = Σ σ_iσ_iᵀ) and after that solve.
  let sigma: { sigma: Float64Array; sigma32: Float32Array; S: Float64Array } = { sigma: new Float64Array(n * r), sigma32: new Float32Array(n * r), S: new Float64Array(r * r) };
  let d: { raw: Float32Array; scale: number } = { raw: new Float32Array(n * r), scale: 1 };
  const solveSigma = async (dRaw: Float32Array, dScale: number): Promise<{ before: number; after: number }> => {
    const G = hadamard(gu, gv);
    const before = total - 2 * dScale * dot(sigma.sigma, dRaw) + frob(G, sigma.S);
    sigma = await steps.sigma(dRaw, scale(invPd(G, r), dScale));
    d = { raw: dRaw, scale: dScale };
    return { before, after: total - 2 * dScale * dot(sigma.sigma, dRaw) + frob(G, sigma.S) };
  };

  let state = await solveSigma(start.d, 1);
  history.push(state.after);
  while (iterations < opts.iterations && !converged) {
    const S = sigma.S;
    // U = (Σ M_i V Σ_i)(Σ Σ_i VᵀV Σ_i)⁻¹ with Σ Σ_i VᵀV Σ_i = (VᵀV) ∘ Σ σ_iσ_iᵀ; a pseudo-inverse
    // when that is singular (a σ column all zero), where the minimum-norm solution is still optimal.
    // G·V = b·(G·vq), so b goes into the r×r factor.
    const nu = await steps.updateU(sigma.sigma32, scale(invSymPsd(hadamard(gv, S), r), b));
    const nv = await steps.updateV(sigma.sigma32, invSymPsd(hadamard(nu.gram, S), r));
    // Rescale: ρ = √Σ‖σ_i‖², σ /= ρ, U *= ρ; then balance ‖U‖_F and ‖V‖_F.
    const rho = Math.sqrt(trace(S, r)) || 1;
    sigma = { sigma: scale(sigma.sigma, 1 / rho), sigma32: sigma.sigma32, S: scale(S, 1 / (rho * rho)) };
    const normU = rho * Math.sqrt(trace(nu.gram, r));
    const normV = Math.sqrt(trace(nv.gram, r));
    const c = normU > 0 && normV > 0 ? Math.sqrt(normV / normU) : 1;
    [uq, vq, a, b] = [nu.u, nv.v, rho * c, 1 / c];
    gu = scale(nu.gram, a * a);
    gv = scale(nv.gram, b * b);
    iterations++;
    const prev = history[history.length - 1] as number;
    // diag(Uᵀ M_i V) = a·b·colsum(F_i·uq ∘ G_i·vq)
    state = await solveSigma(nv.d, a * b);
    history[history.length] = state.before;
    converged = opts.tolerance > 0 && prev - state.before <= opts.tolerance * Math.max(prev, 1e-30);
  }
  // The last σ solve is exact for the final (U, V); report that (lower) objective.
  history[history.length - 1] = Math.min(state.after, history[history.length - 1] as number);

  const U: Basis = { q: uq, R: identity(r, a) };
  const V: Basis = { q: vq, R: identity(r, b) };
  // At the optimal σ_i = G⁻¹d_i the captured energy is σ_i·d_i.
  const captured = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = i * r; j < (i + 1) * r; j++) captured[i] = (captured[i] as number) + d.scale * (sigma.sigma[j] as number) * (d.raw[j] as number);
  const err2 = errorsFromCaptured(slot, captured) ?? (await diagErrors(kernels, slot, r, U, V, gu, gv, sigma.sigma32));
  const objective = err2.reduce((x, y) => x + y, 0);
  return {
    method: 'jd-diag',
    rank: r,
    iterations,
    converged,
    objective,
    history,
    U: scaled(uq, a),
    V: scaled(vq, b),
    sigma: sigma.sigma32,
    errors: err2.map(Math.sqrt),
  };
}

/** x·s in float32, as a graph would compute x·(s I). */
function scaled(x: Float32Array, s: number): Float32Array {
  const s32 = Math.fround(s);
  return s32 === 1 ? x : scale(x, s32);
}

/** ⟨A, B⟩ = Σ A∘B: with B = Σ_i σ_iσ_iᵀ this is Σ_i σ_iᵀAσ_i. */
function frob(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/**
 * Squared errors of U diag(σ_i) Vᵀ, measured in orthonormal bases U = Q_U R_U, V = Q_V R_V. The
 * Grams must be float64 ones of U and V as errors() materializes them: then one Cholesky-QR pass,
 * applied in float64 there, gives Q_U and Q_V orthonormal to float32 rounding.
 */
export async function diagErrors(kernels: JdKernels, slot: Slot, r: number, U: Basis, V: Basis, gu: Float64Array, gv: Float64Array, sigma: Float32Array): Promise<Float64Array> {
  const ou = orthonormalizer(gu, r);
  const ov = orthonormalizer(gv, r);
  const qu = { q: U.q, R: rightMul(U.R, ou.inv, r) };
  const qv = { q: V.q, R: rightMul(V.R, ov.inv, r) };
  return (await kernels.errors(slot, r, qu, qv, { sigma, ru: ou.fwd, rv: ov.fwd })).err2;
}

/** a·b for r×r a, b; a scaled identity (JD-Diag's rescales) just scales b. */
function rightMul(a: Float64Array, b: Float64Array, r: number): Float64Array {
  const c = a[0] as number;
  for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) if (a[i * r + j] !== (i === j ? c : 0)) return matmul(a, b, r, r, r);
  return scale(b, c);
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
  const lower = choleskyLower(G, r);
  const out = new Float64Array(n * r);
  if (lower) {
    for (let i = 0; i < n; i++) {
      // LLᵀx = d: forward then back substitution.
      const y = new Float64Array(r);
      for (let a = 0; a < r; a++) {
        let s = d[i * r + a] as number;
        for (let b = 0; b < a; b++) s -= (lower[a * r + b] as number) * (y[b] as number);
        y[a] = s / (lower[a * r + a] as number);
      }
      for (let a = r - 1; a >= 0; a--) {
        let s = y[a] as number;
        for (let b = a + 1; b < r; b++) s -= (lower[b * r + a] as number) * (out[i * r + b] as number);
        out[i * r + a] = s / (lower[a * r + a] as number);
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

function dot(a: Float64Array, b: Float32Array | Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

function trace(a: Float64Array, r: number): number {
  let s = 0;
  for (let i = 0; i < r; i++) s += a[i * r + i] as number;
  return s;
}
