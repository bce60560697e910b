import { strict as assert } from 'node:assert';
import { gradients } from '../../../worker/autodiff/index.js';
import * as nn from '../../../worker/onnx/index.js';
import { assertClose, cache, randn, rng, runGraph, toNumbers } from '../onnx/helpers.js';
import { checkGradients } from './gradcheck.js';

/** A pre-norm attention block with a causal mask and a SiLU MLP, on [T, D] activations. */
function attentionBlock(x: Record<string, nn.Value>, t: number, d: number): nn.Value {
  const h = x.h!;
  const rms = nn.sqrt(nn.add(nn.reduceMean(nn.mul(h, h), [-1], { keepdims: true }), 1e-5));
  const normed = nn.div(h, rms);
  const q = nn.matmul(normed, x.wq!);
  const k = nn.matmul(normed, x.wk!);
  const v = nn.matmul(normed, x.wv!);
  const scores = nn.add(nn.mul(nn.matmul(q, nn.transpose(k, [1, 0])), 1 / Math.sqrt(d)), nn.causalMask(h, t, 'float64'));
  const attended = nn.add(h, nn.matmul(nn.softmax(scores), v));
  return nn.add(attended, nn.matmul(nn.silu(nn.matmul(attended, x.w1!)), x.w2!));
}

describe('gradients of composite models against finite differences', () => {
  after(() => cache.dispose());

  it('a 2-layer tanh MLP with biases and a cross-entropy loss has correct gradients for every weight', async () => {
    const report = await checkGradients(
      {
        name: 'mlp',
        inputs: { x: [4, 3], w1: [3, 5], b1: [5], w2: [5, 4], b2: [4] },
        build: ({ x, w1, b1, w2, b2 }) => {
          const hidden = nn.tanh(nn.add(nn.matmul(x!, w1!), b1!));
          const logits = nn.gemm(hidden, w2!, b2!);
          return nn.crossEntropy(logits, x!.graph.constant('int64', [4], [0, 3, 1, 3]));
        },
      },
      42,
    );
    assert.equal(report.checked, 4 * 3 + 3 * 5 + 5 + 5 * 4 + 4);
  });

  it('a causal self-attention block with RMS norm and a SiLU MLP has correct gradients', async () => {
    const [t, d, f] = [4, 6, 8];
    const report = await checkGradients(
      {
        name: 'attention',
        inputs: { h: [t, d], wq: [d, d], wk: [d, d], wv: [d, d], w1: [d, f], w2: [f, d] },
        build: (x) => attentionBlock(x, t, d),
      },
      7,
    );
    assert.ok(report.worst < 1e-6, `worst relative error ${report.worst}`);
  });

  it('an embedding lookup feeding a tied output projection gets both gradient paths summed', async () => {
    await checkGradients(
      {
        name: 'tied embedding',
        inputs: { emb: [6, 4] },
        build: ({ emb }) => {
          const tokens = emb!.graph.constant('int64', [2, 3], [1, 5, 1, 0, 2, 5]);
          const h = nn.gather(emb!, tokens);
          return nn.crossEntropy(nn.matmul(h, nn.transpose(emb!, [1, 0])), emb!.graph.constant('int64', [2, 3], [5, 1, 0, 2, 5, 3]));
        },
      },
      11,
    );
  });
});

describe('one training-step graph', () => {
  after(() => cache.dispose());

  it('returns the loss and the gradients of exactly the trainable initializers, matching float64 within float32 precision', async () => {
    const random = rng(3);
    const [n, din, dh, classes] = [8, 5, 16, 3];
    const values = { w1: randn(random, din * dh), w2: randn(random, dh * classes) };
    const xs = randn(random, n * din);
    const targets = [0, 1, 2, 0, 1, 2, 2, 1];
    const build = (dtype: 'float32' | 'float64'): nn.Graph => {
      const g = new nn.Graph(`step-${dtype}`);
      const x = g.input('x', dtype, ['N', din]);
      const w1 = g.initializer('w1', nn.tensor(dtype, [din, dh], values.w1), { trainable: true });
      const w2 = g.initializer('w2', nn.tensor(dtype, [dh, classes], values.w2), { trainable: true });
      g.initializer('frozen', nn.tensor(dtype, [dh], new Array(dh).fill(0.1)));
      const y = g.input('y', 'int64', ['N']);
      const logits = nn.matmul(nn.relu(nn.add(nn.matmul(x, w1), g.initializers[2] as nn.Value)), w2);
      const loss = nn.crossEntropy(logits, y);
      g.output(loss, 'loss');
      gradients(loss, g.trainable).forEach((gv, i) => g.output(gv, `grad_${(g.trainable[i] as nn.Value).name}`));
      return g;
    };
    const run = async (dtype: 'float32' | 'float64'): Promise<Record<string, nn.Tensor>> =>
      runGraph(build(dtype), { x: nn.tensor(dtype, [n, din], xs), y: nn.tensor('int64', [n], targets) });
    const [f32, f64] = [await run('float32'), await run('float64')];
    assert.deepEqual(Object.keys(f32).sort(), ['grad_w1', 'grad_w2', 'loss']);
    for (const name of ['loss', 'grad_w1', 'grad_w2']) {
      assertClose(toNumbers(f32[name] as nn.Tensor), toNumbers(f64[name] as nn.Tensor), { atol: 1e-5, rtol: 1e-4, what: name });
    }
  });
});
