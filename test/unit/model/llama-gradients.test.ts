// Gradients of the training graph against central finite differences of its own loss, along a
// random direction per parameter (float32, so the comparison is to about a percent).
import { strict as assert } from 'node:assert';
import { buildTrainingGraph, int64Rows, linearPath, loraFeeds, maskFeeds, sequentialPositions, weightFeeds, type WeightTensor } from '../../../worker/model/llama/index.js';
import { architectureFor } from '../../../worker/model/registry.js';
import * as nn from '../../../worker/onnx/index.js';
import { type Session } from '../../../worker/onnx/session.js';
import { cache, f32, inputIds, pseudoRandom, variant } from './fixture.js';

const v = variant('qwen2-bias');
const c = v.config;
const [B, T] = [inputIds.length, (inputIds[0] as number[]).length];
const PATH = linearPath(1, 'v_proj');
const WEIGHTS = ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.k_proj.bias', 'model.layers.1.input_layernorm.weight', 'lm_head.weight'];
const LORA = [`${PATH}.lora_A.weight`, `${PATH}.lora_B.weight`];

const tokenFeeds = {
  input_ids: int64Rows(inputIds),
  position_ids: sequentialPositions(B, T),
  targets: int64Rows(inputIds.map((r) => [...r.slice(1), r[0] as number])),
  loss_weights: nn.tensor('float32', [B, T], new Float32Array(B * T).fill(1 / (B * T))),
};

/** A rank-2 adapter on one module with factors large enough that its gradients are far from zero. */
function adapterOn(path: string, seed: number): Map<string, { A: WeightTensor; B: WeightTensor; scaling: number }> {
  const [o, n] = (v.weights.get(`${path}.weight`) as WeightTensor).shape as [number, number];
  return new Map([[path, { A: { shape: [2, n], data: pseudoRandom(2 * n, seed, 0.3) }, B: { shape: [o, 2], data: pseudoRandom(2 * o, seed + 1, 0.3) }, scaling: 1.5 }]]);
}

/** d loss along a random direction per name: the graph's gradient against central differences. */
async function checkAgainstFiniteDifferences(s: Session, feeds: Record<string, nn.Tensor>, names: readonly string[]): Promise<Record<string, nn.Tensor>> {
  const out = await s.run(feeds);
  for (const [k, name] of names.entries()) {
    const base = feeds[name] as nn.Tensor;
    const x = base.data as Float32Array;
    const dir = pseudoRandom(x.length, 50 + k);
    const analytic = f32(out[`grad.${name}`], name).reduce((sum, g, i) => sum + g * dir[i]!, 0);
    const h = 1e-2;
    const lossAt = async (sign: number): Promise<number> => {
      const moved = nn.tensor('float32', base.dims, x.map((xi, i) => xi + sign * h * dir[i]!));
      return f32((await s.run({ ...feeds, [name]: moved }, ['loss'])).loss, 'loss')[0]!;
    };
    const numeric = ((await lossAt(1)) - (await lossAt(-1))) / (2 * h);
    assert.ok(Math.abs(analytic - numeric) <= 0.02 * Math.abs(numeric) + 2e-4, `${name}: analytic ${analytic} vs numeric ${numeric}`);
  }
  return out;
}

