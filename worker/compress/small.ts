// r×r algebra for the JD iterations, in float64 on the host: everything here is at most
// r×r (or n×r for n adapters), so a TypeScript loop is cheaper than a graph run.
// Anything of size d×r or larger goes through the graphs in kernels.ts.
import { cholesky, matmulF64, symmetricEigen, transposeF64 } from '../onnx/linalg.js';

export function identity(r: number, scale = 1): Float64Array {
  const out = new Float64Array(r * r);
  for (let i = 0; i < r; i++) out[i * r + i] = scale;
  return out;
}

/** Upper-triangular R with G = RᵀR (the R of a QR whose Gram is G); null when G is not positive definite. */
export function choleskyUpper(g: Float64Array, r: number): Float64Array | null {
  try {
    return transposeF64(cholesky(symmetrize(g, r), r), r, r);
  } catch {
    return null;
  }
}

/** Inverse of an upper-triangular matrix by back substitution. */
export function invertUpper(u: Float64Array, r: number): Float64Array {
  const inv = new Float64Array(r * r);
  for (let j = 0; j < r; j++) {
    inv[j * r + j] = 1 / (u[j * r + j] as number);
    for (let i = j - 1; i >= 0; i--) {
      let s = 0;
      for (let k = i + 1; k <= j; k++) s += (u[i * r + k] as number) * (inv[k * r + j] as number);
      inv[i * r + j] = -s / (u[i * r + i] as number);
    }
  }
  return inv;
}

/** (G + Gᵀ)/2: Grams computed in float32 are symmetric only up to rounding. */
export function symmetrize(g: Float64Array, r: number): Float64Array {
  const out = new Float64Array(r * r);
  for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) out[i * r + j] = 0.5 * ((g[i * r + j] as number) + (g[j * r + i] as number));
  return out;
}

/**
 * A right factor X with (Z·X)ᵀ(Z·X) = I given the Gram G = ZᵀZ, and its (pseudo-)inverse Y with
 * Z = (Z·X)·Y: R⁻¹ and R from Cholesky, or, when G is singular to working precision,
 * W·Λ^{-1/2} and Λ^{1/2}·Wᵀ over the well-conditioned eigenpairs (the callers' shift keeps
 * that rare).
 */
export function orthonormalizer(g: Float64Array, r: number): { inv: Float64Array; fwd: Float64Array } {
  const upper = choleskyUpper(g, r);
  if (upper) {
    let ok = true;
    for (let i = 0; i < r; i++) if (!((upper[i * r + i] as number) > 1e-30)) ok = false;
    if (ok) return { inv: invertUpper(upper, r), fwd: upper };
  }
  const { values, vectors } = symmetricEigen(symmetrize(g, r), r);
  const top = Math.max(values[0] as number, 0);
  const inv = new Float64Array(r * r);
  const fwd = new Float64Array(r * r);
  for (let j = 0; j < r; j++) {
    const lambda = values[j] as number;
    if (!(lambda > 1e-12 * top)) continue;
    const s = Math.sqrt(lambda);
    for (let i = 0; i < r; i++) {
      inv[i * r + j] = (vectors[i * r + j] as number) / s;
      fwd[j * r + i] = (vectors[i * r + j] as number) * s;
    }
  }
  return { inv, fwd };
}

/**
 * Inverse of a symmetric positive semidefinite matrix: through Cholesky when every pivot stays
 * well above rounding (R_ii² ≥ λ_min, so tiny pivots are where the matrix is near singular), else
 * the eigen-based pseudo-inverse. The Cholesky path costs r³/3 against the Jacobi eigensolver's
 * many sweeps (0.4 ms vs 18 ms at r = 64), and JD-Diag's Grams (VᵀV)∘Σσσᵀ are positive definite
 * by the Schur product theorem whenever V has full rank and no σ column is all zero.
 */
export function invSymPsd(a: Float64Array, r: number, rel = 1e-10): Float64Array {
  const upper = choleskyUpper(a, r);
  if (upper) {
    let maxDiag = 0;
    for (let i = 0; i < r; i++) maxDiag = Math.max(maxDiag, a[i * r + i] as number);
    let ok = maxDiag > 0;
    for (let i = 0; i < r && ok; i++) if (!((upper[i * r + i] as number) ** 2 > rel * maxDiag)) ok = false;
    if (ok) {
      const ri = invertUpper(upper, r);
      // A⁻¹ = R⁻¹R⁻ᵀ
      const out = new Float64Array(r * r);
      for (let i = 0; i < r; i++) {
        for (let j = i; j < r; j++) {
          let s = 0;
          for (let k = j; k < r; k++) s += (ri[i * r + k] as number) * (ri[j * r + k] as number);
          out[i * r + j] = s;
          out[j * r + i] = s;
        }
      }
      return out;
    }
  }
  return pinvSym(a, r, rel);
}

/** Moore–Penrose inverse of a symmetric positive semidefinite matrix (eigenvalues below rel·λmax dropped). */
export function pinvSym(a: Float64Array, r: number, rel = 1e-10): Float64Array {
  const { values, vectors } = symmetricEigen(symmetrize(a, r), r);
  const top = Math.max(Math.abs(values[0] as number), Math.abs(values[r - 1] as number));
  const out = new Float64Array(r * r);
  for (let k = 0; k < r; k++) {
    const lambda = values[k] as number;
    if (!(Math.abs(lambda) > rel * top)) continue;
    for (let i = 0; i < r; i++) {
      const vik = (vectors[i * r + k] as number) / lambda;
      for (let j = 0; j < r; j++) out[i * r + j] = (out[i * r + j] as number) + vik * (vectors[j * r + k] as number);
    }
  }
  return out;
}

/** Elementwise product. */
export function hadamard(a: Float64Array, b: Float64Array): Float64Array {
  return Float64Array.from(a, (x, i) => x * (b[i] as number));
}

export function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  return matmulF64(a, b, m, k, n);
}

export function trace(a: Float64Array, r: number): number {
  let s = 0;
  for (let i = 0; i < r; i++) s += a[i * r + i] as number;
  return s;
}

export function toF32(a: Float64Array): Float32Array {
  return Float32Array.from(a);
}

export function toF64(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a);
}

/** Singular values of a square k×k matrix (descending), from the eigenvalues of MᵀM. */
export function singularValues(a: Float64Array, k: number): Float64Array {
  const ata = matmulF64(transposeF64(a, k, k), a, k, k, k);
  return Float64Array.from(symmetricEigen(symmetrize(ata, k), k).values, (v) => Math.sqrt(Math.max(v, 0)));
}
