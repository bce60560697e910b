import { strict as assert } from 'node:assert';
import * as nn from '../../../worker/onnx/index.js';
import { assertClose, cache, randn, rng, runGraph, toNumbers } from './helpers.js';
import * as ref from './reference.js';

interface OpCase {
  name: string;
  inputs: Record<string, number[]>;
  /** Inputs drawn from |N(0,1)|+0.5 instead of N(0,1) (logs, roots, divisors). */
  positive?: boolean;
  build: (x: Record<string, nn.Value>) => nn.Value;
  reference: (x: Record<string, ref.Nd>) => ref.Nd;
}

const sigm = (v: number): number => 1 / (1 + Math.exp(-v));
const idx = [2, 0, 2, 1, 3, 0];

const cases: OpCase[] = [
  { name: 'MatMul of batched 3-D by broadcast 2-D', inputs: { a: [2, 3, 4], b: [4, 5] }, build: (x) => nn.matmul(x.a!, x.b!), reference: (x) => ref.matmul(x.a!, x.b!) },
  { name: 'MatMul of a vector by a matrix', inputs: { a: [4], b: [4, 3] }, build: (x) => nn.matmul(x.a!, x.b!), reference: (x) => ref.matmul(x.a!, x.b!) },
  {
    name: 'Gemm with transposes, alpha, beta and a broadcast bias',
    inputs: { a: [4, 3], b: [5, 4], c: [5] },
    build: (x) => nn.gemm(x.a!, x.b!, x.c!, { transA: true, transB: true, alpha: 0.5, beta: 2 }),
    reference: (x) => ref.map((p, c) => 0.5 * p + 2 * c, ref.matmul(ref.transpose(x.a!, [1, 0]), ref.transpose(x.b!, [1, 0])), x.c!),
  },
  { name: 'Add broadcasts [2,3,1] with [4]', inputs: { a: [2, 3, 1], b: [4] }, build: (x) => nn.add(x.a!, x.b!), reference: (x) => ref.map((p, q) => p + q, x.a!, x.b!) },
  { name: 'Sub broadcasts a scalar operand', inputs: { a: [2, 3] }, build: (x) => nn.sub(1.5, x.a!), reference: (x) => ref.map((p) => 1.5 - p, x.a!) },
  { name: 'Mul broadcasts [3,1] with [1,4]', inputs: { a: [3, 1], b: [1, 4] }, build: (x) => nn.mul(x.a!, x.b!), reference: (x) => ref.map((p, q) => p * q, x.a!, x.b!) },
  { name: 'Div divides elementwise', positive: true, inputs: { a: [2, 3], b: [2, 3] }, build: (x) => nn.div(x.a!, x.b!), reference: (x) => ref.map((p, q) => p / q, x.a!, x.b!) },
  { name: 'Pow raises to a constant exponent', positive: true, inputs: { a: [2, 3] }, build: (x) => nn.pow(x.a!, 1.5), reference: (x) => ref.map((p) => p ** 1.5, x.a!) },
  { name: 'Neg negates', inputs: { a: [5] }, build: (x) => nn.neg(x.a!), reference: (x) => ref.map((p) => -p, x.a!) },
  { name: 'Sqrt takes square roots', positive: true, inputs: { a: [5] }, build: (x) => nn.sqrt(x.a!), reference: (x) => ref.map(Math.sqrt, x.a!) },
  { name: 'Exp exponentiates', inputs: { a: [5] }, build: (x) => nn.exp(x.a!), reference: (x) => ref.map(Math.exp, x.a!) },
  { name: 'Log takes logarithms', positive: true, inputs: { a: [5] }, build: (x) => nn.log(x.a!), reference: (x) => ref.map(Math.log, x.a!) },
  { name: 'Sigmoid squashes', inputs: { a: [6] }, build: (x) => nn.sigmoid(x.a!), reference: (x) => ref.map(sigm, x.a!) },
  { name: 'SiLU is x times sigmoid(x)', inputs: { a: [6] }, build: (x) => nn.silu(x.a!), reference: (x) => ref.map((v) => v * sigm(v), x.a!) },
  { name: 'Tanh squashes', inputs: { a: [6] }, build: (x) => nn.tanh(x.a!), reference: (x) => ref.map(Math.tanh, x.a!) },
  { name: 'Relu clips negatives', inputs: { a: [6] }, build: (x) => nn.relu(x.a!), reference: (x) => ref.map((v) => Math.max(v, 0), x.a!) },
  {
    name: 'Where picks by a Less condition',
    inputs: { a: [2, 3], b: [3] },
    build: (x) => nn.where(nn.less(x.a!, x.b!), x.a!, x.b!),
    reference: (x) => ref.map((p, q) => (p < q ? p : q), x.a!, x.b!),
  },
  {
    name: 'Equal and Cast give 1 where values match',
    inputs: { a: [4] },
    build: (x) => nn.cast(nn.equal(x.a!, x.a!), 'float32'),
    reference: (x) => ref.map(() => 1, x.a!),
  },
  { name: 'Reshape infers -1 and copies 0', inputs: { a: [2, 3, 4] }, build: (x) => nn.reshape(x.a!, [0, -1]), reference: (x) => ({ shape: [2, 12], data: x.a!.data }) },
  { name: 'Flatten folds the axes before and from `axis` into two', inputs: { a: [2, 3, 4] }, build: (x) => nn.flatten(x.a!, 2), reference: (x) => ({ shape: [6, 4], data: x.a!.data }) },
  { name: 'Transpose permutes axes', inputs: { a: [2, 3, 4] }, build: (x) => nn.transpose(x.a!, [2, 0, 1]), reference: (x) => ref.transpose(x.a!, [2, 0, 1]) },
  { name: 'Unsqueeze then Squeeze round-trips', inputs: { a: [2, 3] }, build: (x) => nn.squeeze(nn.unsqueeze(x.a!, [0, 3]), [0]), reference: (x) => ({ shape: [2, 3, 1], data: x.a!.data }) },
  {
    name: 'Gather looks rows up along axis 0',
    inputs: { a: [4, 3] },
    build: (x) => nn.gather(x.a!, x.a!.graph.constant('int64', [2, 3], idx)),
    reference: (x) => ref.gather(x.a!, idx, [2, 3], 0),
  },
  {
    name: 'Gather looks columns up along axis 1',
    inputs: { a: [2, 4, 3] },
    build: (x) => nn.gather(x.a!, x.a!.graph.constant('int32', [6], idx), 1),
    reference: (x) => ref.gather(x.a!, idx, [6], 1),
  },
  { name: 'Concat joins along axis 1', inputs: { a: [2, 1, 3], b: [2, 4, 3] }, build: (x) => nn.concat([x.a!, x.b!], 1), reference: (x) => ref.concat([x.a!, x.b!], 1) },
  {
    name: 'Slice clamps ends and takes negative starts and steps',
    inputs: { a: [4, 6] },
    build: (x) => nn.slice(x.a!, [-3, 5], [100, 0], [0, 1], [1, -2]),
    reference: (x) => ref.slice(x.a!, { 0: [1, 4, 1], 1: [5, 0, -2] }),
  },
  { name: 'Softmax normalizes the last axis', inputs: { a: [3, 5] }, build: (x) => nn.softmax(x.a!), reference: (x) => ref.softmax(x.a!, -1) },
  { name: 'LogSoftmax normalizes axis 0', inputs: { a: [3, 5] }, build: (x) => nn.logSoftmax(x.a!, 0), reference: (x) => ref.softmax(x.a!, 0, true) },
  { name: 'ReduceSum keeps dims over axes 0 and 2', inputs: { a: [2, 3, 4] }, build: (x) => nn.reduceSum(x.a!, [0, 2], { keepdims: true }), reference: (x) => ref.reduce(x.a!, [0, 2], true, 'sum') },
  { name: 'ReduceSum with no axes sums everything', inputs: { a: [2, 3] }, build: (x) => nn.reduceSum(x.a!), reference: (x) => ref.reduce(x.a!, [], false, 'sum') },
  { name: 'ReduceMean averages axis -1', inputs: { a: [2, 3, 4] }, build: (x) => nn.reduceMean(x.a!, [-1]), reference: (x) => ref.reduce(x.a!, [-1], false, 'mean') },
  { name: 'ReduceMax maximizes axis 1', inputs: { a: [2, 3, 4] }, build: (x) => nn.reduceMax(x.a!, [1]), reference: (x) => ref.reduce(x.a!, [1], false, 'max') },
  { name: 'Expand broadcasts to a larger shape', inputs: { a: [3, 1] }, build: (x) => nn.expand(x.a!, [2, 3, 4]), reference: (x) => ref.map((v) => v, x.a!, ref.nd([2, 3, 4], new Array(24).fill(0))) },
];

