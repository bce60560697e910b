// Pruners on single linear layers: exact counts (per row for Wanda, per layer for magnitude and
// SparseGPT, every group for N:M), exact zeros, and the output-error ordering the papers report.
import { strict as assert } from 'node:assert';
import { matmulF64, transposeF64 } from '../../../../worker/onnx/linalg.js';
import { countZeros, parsePattern, selectNM, selectPerLayer, selectPerRow, selectRowsCount, type SparsityPattern } from '../../../../worker/train/sparse/pattern.js';
import { type InputStats, PRUNERS, pruneLinear, pruneLinearMasked, relativeOutputError } from '../../../../worker/train/sparse/pruners.js';
import { upperCholeskyOfInverse } from '../../../../worker/train/sparse/sparsegpt.js';
import { Rng } from '../../../../worker/train/rng.js';

const ROWS = 48;
const COLS = 160; // two SparseGPT blocks: 128 + 32

function gaussian(n: number, seed: number, scale = 1): Float64Array {
  const r = new Rng(seed);
  return Float64Array.from({ length: n }, () => r.normal() * scale);
}

/**
 * Calibration inputs shaped like an LLM's: a few outlier channels much larger than the rest, and
 * channels correlated through a low-rank common part. Both are what activation-aware pruning exploits.
 */
function llmLikeInputs(tokens: number, cols: number, seed: number): Float64Array {
  const rank = 8;
  const z = gaussian(tokens * rank, seed);
  const mix = gaussian(rank * cols, seed + 1, 0.5);
  const x = matmulF64(z, mix, tokens, rank, cols);
  const noise = gaussian(tokens * cols, seed + 2, 0.3);
  const r = new Rng(seed + 3);
  const scale = Float64Array.from({ length: cols }, () => Math.exp(r.normal()));
  for (const j of [3, 40, 77, 130]) scale[j] = 20;
  for (let t = 0; t < tokens; t++) for (let j = 0; j < cols; j++) x[t * cols + j] = ((x[t * cols + j] as number) + (noise[t * cols + j] as number)) * (scale[j] as number);
  return x;
}

function statsOf(x: Float64Array, tokens: number, cols: number): InputStats {
  const gram = matmulF64(transposeF64(x, tokens, cols), x, cols, tokens, cols);
  return { tokens, gram, sumSquares: Float64Array.from({ length: cols }, (_, j) => gram[j * cols + j] as number) };
}

const weight = Float32Array.from(gaussian(ROWS * COLS, 7, 0.1));
const stats = statsOf(llmLikeInputs(512, COLS, 11), 512, COLS);
const layer = { weight, rows: ROWS, cols: COLS, name: 'test.layer' };

function zerosPerRow(w: Float32Array, rows: number, cols: number): number[] {
  return Array.from({ length: rows }, (_, r) => countZeros(w.subarray(r * cols, (r + 1) * cols)));
}

function assertNM(w: Float32Array, rows: number, cols: number, n: number, m: number): void {
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += m) {
      const z = countZeros(w.subarray(r * cols + g, r * cols + g + m));
      assert.equal(z, m - n, `row ${r}, group at ${g}: ${z} zeros, expected ${m - n}`);
    }
  }
}