describe('Llama training-graph gradients', () => {
  after(() => cache.dispose());

  it('agree with finite differences of the loss for weights, biases, norms, embeddings and LoRA factors', async () => {
    const wrt = [...WEIGHTS, ...LORA];
    const s = await cache.forGraph(buildTrainingGraph(c, { weights: v.weights, lora: [PATH], wrt }).graph);
    await checkAgainstFiniteDifferences(s, { ...tokenFeeds, ...weightFeeds(v.weights, WEIGHTS), ...loraFeeds(adapterOn(PATH, 1)) }, wrt);
  });

  describe('through a masked LoRA delta W ⊙ M_w + s·(B·A) ⊙ M_l (SparsePEFT, LoSA)', () => {
    const path = linearPath(0, 'up_proj');
    const weight = `${path}.weight`;
    const factors = [`${path}.lora_A.weight`, `${path}.lora_B.weight`];
    const shape = (v.weights.get(weight) as WeightTensor).shape;
    const size = shape[0]! * shape[1]!;
    const pattern = (seed: number): WeightTensor => ({ shape, data: pseudoRandom(size, seed).map((x) => (x > 0 ? 1 : 0)) });
    // The base weight is always fed, so one set of feeds serves every `wrt`.
    const masked = (wrt: readonly string[]): Promise<Session> =>
      cache.forGraph(buildTrainingGraph(c, { weights: v.weights, feed: [weight], lora: [path], loraMasks: [path], weightMasks: [path], wrt }).graph);
    const feedsWith = (loraMask: WeightTensor, weightMask: WeightTensor): Record<string, nn.Tensor> => ({
      ...tokenFeeds,
      ...weightFeeds(v.weights, [weight]),
      ...loraFeeds(adapterOn(path, 7)),
      ...maskFeeds(new Map([[path, loraMask]]), 'lora'),
      ...maskFeeds(new Map([[path, weightMask]]), 'weight'),
    });

    it('agree with finite differences for A, B and the masked base weight, and vanish on masked-out weights', async () => {
      const wrt = [...factors, weight];
      const weightMask = pattern(91);
      const out = await checkAgainstFiniteDifferences(await masked(wrt), feedsWith(pattern(90), weightMask), wrt);
      const gw = f32(out[`grad.${weight}`], weight);
      let outside = 0;
      let inside = 0;
      for (let i = 0; i < size; i++) {
        if (weightMask.data[i] === 0) outside = Math.max(outside, Math.abs(gw[i]!));
        else inside = Math.max(inside, Math.abs(gw[i]!));
      }
      assert.equal(outside, 0, 'a pruned weight gets no gradient');
      assert.ok(inside > 1e-4, `the kept weights do get one (max |g| ${inside})`);
    });

    it('with an all-ones mask equal the gradients of the unmasked low-rank branch', async () => {
      const ones: WeightTensor = { shape, data: new Float32Array(size).fill(1) };
      const dense = await (await masked(factors)).run(feedsWith(ones, ones));
      const plain = await (await cache.forGraph(buildTrainingGraph(c, { weights: v.weights, lora: [path], wrt: factors }).graph)).run({ ...tokenFeeds, ...loraFeeds(adapterOn(path, 7)) });
      assert.ok(Math.abs(f32(dense.loss, 'loss')[0]! - f32(plain.loss, 'loss')[0]!) < 1e-5);
      for (const name of factors) {
        const a = f32(dense[`grad.${name}`], name);
        const b = f32(plain[`grad.${name}`], name);
        const scale = Math.max(...b.map(Math.abs));
        const worst = Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
        assert.ok(scale > 1e-4 && worst <= 1e-4 * scale, `${name}: max |Δgrad| ${worst} at max |grad| ${scale}`);
      }
    });

    it('with an all-zero LoRA mask leave A and B without gradient', async () => {
      const zeros: WeightTensor = { shape, data: new Float32Array(size) };
      const out = await (await masked(factors)).run(feedsWith(zeros, pattern(91)));
      for (const name of factors) assert.equal(Math.max(...f32(out[`grad.${name}`], name).map(Math.abs)), 0, name);
    });
  });
});

describe('architecture registry', () => {
  it('serves llama, mistral and qwen2 with the Llama graphs', () => {
    for (const t of ['llama', 'mistral', 'qwen2']) assert.equal(architectureFor(t).name, 'llama');
  });

  it('names an unsupported model_type and lists the supported ones', () => {
    assert.throws(() => architectureFor('gpt2'), /unsupported model_type "gpt2": expected one of llama, mistral, qwen2/);
  });

  it('rejects a config whose key/value heads do not divide the query heads', () => {
    assert.throws(() => buildTrainingGraph({ ...c, numKeyValueHeads: 3 }, { weights: v.weights, wrt: [] }), /numKeyValueHeads \(3\) must divide numAttentionHeads \(4\)/);
  });

  it('rejects a sliding window that is not a positive integer', () => {
    assert.throws(() => buildTrainingGraph({ ...c, slidingWindow: 0 }, { weights: v.weights, wrt: [] }), /slidingWindow must be a positive integer or null, got 0/);
  });
});
