// Gradients of the training graph against central finite differences of its own loss, along a
// random direction per parameter (float32, so the comparison is to about a percent).
import { strict as assert } from 'node:assert';
import { buildTrainingGraph, int64Rows, linearPath, loraFeeds, sequentialPositions, weightFeeds, type WeightTensor } from '../../../worker/model/llama/index.js';
import { architectureFor } from '../../../worker/model/registry.js';
import * as nn from '../../../worker/onnx/index.js';
import { cache, f32, inputIds, pseudoRandom, variant } from './fixture.js';

const v = variant('qwen2-bias');
const c = v.config;
const [B, T] = [inputIds.length, (inputIds[0] as number[]).length];
const PATH = linearPath(1, 'v_proj');
const WEIGHTS = ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.k_proj.bias', 'model.layers.1.input_layernorm.weight', 'lm_head.weight'];
const LORA = [`${PATH}.lora_A.weight`, `${PATH}.lora_B.weight`];

describe('Llama training-graph gradients', () => {
  after(() => cache.dispose());

  it('agree with finite differences of the loss for weights, biases, norms, embeddings and LoRA factors', async () => {
    const [o, n] = (v.weights.get(`${PATH}.weight`) as WeightTensor).shape as [number, number];
    const lora = new Map([[PATH, { A: { shape: [2, n], data: pseudoRandom(2 * n, 1, 0.3) }, B: { shape: [o, 2], data: pseudoRandom(2 * o, 2, 0.3) }, scaling: 1.5 }]]);
    const wrt = [...WEIGHTS, ...LORA];
    const s = await cache.forGraph(buildTrainingGraph(c, { weights: v.weights, lora: [PATH], wrt }).graph);
    const fixed = {
      input_ids: int64Rows(inputIds),
      position_ids: sequentialPositions(B, T),
      targets: int64Rows(inputIds.map((r) => [...r.slice(1), r[0] as number])),
      loss_weights: nn.tensor('float32', [B, T], new Float32Array(B * T).fill(1 / (B * T))),
    };
    const feeds = { ...fixed, ...weightFeeds(v.weights, WEIGHTS), ...loraFeeds(lora) };
    const out = await s.run(feeds);

    for (const [k, name] of wrt.entries()) {
      const base = feeds[name as keyof typeof feeds] as nn.Tensor;
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
});
