// Small dense factorizations ONNX lacks, for r×r matrices (r ≤ a few hundred): Cholesky,
// Householder QR and the symmetric eigendecomposition by cyclic Jacobi. Row-major Float64Array.
// Anything of size d×r or larger belongs in a graph, not here.

/** C = A·B with A m×k, B k×n. */
export function matmulF64(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  checkSize('matmulF64 A', a, m * k);
  checkSize('matmulF64 B', b, k * n);
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p] as number;
      if (aip === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] = (c[i * n + j] as number) + aip * (b[p * n + j] as number);
    }
  }
  return c;
}

export function transposeF64(a: Float64Array, m: number, n: number): Float64Array {
  checkSize('transposeF64', a, m * n);
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j] as number;
  return t;
}

/** Lower-triangular L with A = L·Lᵀ; throws for a matrix that is not symmetric positive definite. */
export function cholesky(a: Float64Array, n: number): Float64Array {
  checkSize('cholesky', a, n * n);
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j] as number;
    for (let k = 0; k < j; k++) d -= (l[j * n + k] as number) ** 2;
    if (!(d > 0)) throw new Error(`cholesky: matrix is not positive definite (pivot ${j} is ${d}); add a ridge λI or use symmetricEigen`);
    const ljj = Math.sqrt(d);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j] as number;
      for (let k = 0; k < j; k++) s -= (l[i * n + k] as number) * (l[j * n + k] as number);
      l[i * n + j] = s / ljj;
    }
  }
  return l;
}

/** Thin QR of an m×n matrix (m ≥ n) by Householder reflections: Q is m×n with orthonormal columns, R is n×n upper-triangular. */
export function qr(a: Float64Array, m: number, n: number): { q: Float64Array; r: Float64Array } {
  checkSize('qr', a, m * n);
  if (m < n) throw new Error(`qr: needs m ≥ n, got ${m}×${n}; factor the transpose instead`);
  const w = Float64Array.from(a);
  const vs: Float64Array[] = [];
  for (let k = 0; k < n; k++) {
    const v = new Float64Array(m);
    let norm = 0;
    for (let i = k; i < m; i++) norm += (w[i * n + k] as number) ** 2;
    norm = Math.sqrt(norm);
    const x0 = w[k * n + k] as number;
    // Reflect onto -sign(x0)·‖x‖·e₁ so the subtraction below never cancels.
    const alpha = x0 >= 0 ? -norm : norm;
    for (let i = k; i < m; i++) v[i] = w[i * n + k] as number;
    v[k] = x0 - alpha;
    let vnorm = 0;
    for (let i = k; i < m; i++) vnorm += (v[i] as number) ** 2;
    vs.push(v);
    if (vnorm === 0) continue;
    for (let j = k; j < n; j++) {
      let dot = 0;
      for (let i = k; i < m; i++) dot += (v[i] as number) * (w[i * n + j] as number);
      const f = (2 * dot) / vnorm;
      for (let i = k; i < m; i++) w[i * n + j] = (w[i * n + j] as number) - f * (v[i] as number);
    }
  }
  const r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) r[i * n + j] = w[i * n + j] as number;
  // Q = H₀·H₁·…·H_{n-1} applied to the first n columns of the identity, last reflection first.
  const q = new Float64Array(m * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  for (let k = n - 1; k >= 0; k--) {
    const v = vs[k] as Float64Array;
    let vnorm = 0;
    for (let i = k; i < m; i++) vnorm += (v[i] as number) ** 2;
    if (vnorm === 0) continue;
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let i = k; i < m; i++) dot += (v[i] as number) * (q[i * n + j] as number);
      const f = (2 * dot) / vnorm;
      for (let i = k; i < m; i++) q[i * n + j] = (q[i * n + j] as number) - f * (v[i] as number);
    }
  }
  return { q, r };
}

export interface EigenOptions {
  /** Stop when the off-diagonal Frobenius norm falls below tol·‖A‖_F. Default 1e-14. */
  tol?: number;
  /** Upper bound on full sweeps; Jacobi converges quadratically, 30 is generous. Default 50. */
  maxSweeps?: number;
}

/**
 * A = V·diag(values)·Vᵀ for symmetric A (n×n). Values descend; column i of V (row-major n×n)
 * is the eigenvector of values[i].
 */
export function symmetricEigen(a: Float64Array, n: number, opts: EigenOptions = {}): { values: Float64Array; vectors: Float64Array } {
  checkSize('symmetricEigen', a, n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const x = a[i * n + j] as number;
      const y = a[j * n + i] as number;
      if (Math.abs(x - y) > 1e-9 * (Math.abs(x) + Math.abs(y) + 1)) throw new Error(`symmetricEigen: matrix is not symmetric at (${i},${j}): ${x} vs ${y}`);
    }
  }
  const tol = opts.tol ?? 1e-14;
  const maxSweeps = opts.maxSweeps ?? 50;
  const m = Float64Array.from(a);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  let total = 0;
  for (const x of m) total += x * x;
  const threshold = tol * Math.sqrt(total);
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) off += 2 * (m[i * n + j] as number) ** 2;
    if (Math.sqrt(off) <= threshold) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = m[p * n + q] as number;
        if (apq === 0) continue;
        // The rotation angle that zeroes m[p][q] (Golub & Van Loan, Algorithm 8.5.1).
        const theta = ((m[q * n + q] as number) - (m[p * n + p] as number)) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const mkp = m[k * n + p] as number;
          const mkq = m[k * n + q] as number;
          m[k * n + p] = c * mkp - s * mkq;
          m[k * n + q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < n; k++) {
          const mpk = m[p * n + k] as number;
          const mqk = m[q * n + k] as number;
          m[p * n + k] = c * mpk - s * mqk;
          m[q * n + k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p] as number;
          const vkq = v[k * n + q] as number;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => (m[j * n + j] as number) - (m[i * n + i] as number));
  const values = Float64Array.from(order, (i) => m[i * n + i] as number);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    for (let k = 0; k < n; k++) vectors[k * n + dst] = v[k * n + src] as number;
  });
  return { values, vectors };
}

function checkSize(what: string, a: Float64Array, expected: number): void {
  if (a.length !== expected) throw new Error(`${what}: expected ${expected} elements, got ${a.length}`);
}
