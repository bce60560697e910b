// r×r algebra for the JD iterations, in float64 on the host: everything here is at most
// r×r (or n×r for n adapters), so a TypeScript loop is cheaper than a graph run.
// Anything of size d×r or larger, and the iterations' n×r×r work, goes through graphs.
import { matmulF64, symmetricEigen, transposeF64 } from '../onnx/linalg.js';

export function identity(r: number, scale = 1): Float64Array {
  const out = new Float64Array(r * r);
  for (let i = 0; i < r; i++) out[i * r + i] = scale;
  return out;
}

/**
 * Σ_{t<len} a[ia+t]·b[ib+t] with four partial sums, so consecutive adds do not wait on each
 * other: the factorizations below are all such row·row dot products, and they run several times
 * per JD iteration (at r = 64, one chained sum made each cost about as much as a graph run).
 */
function dotRows(a: Float64Array, ia: number, b: Float64Array, ib: number, len: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let t = 0;
  for (; t + 3 < len; t += 4) {
    s0 += (a[ia + t] as number) * (b[ib + t] as number);
    s1 += (a[ia + t + 1] as number) * (b[ib + t + 1] as number);
    s2 += (a[ia + t + 2] as number) * (b[ib + t + 2] as number);
    s3 += (a[ia + t + 3] as number) * (b[ib + t + 3] as number);
  }
  for (; t < len; t++) s0 += (a[ia + t] as number) * (b[ib + t] as number);
  return s0 + s1 + (s2 + s3);
}

/** Lower-triangular L with (A + Aᵀ)/2 = L·Lᵀ (row by row), null when that is not positive definite. */
export function choleskyLower(a: Float64Array, r: number): Float64Array | null {
  const l = new Float64Array(r * r);
  for (let i = 0; i < r; i++) {
    const ri = i * r;
    for (let j = 0; j <= i; j++) {
      const rj = j * r;
      const s = 0.5 * ((a[ri + j] as number) + (a[rj + i] as number)) - dotRows(l, ri, l, rj, j);
      if (i === j) {
        if (!(s > 0)) return null;
        l[ri + i] = Math.sqrt(s);
      } else l[ri + j] = s / (l[rj + j] as number);
    }
  }
  return l;
}

/**
 * Y = L⁻ᵀ (upper-triangular; the R⁻¹ of R = Lᵀ) by rows: Y_jj = 1/L_jj and, for i > j,
 * Y_ji = −(Σ_{j≤k<i} L_ik·Y_jk) / L_ii, a dot product of two rows.
 */
export function inverseTransposeLower(l: Float64Array, r: number): Float64Array {
  const y = new Float64Array(r * r);
  for (let j = 0; j < r; j++) {
    const rj = j * r;
    y[rj + j] = 1 / (l[rj + j] as number);
    for (let i = j + 1; i < r; i++) y[rj + i] = -dotRows(l, i * r + j, y, rj + j, i - j) / (l[i * r + i] as number);
  }
  return y;
}

/** A⁻¹ = L⁻ᵀL⁻¹ = Y·Yᵀ with Y = L⁻ᵀ upper-triangular, so entry (i, j) is a dot of rows i and j from max(i, j) on. */
function inverseFromCholesky(l: Float64Array, r: number): Float64Array {
  const y = inverseTransposeLower(l, r);
  const out = new Float64Array(r * r);
  for (let i = 0; i < r; i++) {
    for (let j = i; j < r; j++) {
      const s = dotRows(y, i * r + j, y, j * r + j, r - j);
      out[i * r + j] = s;
      out[j * r + i] = s;
    }
  }
  return out;
}

function transposeSquare(a: Float64Array, r: number): Float64Array {
  const t = new Float64Array(r * r);
  for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) t[j * r + i] = a[i * r + j] as number;
  return t;
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
  const lower = choleskyLower(g, r);
  if (lower) {
    let ok = true;
    for (let i = 0; i < r; i++) if (!((lower[i * r + i] as number) > 1e-30)) ok = false;
    // R = Lᵀ, R⁻¹ = (L⁻¹)ᵀ
    if (ok) return { inv: inverseTransposeLower(lower, r), fwd: transposeSquare(lower, r) };
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
  const lower = choleskyLower(a, r);
  if (lower) {
    let maxDiag = 0;
    for (let i = 0; i < r; i++) maxDiag = Math.max(maxDiag, a[i * r + i] as number);
    let ok = maxDiag > 0;
    for (let i = 0; i < r && ok; i++) if (!((lower[i * r + i] as number) ** 2 > rel * maxDiag)) ok = false;
    if (ok) return inverseFromCholesky(lower, r);
  }
  return pinvSym(a, r, rel);
}

/** A⁻¹ through Cholesky whenever it succeeds, else the pseudo-inverse (eigenvalues below rel·λmax dropped). */
export function invPd(a: Float64Array, r: number, rel = 1e-10): Float64Array {
  const lower = choleskyLower(a, r);
  return lower ? inverseFromCholesky(lower, r) : pinvSym(a, r, rel);
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
  // A plain loop: TypedArray.from with a mapping function is ~40× slower in V8.
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) * (b[i] as number);
  return out;
}

/** x·c elementwise into a new array. */
export function scale<T extends Float32Array | Float64Array>(x: T, c: number): T {
  const out = new (x.constructor as new (n: number) => T)(x.length);
  for (let i = 0; i < x.length; i++) out[i] = (x[i] as number) * c;
  return out;
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
