// Shared result and option types of the JD algorithms.
import { type Basis } from './kernels.js';

export type JdMethod = 'jd-full' | 'jd-diag' | 'svd';
export const JD_METHODS: readonly JdMethod[] = ['jd-full', 'jd-diag', 'svd'];

/** Alternating exact-ish top-r subspaces (Appendix A.1) or simultaneous eigen-iteration (A.2). */
export type JdFullVariant = 'alternating' | 'eigen';

export interface JdOptions {
  rank: number;
  /** Iteration cap (the paper uses 10). */
  iterations: number;
  /** Stop when the relative subspace change (Full) or relative objective decrease (Diag) falls below this. */
  tolerance: number;
  seed: number;
  /** JD-Full only. Default 'alternating'. */
  variant?: JdFullVariant;
  /**
   * JD-Full alternating only: subspace-iteration steps per half-step. The exact top-r
   * eigenvectors of Σ_i M_i V Vᵀ M_iᵀ would need an m×m (or n·r×n·r) eigensolve; a few
   * warm-started steps reach the same fixed points and never raise the objective. Default 2.
   */
  innerIterations?: number;
  /** Warm start (e.g. the previous clustering round's bases). */
  init?: { U: Basis; V: Basis };
}

export interface Convergence {
  /** Iterations run. */
  iterations: number;
  /** True when the tolerance was met before the cap. */
  converged: boolean;
  /** Σ_i ‖M̃_i − U Σ_i Vᵀ‖²_F over the slot's normalized adapters, at the end. */
  objective: number;
  /** The objective at the start and after every iteration (length iterations + 1). */
  history: number[];
}

export interface SlotResult extends Convergence {
  method: JdMethod;
  /** Columns of U and V. */
  rank: number;
  /** m×r row-major (orthonormal for jd-full and svd). For svd: n bases stacked, n·m×r. */
  U: Float32Array;
  /** k×r row-major; for svd n·k×r. */
  V: Float32Array;
  /** Per adapter, normalized: r×r (jd-full) or r (jd-diag, svd) each, concatenated. */
  sigma: Float32Array;
  /** ‖M_i − norm_i·U Σ_i Vᵀ‖_F / ‖M_i‖_F per adapter (0 for an all-zero update). */
  errors: Float64Array;
}

export function sigmaSize(method: JdMethod, r: number): number {
  return method === 'jd-full' ? r * r : r;
}