describe('graph builder ops against a float64 reference', () => {
  after(() => cache.dispose());

  for (const c of cases) {
    it(`${c.name}`, async () => {
      const random = rng(c.name.length * 7919);
      const g = new nn.Graph();
      const values: Record<string, nn.Value> = {};
      const refs: Record<string, ref.Nd> = {};
      const feeds: Record<string, nn.Tensor> = {};
      for (const [name, dims] of Object.entries(c.inputs)) {
        const n = dims.reduce((a, b) => a * b, 1);
        const data = randn(random, n).map((v) => (c.positive ? Math.abs(v) + 0.5 : v));
        values[name] = g.input(name, 'float32', dims);
        feeds[name] = nn.tensor('float32', dims, data);
        refs[name] = ref.nd(dims, Float32Array.from(data));
      }
      const y = c.build(values);
      g.output(y, 'y');
      const expected = c.reference(refs);
      assert.deepEqual(y.shape, expected.shape, 'inferred shape');
      const out = (await runGraph(g, feeds)).y as nn.Tensor;
      assert.deepEqual(out.dims, expected.shape, 'runtime shape');
      assertClose(toNumbers(out), expected.data, { atol: 1e-6, rtol: 1e-5, what: c.name });
    });
  }

  it('crossEntropy equals the mean negative log-probability of the targets', async () => {
    const random = rng(5);
    const g = new nn.Graph();
    const logits = randn(random, 12);
    const targets = [3, 0, 2];
    const loss = nn.crossEntropy(g.constant('float32', [3, 4], logits), g.constant('int64', [3], targets));
    g.output(loss, 'loss');
    const lsm = ref.softmax(ref.nd([3, 4], Float32Array.from(logits)), -1, true);
    const expected = -targets.reduce((s, t, i) => s + (lsm.data[i * 4 + t] as number), 0) / 3;
    const out = (await runGraph(g)).loss as nn.Tensor;
    assertClose(toNumbers(out), [expected], { atol: 1e-6, rtol: 1e-5, what: 'cross-entropy' });
  });

  it('causalMask lets each query see only itself and earlier keys', async () => {
    const g = new nn.Graph();
    const scores = g.input('s', 'float32', [3, 3]);
    g.output(nn.softmax(nn.add(scores, nn.causalMask(scores, 3))), 'p');
    const out = (await runGraph(g, { s: nn.tensor('float32', [3, 3], new Array(9).fill(0)) })).p as nn.Tensor;
    assertClose(toNumbers(out), [1, 0, 0, 0.5, 0.5, 0, 1 / 3, 1 / 3, 1 / 3], { atol: 1e-6, rtol: 0, what: 'masked softmax' });
  });

  it('a float16 round trip through Cast keeps values to half precision', async () => {
    const g = new nn.Graph();
    const x = g.input('x', 'float32', [3]);
    const half = nn.cast(x, 'float16');
    g.output(half, 'h');
    g.output(nn.cast(half, 'float32'), 'y');
    const out = await runGraph(g, { x: nn.tensor('float32', [3], [1, 0.1, -65504]) });
    assert.equal(out.h?.dtype, 'float16');
    assert.deepEqual(Array.from(out.h?.data as Uint16Array), [0x3c00, nn.toHalfBits(0.1), 0xfbff]);
    assertClose(toNumbers(out.y as nn.Tensor), [1, 0.0999755859375, -65504], { atol: 0, rtol: 1e-7, what: 'float16' });
  });

  it('a graph with symbolic batch and sequence dims runs at two different sizes', async () => {
    const g = new nn.Graph();
    const x = g.input('x', 'float32', ['B', 'T', 4]);
    const w = g.initializer('w', nn.tensor('float32', [4, 2], [1, 0, 0, 1, 1, 0, 0, 1]));
    const flat = nn.reshape(nn.matmul(x, w), [-1, 2]);
    assert.deepEqual(flat.shape, ['B*T', 2]);
    g.output(nn.reduceSum(flat, [1]), 'y');
    for (const [b, t] of [[1, 2], [3, 5]] as const) {
      const data = Array.from({ length: b * t * 4 }, (_, i) => i);
      const out = (await runGraph(g, { x: nn.tensor('float32', [b, t, 4], data) })).y as nn.Tensor;
      assert.deepEqual(out.dims, [b * t]);
      assert.deepEqual(toNumbers(out), Array.from({ length: b * t }, (_, r) => 4 * r * 4 + 6));
    }
  });

  it('arange counts 0…n−1 for a length read from a symbolic axis at run time', async () => {
    const g = new nn.Graph();
    const x = g.input('x', 'int64', ['B', 'S']);
    const n = nn.gather(nn.shapeOf(x), g.constant('int64', [], [1]), 0);
    const idx = nn.arange(n, 'S');
    assert.deepEqual(idx.shape, ['S']);
    g.output(idx, 'i');
    for (const s of [1, 5]) {
      const out = (await runGraph(g, { x: nn.tensor('int64', [2, s], new BigInt64Array(2 * s)) })).i as nn.Tensor;
      assert.deepEqual(toNumbers(out), Array.from({ length: s }, (_, i) => i));
    }
    assert.throws(() => nn.arange(g.constant('float32', [], [3]), 3), /Range node \S+: limit \S+ has dtype float32: expected one of int64/);
  });
});