describe('sparsity patterns and exact selection', () => {
  it('reads unstructured and N:M patterns, N:M keeping N of every M', () => {
    assert.deepEqual(parsePattern('unstructured', 60), { kind: 'unstructured', percent: 60 });
    assert.deepEqual(parsePattern('2:4', 50), { kind: 'n:m', n: 2, m: 4 });
    assert.deepEqual(parsePattern('1:4', 75), { kind: 'n:m', n: 1, m: 4 });
    assert.throws(() => parsePattern('2:4', 60), /fixes the sparsity at 50%, but targetPercent is 60/);
    assert.throws(() => parsePattern('structured', 50), /structured .* is not implemented/);
    assert.throws(() => parsePattern('4:2', 50), /needs N < M/);
  });

  it('prunes exactly ⌊p·cols⌋ entries per row even when every score ties', () => {
    const keep = selectPerRow(new Float64Array(3 * 10).fill(1), 3, 10, 55);
    for (let r = 0; r < 3; r++) assert.deepEqual([...keep.subarray(r * 10, r * 10 + 10)], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
  });

  it('prunes exactly ⌊p·n⌋ entries of a layer and the lowest scores first', () => {
    const scores = Float64Array.from({ length: 40 }, (_, i) => (i * 7) % 40);
    const keep = selectPerLayer(scores, 4, 10, 30);
    assert.equal(keep.length - keep.reduce((s, x) => s + x, 0), 12);
    for (let i = 0; i < 40; i++) assert.equal(keep[i], (scores[i] as number) < 12 ? 0 : 1);
  });

  it('prunes M − N of every group of M inputs in every row', () => {
    const keep = selectNM(gaussian(4 * 16, 3), 4, 16, 1, 4);
    for (let g = 0; g < 64; g += 4) assert.equal(keep.subarray(g, g + 4).reduce((s, x) => s + x, 0), 1);
  });
});

describe('pruners on one linear layer', () => {
  for (const percent of [50, 60, 70]) {
    const pattern = parsePattern('unstructured', percent);
    it(`wanda at ${percent}% zeroes exactly ⌊p·cols⌋ weights in every row and leaves the rest untouched`, () => {
      const { weight: w } = pruneLinear('wanda', layer, pattern, stats);
      assert.deepEqual(zerosPerRow(w, ROWS, COLS), new Array<number>(ROWS).fill(Math.floor((percent * COLS) / 100)));
      for (let i = 0; i < w.length; i++) if (w[i] !== 0) assert.equal(w[i], weight[i]);
    });

    for (const kind of ['magnitude', 'sparsegpt'] as const) {
      it(`${kind} at ${percent}% zeroes exactly ⌊p·rows·cols⌋ weights of the layer`, () => {
        const { weight: w, zeros } = pruneLinear(kind, layer, pattern, stats);
        assert.equal(zeros, Math.floor((percent * ROWS * COLS) / 100));
        assert.equal(countZeros(w), zeros);
      });
    }
  }

  for (const [p, n, m] of [['2:4', 2, 4], ['4:8', 4, 8], ['1:4', 1, 4]] as const) {
    for (const kind of PRUNERS) {
      it(`${kind} with ${p} leaves exactly ${n} nonzero weights in every group of ${m} inputs`, () => {
        const pattern = parsePattern(p, (100 * (m - n)) / m);
        assertNM(pruneLinear(kind, layer, pattern, stats).weight, ROWS, COLS, n, m);
      });
    }
  }

  it('refuses an N:M pattern that does not tile the inputs, naming the layer', () => {
    assert.throws(() => pruneLinear('wanda', { ...layer, weight: weight.subarray(0, ROWS * 10), cols: 10 }, parsePattern('2:4', 50), stats), /test\.layer has 10 inputs, which 2:4 sparsity cannot tile/);
  });

  it('sparsegpt needs the Gram matrix and says so', () => {
    assert.throws(() => pruneLinear('sparsegpt', layer, parsePattern('unstructured', 50), { tokens: 1, sumSquares: stats.sumSquares }), /sparsegpt needs the Gram matrix/);
  });

  it('upper Cholesky factor of H⁻¹ satisfies UᵀU·H = I', () => {
    const n = 20;
    const a = gaussian(n * n, 5);
    const h = matmulF64(a, transposeF64(a, n, n), n, n, n);
    for (let i = 0; i < n; i++) h[i * n + i] = (h[i * n + i] as number) + 1;
    const u = upperCholeskyOfInverse(h, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(u[i * n + j], 0);
    const id = matmulF64(matmulF64(transposeF64(u, n, n), u, n, n, n), h, n, n, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.ok(Math.abs((id[i * n + j] as number) - (i === j ? 1 : 0)) < 1e-9, `(${i},${j}) = ${id[i * n + j]}`);
  });

  const cases: [string, SparsityPattern][] = [50, 60, 70].map((p) => [`${p}%`, parsePattern('unstructured', p)]);
  cases.push(['2:4', parsePattern('2:4', 50)]);
  for (const [label, pattern] of cases) {
    it(`orders the output error sparsegpt < wanda < magnitude at ${label} on LLM-like inputs`, () => {
      const errors = Object.fromEntries(PRUNERS.map((kind) => [kind, relativeOutputError(weight, pruneLinear(kind, layer, pattern, stats).weight, stats.gram as Float64Array, ROWS, COLS)]));
      const { sparsegpt, wanda, magnitude } = errors as Record<(typeof PRUNERS)[number], number>;
      assert.ok(sparsegpt < wanda && wanda < magnitude, `errors ${JSON.stringify(errors)}`);
      // Margins, not just an order: each step buys a real reduction on these inputs.
      assert.ok(sparsegpt < 0.8 * wanda, `sparsegpt ${sparsegpt} vs wanda ${wanda}`);
      assert.ok(wanda < 0.8 * magnitude, `wanda ${wanda} vs magnitude ${magnitude}`);
    });
  }
});

describe('pruning one layer to a count, with its selection (LoSA\'s per-layer rates)', () => {
  it('spreads a count over the rows at most one apart, the odd extra going where the next-lowest score is lowest', () => {
    const scores = Float64Array.from([1, 2, 3, 4, 0.5, 9, 8, 7, 5, 6, 0.1, 9]);
    // 5 of 12 over 3 rows of 4: one each, then the extra two to rows 2 (next-lowest 5) and 0 (2), not row 1 (7).
    const keep = selectRowsCount(scores, 3, 4, 5);
    assert.deepEqual([...keep], [0, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1]);
  });

  for (const kind of PRUNERS) {
    it(`${kind}: exactly the count asked, its selection the zeros, and the percent form's selection when the counts agree`, () => {
      const zeros = 2 * ROWS + Math.floor((57 * ROWS * COLS) / 100); // not a whole number per row
      const r = pruneLinearMasked(kind, layer, { kind: 'count', zeros }, stats);
      assert.equal(r.keep.length - r.keep.reduce((a, k) => a + k, 0), zeros);
      for (let i = 0; i < r.weight.length; i++) if (r.keep[i] === 0) assert.equal(r.weight[i], 0);
      assert.equal(r.zeros, zeros);
      if (kind === 'wanda') {
        const perRow = zerosPerRow(r.weight, ROWS, COLS);
        assert.ok(Math.max(...perRow) - Math.min(...perRow) <= 1, `${perRow}`);
      }
      // At 50 % the count form selects what the percent form does.
      const half = pruneLinearMasked(kind, layer, { kind: 'count', zeros: (ROWS * COLS) / 2 }, stats);
      assert.deepEqual([...half.weight], [...pruneLinear(kind, layer, parsePattern('unstructured', 50), stats).weight]);
    });
  }

  it('keeps an entry that was already zero when the count leaves room, so its adapter can grow it back', () => {
    const w = Float32Array.from(weight);
    for (let j = 0; j < 10; j++) w[j] = 0; // row 0 pruned harder by an earlier round
    const r = pruneLinearMasked('wanda', { ...layer, weight: w }, { kind: 'count', zeros: 4 * ROWS }, stats);
    assert.deepEqual([...r.keep.subarray(0, 10)], [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    assert.equal(r.zeros, 4 * ROWS + 6, 'six kept entries are zero by value');
  });

  it('an N:M target prunes to the pattern and returns its selection', () => {
    const r = pruneLinearMasked('sparsegpt', layer, { kind: 'n:m', n: 2, m: 4 }, stats);
    assertNM(r.weight, ROWS, COLS, 2, 4);
    for (let g = 0; g < r.keep.length; g += 4) assert.equal(r.keep.subarray(g, g + 4).reduce((a, k) => a + k, 0), 2);
  });
});
