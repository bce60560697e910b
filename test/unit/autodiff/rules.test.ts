import { strict as assert } from 'node:assert';
import { gradients, GRADIENT_RULES } from '../../../worker/autodiff/index.js';
import * as nn from '../../../worker/onnx/index.js';
import { cache } from '../onnx/helpers.js';
import { checkGradients, type GradCase } from './gradcheck.js';

const ids = (g: nn.Graph, dims: number[], values: number[], dtype: 'int64' | 'int32' = 'int64'): nn.Value => g.constant(dtype, dims, values);

const cases: GradCase[] = [
  { name: 'Identity passes the gradient through', inputs: { a: [3] }, build: ({ a }) => nn.identity(a!) },
  { name: 'Add sums the gradient back over broadcast axes', inputs: { a: [2, 3, 4], b: [3, 1] }, build: ({ a, b }) => nn.add(a!, b!) },
  { name: 'Sub negates the gradient of the subtrahend', inputs: { a: [4], b: [2, 4] }, build: ({ a, b }) => nn.sub(a!, b!) },
  { name: 'Mul scales each gradient by the other factor', inputs: { a: [2, 1, 3], b: [4, 1] }, build: ({ a, b }) => nn.mul(a!, b!) },
  { name: 'Div differentiates numerator and denominator', inputs: { a: [2, 3], b: [3] }, positive: ['b'], build: ({ a, b }) => nn.div(a!, b!) },
  { name: 'Pow with a constant exponent', inputs: { a: [5] }, positive: ['a'], build: ({ a }) => nn.pow(a!, 2.5) },
  { name: 'Pow differentiates a tensor exponent too', inputs: { a: [2, 3], e: [3] }, positive: ['a'], build: ({ a, e }) => nn.pow(a!, e!) },
  { name: 'Neg negates the gradient', inputs: { a: [4] }, build: ({ a }) => nn.neg(a!) },
  { name: 'Sqrt divides by twice the root', inputs: { a: [4] }, positive: ['a'], build: ({ a }) => nn.sqrt(a!) },
  { name: 'Exp scales by its output', inputs: { a: [4] }, build: ({ a }) => nn.exp(a!) },
  { name: 'Log divides by its input', inputs: { a: [4] }, positive: ['a'], build: ({ a }) => nn.log(a!) },
  { name: 'Sigmoid scales by y(1-y)', inputs: { a: [6] }, build: ({ a }) => nn.sigmoid(a!) },
  { name: 'SiLU composes Mul and Sigmoid', inputs: { a: [6] }, build: ({ a }) => nn.silu(a!) },
  { name: 'Tanh scales by 1-y²', inputs: { a: [6] }, build: ({ a }) => nn.tanh(a!) },
  { name: 'Relu passes the gradient where the input is positive', inputs: { a: [8] }, build: ({ a }) => nn.relu(a!) },
  {
    name: 'Where routes the gradient to the chosen branch and sums broadcasts',
    inputs: { a: [2, 3], b: [3], c: [2, 3] },
    build: ({ a, b, c }) => nn.where(nn.greater(c!, 0), a!, b!),
  },
  // Through float32 the loss is rounded to ~1e-7, so a wide step keeps the difference meaningful.
  { name: 'Cast float64 to float32 and back passes the gradient through', inputs: { a: [4] }, build: ({ a }) => nn.cast(nn.cast(a!, 'float32'), 'float64'), step: 1e-2, tol: 1e-5 },
  { name: 'MatMul of batched operands with broadcast batch dims', inputs: { a: [2, 1, 3, 4], b: [3, 4, 2] }, build: ({ a, b }) => nn.matmul(a!, b!) },
  { name: 'MatMul of a batch by a shared matrix', inputs: { a: [2, 3, 4], b: [4, 5] }, build: ({ a, b }) => nn.matmul(a!, b!) },
  { name: 'MatMul of a rank-4 batch by a shared matrix (its gradient sums over every leading index)', inputs: { a: [2, 2, 3, 4], b: [4, 5] }, build: ({ a, b }) => nn.matmul(a!, b!) },
  { name: 'MatMul of a vector by a batched matrix', inputs: { a: [4], b: [2, 4, 3] }, build: ({ a, b }) => nn.matmul(a!, b!) },
  { name: 'MatMul of a matrix by a vector', inputs: { a: [3, 4], b: [4] }, build: ({ a, b }) => nn.matmul(a!, b!) },
  { name: 'MatMul of two vectors', inputs: { a: [4], b: [4] }, build: ({ a, b }) => nn.matmul(a!, b!) },
  { name: 'Gemm without transposes and a row bias', inputs: { a: [3, 4], b: [4, 2], c: [2] }, build: ({ a, b, c }) => nn.gemm(a!, b!, c!, { alpha: 0.7, beta: 1.3 }) },
  { name: 'Gemm with transposed A', inputs: { a: [4, 3], b: [4, 2], c: [3, 1] }, build: ({ a, b, c }) => nn.gemm(a!, b!, c!, { transA: true }) },
  { name: 'Gemm with transposed B', inputs: { a: [3, 4], b: [2, 4] }, build: ({ a, b }) => nn.gemm(a!, b!, undefined, { transB: true, alpha: 2 }) },
  { name: 'Gemm with both transposed', inputs: { a: [4, 3], b: [2, 4], c: [3, 2] }, build: ({ a, b, c }) => nn.gemm(a!, b!, c!, { transA: true, transB: true, beta: 0.5 }) },
  { name: 'Reshape reshapes the gradient back', inputs: { a: [2, 3, 4] }, build: ({ a }) => nn.reshape(a!, [4, -1]) },
  { name: 'Flatten reshapes the gradient back', inputs: { a: [2, 3, 4] }, build: ({ a }) => nn.flatten(a!, 1) },
  { name: 'Transpose applies the inverse permutation', inputs: { a: [2, 3, 4] }, build: ({ a }) => nn.transpose(a!, [1, 2, 0]) },
  { name: 'Unsqueeze and Squeeze undo each other', inputs: { a: [3, 1, 2] }, build: ({ a }) => nn.unsqueeze(nn.squeeze(a!, [1]), [0]) },
  { name: 'Concat splits the gradient among its inputs', inputs: { a: [2, 1], b: [2, 3], c: [2, 2] }, build: ({ a, b, c }) => nn.concat([a!, b!, c!], -1) },
  { name: 'Slice pads the gradient with zeros', inputs: { a: [4, 5, 2] }, build: ({ a }) => nn.slice(a!, [1, -4], [3, 100], [0, 1]) },
  { name: 'Expand sums the gradient over expanded axes', inputs: { a: [3, 1] }, build: ({ a }) => nn.expand(a!, [2, 3, 4]) },
  { name: 'Gather scatter-adds into repeated rows', inputs: { a: [5, 3] }, build: ({ a }) => nn.gather(a!, ids(a!.graph, [2, 3], [4, 0, 4, 1, 4, 0])) },
  { name: 'Gather along axis 1 with int32 indices', inputs: { a: [2, 4, 3] }, build: ({ a }) => nn.gather(a!, ids(a!.graph, [2, 2], [3, 3, 0, 2], 'int32'), 1) },
  { name: 'ReduceSum without keepdims over two axes', inputs: { a: [2, 3, 4] }, build: ({ a }) => nn.reduceSum(a!, [0, 2]) },
  { name: 'ReduceSum with keepdims', inputs: { a: [2, 3, 4] }, build: ({ a }) => nn.reduceSum(a!, [-1], { keepdims: true }) },
  { name: 'ReduceSum over all axes', inputs: { a: [2, 3] }, build: ({ a }) => nn.reduceSum(a!) },
  { name: 'ReduceMean divides by the reduced count', inputs: { a: [2, 3, 4] }, build: ({ a }) => nn.reduceMean(a!, [1]) },
  { name: 'ReduceMax sends the gradient to the maximum', inputs: { a: [3, 4] }, build: ({ a }) => nn.reduceMax(a!, [1], { keepdims: true }) },
  { name: 'Softmax over the last axis', inputs: { a: [2, 5] }, build: ({ a }) => nn.softmax(a!) },
  { name: 'Softmax over a middle axis', inputs: { a: [2, 3, 2] }, build: ({ a }) => nn.softmax(a!, 1) },
  { name: 'LogSoftmax over the last axis', inputs: { a: [3, 4] }, build: ({ a }) => nn.logSoftmax(a!) },
  { name: 'crossEntropy of logits against integer targets', inputs: { a: [3, 5] }, build: ({ a }) => nn.crossEntropy(a!, ids(a!.graph, [3], [4, 0, 2])) },
];

