// SpaLLM's sketch of one linear layer: every weight is its (row, group) table's value, the
// Hessian-weighted tables with the GPTQ sweep beat plain k-means, which beats round-to-nearest,
// in the layer's output error on the calibration inputs (the paper's ordering), and the flat
// gather indices reproduce the sketched weight.
import { strict as assert } from 'node:assert';
import { matmulF64, transposeF64 } from '../../../../worker/onnx/linalg.js';
import { Rng } from '../../../../worker/train/rng.js';
import { relativeOutputError as relativeSketchError } from '../../../../worker/train/sparse/pruners.js';
import { lloyd1d, sketchIndices, sketchLinear, sketchParameters, sketchPlain, sketchWeight } from '../../../../worker/train/sparse/spallm-sketch.js';

const ROWS = 32;
const COLS = 256;

function gaussian(n: number, seed: number, scale = 1): Float64Array {
  const r = new Rng(seed);
  return Float64Array.from({ length: n }, () => r.normal() * scale);
}

/** Inputs with outlier channels and a low-rank common part, as an LLM's linear inputs have. */
function gramOfLlmLikeInputs(tokens: number, cols: number, seed: number): Float64Array {
  const rank = 6;
  const x = matmulF64(gaussian(tokens * rank, seed), gaussian(rank * cols, seed + 1, 0.5), tokens, rank, cols);
  const noise = gaussian(tokens * cols, seed + 2, 0.3);
  const r = new Rng(seed + 3);
  const scale = Float64Array.from({ length: cols }, () => Math.exp(r.normal()));
  for (const j of [5, 50, 90, 200]) scale[j] = 15;
  for (let t = 0; t < tokens; t++) for (let j = 0; j < cols; j++) x[t * cols + j] = ((x[t * cols + j] as number) + (noise[t * cols + j] as number)) * (scale[j] as number);
  return matmulF64(transposeF64(x, tokens, cols), x, cols, tokens, cols);
}

const weight = Float32Array.from(gaussian(ROWS * COLS, 21, 0.1));
const gram = gramOfLlmLikeInputs(384, COLS, 31);
const layer = { weight, rows: ROWS, cols: COLS, name: 'model.layers.0.mlp.up_proj' };

describe('SpaLLM sketch of a linear layer', () => {
  it('gives every weight a value of its own (row, group) table, and the gather indices reproduce it', () => {
    const s = sketchLinear({ ...layer, gram, bits: 3, groupsPerRow: 4 });
    assert.equal(s.lut.length, ROWS * 4 * 8);
    assert.equal(sketchParameters(s), ROWS * 4 * 8);
    const w = sketchWeight(s);
    for (let i = 0; i < ROWS; i++) {
      for (let j = 0; j < COLS; j++) {
        const g = Math.floor(j / s.groupSize);
        const table = s.lut.subarray((i * 4 + g) * 8, (i * 4 + g + 1) * 8);
        assert.ok(table.includes(w[i * COLS + j] as number), `row ${i} column ${j}: ${w[i * COLS + j]} is not in its group's table`);
      }
    }
    const idx = sketchIndices(s);
    idx.forEach((x, t) => assert.equal(s.lut[Number(x)], w[t]));
  });

  for (const bits of [2, 3, 4]) {
    it(`${bits} bits: the Hessian-weighted sketch with the GPTQ sweep has a lower output error than plain k-means, and k-means than round-to-nearest`, () => {
      const err = (w: Float32Array): number => relativeSketchError(weight, w, gram, ROWS, COLS);
      const gptq = err(sketchWeight(sketchLinear({ ...layer, gram, bits, groupsPerRow: 2 })));
      const kmeans = err(sketchWeight(sketchPlain({ ...layer, bits, groupsPerRow: 2 }, 'kmeans')));
      const rtn = err(sketchWeight(sketchPlain({ ...layer, bits, groupsPerRow: 2 }, 'rtn')));
      assert.ok(gptq < kmeans && kmeans < rtn, `errors: sketch ${gptq.toFixed(5)}, k-means ${kmeans.toFixed(5)}, round-to-nearest ${rtn.toFixed(5)}`);
    });
  }

  it('more groups per row and more bits lower the error', () => {
    const err = (bits: number, groupsPerRow: number): number => relativeSketchError(weight, sketchWeight(sketchLinear({ ...layer, gram, bits, groupsPerRow })), gram, ROWS, COLS);
    assert.ok(err(3, 8) < err(3, 1), `3 bits: 8 groups ${err(3, 8)}, 1 group ${err(3, 1)}`);
    assert.ok(err(4, 4) < err(2, 4), `4 groups: 4 bits ${err(4, 4)}, 2 bits ${err(2, 4)}`);
  });

  it('weighted Lloyd puts more centers where the weight is, and each center is the weighted mean of its points', () => {
    const values = [0, 0.1, 0.2, 10, 10.1, 10.2];
    const heavyLeft = lloyd1d(values, [100, 100, 100, 1, 1, 1], 4, 50);
    const heavyRight = lloyd1d(values, [1, 1, 1, 100, 100, 100], 4, 50);
    assert.equal([...heavyLeft].filter((c) => c < 5).length >= 2, true, `centers ${heavyLeft}`);
    assert.equal([...heavyRight].filter((c) => c > 5).length >= 2, true, `centers ${heavyRight}`);
    const two = lloyd1d([1, 2, 9, 11], [1, 3, 1, 1], 2, 50);
    assert.deepEqual([...two].map((c) => Math.round(c * 1000) / 1000), [1.75, 10]);
  });

  it('rejects bits outside [1, 8] and more groups than columns, naming the layer', () => {
    assert.throws(() => sketchLinear({ ...layer, gram, bits: 9, groupsPerRow: 4 }), /up_proj: bits must be an integer in \[1, 8\]/);
    assert.throws(() => sketchLinear({ ...layer, gram, bits: 4, groupsPerRow: COLS + 1 }), /up_proj: groupsPerRow must be an integer in \[1, 256\]/);
  });
});
