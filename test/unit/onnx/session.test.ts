import { strict as assert } from 'node:assert';
import * as nn from '../../../worker/onnx/index.js';
import { createSession, SessionCache } from '../../../worker/onnx/session.js';

function scaleGraph(factor: number): nn.Graph {
  const g = new nn.Graph('scale');
  g.output(nn.mul(g.input('x', 'float32', ['N']), factor), 'y');
  return g;
}

describe('sessions', () => {
  const cache = new SessionCache({ intraOpThreads: 1 });
  after(() => cache.dispose());

  it('the cache returns the same session for the same graph, built twice', async () => {
    const a = await cache.forGraph(scaleGraph(2));
    const b = await cache.forGraph(scaleGraph(2));
    assert.equal(a, b);
    assert.equal(a.key.length, 64);
  });

  it('the cache returns different sessions for different graphs or options', async () => {
    const a = await cache.forGraph(scaleGraph(2));
    assert.notEqual(a, await cache.forGraph(scaleGraph(3)));
    assert.notEqual(a, await cache.forGraph(scaleGraph(2), { optimization: 'basic' }));
    assert.notEqual(a, await cache.forGraph(scaleGraph(2), { spinning: false }));
  });

  it('a session whose threads sleep instead of spinning computes the same results', async () => {
    const s = await createSession(scaleGraph(3).toModel(), { intraOpThreads: 2, spinning: false });
    try {
      assert.deepEqual(Array.from((await s.run({ x: nn.tensor('float32', [2], [1, -2]) })).y?.data as Float32Array), [3, -6]);
    } finally {
      await s.dispose();
    }
  });

  it('writes an output into a tensor the caller provides, a view of a larger buffer included', async () => {
    const s = await cache.forGraph(scaleGraph(2));
    const buffer = new Float32Array(8).fill(-1);
    const y = nn.tensor('float32', [3], buffer.subarray(0, 3));
    const out = await s.run({ x: nn.tensor('float32', [3], [1, 2, 3]) }, undefined, { y });
    assert.equal(out.y, y);
    assert.deepEqual(Array.from(buffer), [2, 4, 6, -1, -1, -1, -1, -1]);
    await assert.rejects(s.run({ x: nn.tensor('float32', [1], [1]) }, undefined, { z: y }), /unknown output z: expected one of y/);
  });

  it('a disposed session leaves the cache and refuses to run', async () => {
    const a = await cache.forGraph(scaleGraph(5));
    const before = cache.size;
    await a.dispose();
    assert.equal(cache.size, before - 1);
    await assert.rejects(a.run({ x: nn.tensor('float32', [1], [1]) }), /was disposed/);
    assert.notEqual(await cache.forGraph(scaleGraph(5)), a);
  });

  it('runs and returns our Tensor type with names, dtypes and dims', async () => {
    const s = await cache.forGraph(scaleGraph(2));
    assert.deepEqual(s.inputNames, ['x']);
    assert.deepEqual(s.outputNames, ['y']);
    const out = await s.run({ x: nn.tensor('float32', [3], [1, 2, 3]) });
    assert.deepEqual(out.y, { dtype: 'float32', dims: [3], data: new Float32Array([2, 4, 6]) });
  });

  it('checks feeds against the graph inputs before running', async () => {
    const g = new nn.Graph();
    const a = g.input('a', 'float32', ['B', 2]);
    const b = g.input('b', 'float32', ['B']);
    g.output(nn.add(nn.reduceSum(a, [1]), b), 'y');
    const s = await cache.forGraph(g);
    const ok = { a: nn.tensor('float32', [1, 2], [1, 2]), b: nn.tensor('float32', [1], [3]) };
    assert.deepEqual(Array.from((await s.run(ok)).y?.data as Float32Array), [6]);
    await assert.rejects(s.run({ a: ok.a }), /missing input b: expected float32\[B\]/);
    await assert.rejects(s.run({ ...ok, b: nn.tensor('float64', [1], [3]) }), /input b has dtype float64: expected float32/);
    await assert.rejects(s.run({ ...ok, a: nn.tensor('float32', [1, 3], [1, 2, 3]) }), /input a is float32\[1,3\]: expected float32\[B,2\]/);
    await assert.rejects(s.run({ ...ok, b: nn.tensor('float32', [2], [3, 4]) }), /input b sets B=2 but a set B=1/);
    await assert.rejects(s.run({ ...ok, c: ok.b }), /unknown input c: expected a, b/);
    await assert.rejects(s.run(ok, ['z']), /unknown output z: expected one of y/);
  });

  it('a session created from bytes alone runs with the CPU provider and configured threads', async () => {
    const s = await createSession(scaleGraph(4).toModel(), { executionProviders: ['cpu'], intraOpThreads: 2 });
    try {
      const out = await s.run({ x: nn.tensor('float32', [2], [1, -1]) });
      assert.deepEqual(Array.from(out.y?.data as Float32Array), [4, -4]);
    } finally {
      await s.dispose();
    }
  });
});
