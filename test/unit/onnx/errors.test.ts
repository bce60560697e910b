import { strict as assert } from 'node:assert';
import * as nn from '../../../worker/onnx/index.js';

function graphWith(...specs: [string, nn.DType, nn.Shape][]): nn.Value[] {
  const g = new nn.Graph();
  return specs.map(([name, dtype, shape]) => g.input(name, dtype, shape));
}

describe('build-time shape and dtype errors', () => {
  const cases: { name: string; build: () => unknown; message: RegExp }[] = [
    {
      name: 'MatMul with mismatched inner dimensions names the op, node and both shapes',
      build: () => {
        const [a, b] = graphWith(['a', 'float32', [2, 3]], ['b', 'float32', [4, 5]]);
        return nn.matmul(a!, b!);
      },
      message: /^MatMul node MatMul_\d+: inner dimensions differ: A\[2,3\] × B\[4,5\] \(3 vs 4\)$/,
    },
    {
      name: 'Add of shapes that do not broadcast names the axis',
      build: () => {
        const [a, b] = graphWith(['a', 'float32', [2, 3]], ['b', 'float32', [4]]);
        return nn.add(a!, b!);
      },
      message: /^Add node Add_\d+: shapes \[2,3\] and \[4\] do not broadcast \(axis 1: 3 vs 4\)$/,
    },
    {
      name: 'Add of float32 and float64 lists both dtypes',
      build: () => {
        const [a, b] = graphWith(['a', 'float32', [2]], ['b', 'float64', [2]]);
        return nn.add(a!, b!);
      },
      message: /^Add node Add_\d+: dtypes differ: a is float32, b is float64$/,
    },
    {
      name: 'Softmax of an integer tensor lists the float dtypes',
      build: () => nn.softmax(graphWith(['a', 'int64', [3]])[0]!),
      message: /Softmax node Softmax_\d+: input a has dtype int64: expected one of float32, float16, float64/,
    },
    {
      name: 'Reshape to a different element count shows both shapes',
      build: () => nn.reshape(graphWith(['a', 'float32', [2, 3]])[0]!, [4, 2]),
      message: /Reshape node Reshape_\d+: cannot reshape \[2,3\] to \[4,2\]: element counts differ \(6 vs 8\)/,
    },
    {
      name: 'Transpose with a bad permutation shows the value',
      build: () => nn.transpose(graphWith(['a', 'float32', [2, 3]])[0]!, [0, 0]),
      message: /Transpose node Transpose_\d+: perm \[0,0\] is not a permutation of 0..1 for a: float32\[2,3\]/,
    },
    {
      name: 'an axis out of range gives the valid range',
      build: () => nn.reduceSum(graphWith(['a', 'float32', [2, 3]])[0]!, [2]),
      message: /ReduceSum node ReduceSum_\d+: axis 2 out of range for rank 2: expected -2..1/,
    },
    {
      name: 'Squeeze of an axis that is not 1',
      build: () => nn.squeeze(graphWith(['a', 'float32', [2, 3]])[0]!, [1]),
      message: /Squeeze node Squeeze_\d+: axis 1 of a: float32\[2,3\] has size 3, not 1/,
    },
    {
      name: 'Gather with float indices lists the index dtypes',
      build: () => {
        const [a, i] = graphWith(['a', 'float32', [4, 2]], ['i', 'float32', [3]]);
        return nn.gather(a!, i!);
      },
      message: /Gather node Gather_\d+: indices i has dtype float32: expected one of int64, int32/,
    },
    {
      name: 'Concat of mismatched shapes names the odd input',
      build: () => {
        const [a, b] = graphWith(['a', 'float32', [2, 3]], ['b', 'float32', [3, 3]]);
        return nn.concat([a!, b!], 1);
      },
      message: /Concat node Concat_\d+: b: float32\[3,3\] does not match a: float32\[2,3\] outside axis 1/,
    },
    {
      name: 'Where with a float condition',
      build: () => {
        const [c, a] = graphWith(['c', 'float32', [2]], ['a', 'float32', [2]]);
        return nn.where(c!, a!, a!);
      },
      message: /Where node Where_\d+: condition c has dtype float32: expected one of bool/,
    },
    {
      name: 'a symbolic dim against a different static size is not guessed',
      build: () => {
        const [a, b] = graphWith(['a', 'float32', ['B', 3]], ['b', 'float32', [4, 3]]);
        return nn.add(a!, b!);
      },
      message: /Add node Add_\d+: shapes \[B,3\] and \[4,3\] cannot be broadcast statically \(axis 0: B vs 4\)/,
    },
    {
      name: 'Gemm with mismatched inner dimensions shows the transposes',
      build: () => {
        const [a, b] = graphWith(['a', 'float32', [2, 3]], ['b', 'float32', [2, 4]]);
        return nn.gemm(a!, b!);
      },
      message: /Gemm node Gemm_\d+: inner dimensions differ: op\(A\) is \[2,3\], op\(B\) is \[2,4\] \(transA=0, transB=0\)/,
    },
    {
      name: 'a duplicate input name',
      build: () => {
        const g = new nn.Graph('g');
        g.input('x', 'float32', [1]);
        g.input('x', 'float32', [1]);
      },
      message: /input x: the name is already used in graph g/,
    },
    {
      name: 'an unknown dtype string lists the valid ones',
      build: () => nn.checkDType('bfloat16'),
      message: /invalid dtype bfloat16: expected one of float32, float16, float64, int64, int32, bool/,
    },
    {
      name: 'a tensor with the wrong number of values',
      build: () => nn.tensor('float32', [2, 2], [1, 2, 3]),
      message: /tensor float32\[2,2\] needs 4 values, got 3/,
    },
  ];

  for (const c of cases) {
    it(c.name, () => assert.throws(c.build, (e: Error) => c.message.test(e.message) || assert.fail(`message was: ${e.message}`)));
  }

  it('infers symbolic shapes through Reshape, MatMul and Concat', () => {
    const [x] = graphWith(['x', 'float32', ['B', 'T', 8]]);
    const heads = nn.reshape(x!, [0, 0, 2, 4]);
    assert.deepEqual(heads.shape, ['B', 'T', 2, 4]);
    assert.deepEqual(nn.reshape(heads, [-1, 4]).shape, ['2*B*T', 4]);
    const scores = nn.matmul(nn.transpose(heads, [0, 2, 1, 3]), nn.transpose(heads, [0, 2, 3, 1]));
    assert.deepEqual(scores.shape, ['B', 2, 'T', 'T']);
    assert.deepEqual(nn.concat([x!, x!], 1).shape, ['B', 'T+T', 8]);
  });
});
