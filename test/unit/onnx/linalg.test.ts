import { strict as assert } from 'node:assert';
import { cholesky, matmulF64, qr, symmetricEigen, transposeF64 } from '../../../worker/onnx/linalg.js';
import { assertClose, randn, rng } from './helpers.js';

const eye = (n: number): Float64Array => Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));

function randomMatrix(seed: number, m: number, n: number): Float64Array {
  return Float64Array.from(randn(rng(seed), m * n));
}

/** A Aᵀ + n·I: symmetric positive definite. */
function spd(seed: number, n: number): Float64Array {
  const a = randomMatrix(seed, n, n);
  const s = matmulF64(a, transposeF64(a, n, n), n, n, n);
  for (let i = 0; i < n; i++) s[i * n + i] = (s[i * n + i] as number) + n;
  return s;
}

const tight = (what: string): { atol: number; rtol: number; what: string } => ({ atol: 1e-10, rtol: 1e-10, what });

describe('small dense linear algebra in float64', () => {
  for (const n of [1, 4, 16, 33]) {
    it(`Cholesky of a random ${n}×${n} SPD matrix reconstructs it as L·Lᵀ with L lower-triangular`, () => {
      const a = spd(n, n);
      const l = cholesky(a, n);
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) assert.equal(l[i * n + j], 0);
      assertClose(matmulF64(l, transposeF64(l, n, n), n, n, n), a, tight('L·Lᵀ'));
    });
  }

  it('Cholesky of an indefinite matrix names the pivot and suggests a remedy', () => {
    assert.throws(() => cholesky(Float64Array.from([1, 2, 2, 1]), 2), /not positive definite \(pivot 1 is -3\); add a ridge/);
  });

  for (const [m, n] of [[5, 5], [12, 4], [40, 16], [3, 1]] as const) {
    it(`Householder QR of a random ${m}×${n} matrix gives A = Q·R, QᵀQ = I and upper-triangular R`, () => {
      const a = randomMatrix(m * 100 + n, m, n);
      const { q, r } = qr(a, m, n);
      assertClose(matmulF64(q, r, m, n, n), a, tight('Q·R'));
      assertClose(matmulF64(transposeF64(q, m, n), q, n, m, n), eye(n), tight('QᵀQ'));
      for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(r[i * n + j], 0);
    });
  }

  it('QR of a rank-deficient matrix still reconstructs it', () => {
    const col = [1, 2, 3, 4];
    const a = Float64Array.from({ length: 8 }, (_, i) => col[i >> 1] as number); // two equal columns
    const { q, r } = qr(a, 4, 2);
    assertClose(matmulF64(q, r, 4, 2, 2), a, tight('Q·R'));
  });

  for (const n of [1, 3, 8, 32]) {
    it(`Jacobi eigendecomposition of a random symmetric ${n}×${n} matrix gives A = VΛVᵀ, VᵀV = I, values descending`, () => {
      const b = randomMatrix(7 * n, n, n);
      const a = matmulF64(b, transposeF64(b, n, n), n, n, n);
      for (let i = 0; i < n * n; i++) a[i] = (a[i] as number) - (i % (n + 1) === 0 ? n / 2 : 0); // make it indefinite
      const { values, vectors } = symmetricEigen(a, n);
      const vl = Float64Array.from(vectors, (x, i) => x * (values[i % n] as number));
      assertClose(matmulF64(vl, transposeF64(vectors, n, n), n, n, n), a, { atol: 1e-9, rtol: 1e-9, what: 'VΛVᵀ' });
      assertClose(matmulF64(transposeF64(vectors, n, n), vectors, n, n, n), eye(n), tight('VᵀV'));
      for (let i = 1; i < n; i++) assert.ok((values[i - 1] as number) >= (values[i] as number));
    });
  }

  it('eigenvalues of a known matrix are exact', () => {
    const { values } = symmetricEigen(Float64Array.from([2, 1, 0, 1, 2, 0, 0, 0, 5]), 3);
    assertClose(values, [5, 3, 1], tight('eigenvalues'));
  });

  it('an asymmetric matrix is refused with the offending entry', () => {
    assert.throws(() => symmetricEigen(Float64Array.from([1, 2, 3, 4]), 2), /not symmetric at \(1,0\): 3 vs 2/);
  });
});