describe('gradient rules against central finite differences in float64', () => {
  const covered = new Set<string>();
  after(() => cache.dispose());

  cases.forEach((c, i) => {
    it(c.name, async () => {
      const report = await checkGradients(c, 1000 + i);
      report.opTypes.forEach((op) => covered.add(op));
      assert.ok(report.checked > 0);
    });
  });

  it('every rule in the table is exercised by a finite-difference case above', () => {
    const missing = Object.keys(GRADIENT_RULES).filter((op) => !covered.has(op));
    assert.deepEqual(missing, []);
  });
});

describe('gradients()', () => {
  it('names the op when no gradient rule exists', () => {
    const g = new nn.Graph();
    const x = g.input('x', 'float32', [2]);
    const loss = nn.reduceSum(nn.pad(x, [1, 1]));
    assert.throws(() => gradients(loss, [x]), /no gradient rule for op Pad \(node Pad_\d+\); ops with rules: Add, Cast/);
  });

  it('refuses a loss that is not a scalar', () => {
    const g = new nn.Graph();
    const x = g.input('x', 'float32', [2]);
    assert.throws(() => gradients(nn.exp(x), [x]), /loss Exp_\d+: float32\[2\] must be a scalar/);
  });

  it('refuses an initializer that is not marked trainable, and names the remedy', () => {
    const g = new nn.Graph();
    const w = g.initializer('w', nn.tensor('float32', [2], [1, 2]));
    assert.throws(() => gradients(nn.reduceSum(w), [w]), /parameter w is a initializer: gradients are taken for graph inputs or initializers marked trainable/);
  });

  it('gives an explicit zero gradient to a parameter the loss does not reach', async () => {
    const g = new nn.Graph();
    const x = g.input('x', 'float32', [2]);
    const unused = g.input('u', 'float32', [3]);
    const [, gu] = gradients(nn.reduceSum(nn.mul(x, x)), [x, unused]);
    g.output(gu as nn.Value, 'gu');
    const s = await cache.forGraph(g);
    const out = await s.run({ x: nn.tensor('float32', [2], [1, 2]), u: nn.tensor('float32', [3], [1, 2, 3]) });
    assert.deepEqual(Array.from(out.gu?.data as Float32Array), [0, 0, 0]);
  });
});
