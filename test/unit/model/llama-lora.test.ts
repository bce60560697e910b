// LoRA branches and masks as graph inputs: what they compute, checked against models whose
// weights were changed by hand.
import { strict as assert } from 'node:assert';
import {
  buildPrefillGraph,
  linearPath,
  loraFeeds,
  type LoraWeights,
  maskFeeds,
  prefillFeeds,
  type WeightTensor,
} from '../../../worker/model/llama/index.js';
import { cache, f32, inputIds, maxAbsDiff, pseudoRandom, variant } from './fixture.js';

const base = variant('llama');
const c = base.config;
const TARGETS = [linearPath(0, 'q_proj'), linearPath(0, 'v_proj'), linearPath(1, 'o_proj'), linearPath(1, 'down_proj')];
const RANK = 3;
const SCALING = 2;

function weightOf(path: string): WeightTensor {
  return base.weights.get(`${path}.weight`) as WeightTensor;
}

function adapter(zeroB = false): Map<string, { A: WeightTensor; B: WeightTensor; scaling: number }> {
  const out = new Map<string, { A: WeightTensor; B: WeightTensor; scaling: number }>();
  TARGETS.forEach((path, i) => {
    const [o, n] = weightOf(path).shape as [number, number];
    const B = zeroB ? new Float32Array(o * RANK) : pseudoRandom(o * RANK, 100 + i, 0.2);
    out.set(path, { A: { shape: [RANK, n], data: pseudoRandom(RANK * n, 200 + i, 0.3) }, B: { shape: [o, RANK], data: B }, scaling: SCALING });
  });
  return out;
}

/** Half the entries zeroed in a fixed pattern. */
function mask(shape: readonly number[], seed: number): WeightTensor {
  const r = pseudoRandom(shape[0]! * shape[1]!, seed);
  return { shape, data: r.map((x) => (x > 0 ? 1 : 0)) };
}

/** W + s·(B·A ⊙ M) for each adapted module, other weights unchanged. */
function merged(lora: LoraWeights, loraMasks?: ReadonlyMap<string, WeightTensor>): Map<string, WeightTensor> {
  const out = new Map(base.weights);
  for (const [path, m] of lora) {
    const w = weightOf(path);
    const [o, n] = w.shape as [number, number];
    const data = Float32Array.from(w.data);
    const msk = loraMasks?.get(path)?.data;
    for (let i = 0; i < o; i++) {
      for (let j = 0; j < n; j++) {
        let d = 0;
        for (let k = 0; k < RANK; k++) d += m.B.data[i * RANK + k]! * m.A.data[k * n + j]!;
        data[i * n + j] = data[i * n + j]! + m.scaling * d * (msk ? msk[i * n + j]! : 1);
      }
    }
    out.set(`${path}.weight`, { shape: w.shape, data });
  }
  return out;
}

async function prefillLogits(opts: Parameters<typeof buildPrefillGraph>[1], extra: Record<string, import('../../../worker/onnx/index.js').Tensor> = {}): Promise<Float32Array> {
  const s = await cache.forGraph(buildPrefillGraph(c, opts).graph);
  return f32((await s.run({ ...prefillFeeds(inputIds).feeds, ...extra })).logits, 'logits');
}

describe('LoRA branches and masks on linear layers', () => {
  after(() => cache.dispose());

  it('a LoRA branch with B = 0 leaves the base logits unchanged', async () => {
    const plain = await prefillLogits({ weights: base.weights });
    const lora = await prefillLogits({ weights: base.weights, lora: TARGETS }, loraFeeds(adapter(true)));
    assert.equal(maxAbsDiff(lora, plain), 0);
  });

  it('a LoRA branch gives the logits of the model with merged weights W + s·B·A', async () => {
    const a = adapter();
    const lora = await prefillLogits({ weights: base.weights, lora: TARGETS }, loraFeeds(a));
    const ref = await prefillLogits({ weights: merged(a) });
    const diff = maxAbsDiff(lora, ref);
    assert.ok(diff < 1e-5, `max |Δ| = ${diff}`);
    assert.ok(maxAbsDiff(lora, await prefillLogits({ weights: base.weights })) > 1e-2, 'the adapter should change the logits');
  });

  it('one session serves adapters of different ranks', async () => {
    const s = await cache.forGraph(buildPrefillGraph(c, { weights: base.weights, lora: [TARGETS[0]!] }).graph);
    const [o, n] = weightOf(TARGETS[0]!).shape as [number, number];
    for (const r of [1, 4]) {
      const lora = new Map([[TARGETS[0]!, { A: { shape: [r, n], data: pseudoRandom(r * n, r) }, B: { shape: [o, r], data: pseudoRandom(o * r, r + 9) }, scaling: 1 }]]);
      const out = await s.run({ ...prefillFeeds(inputIds).feeds, ...loraFeeds(lora) });
      assert.deepEqual(out.logits?.dims, [inputIds.length, c.vocabSize]);
    }
  });

  it('a weight mask removes exactly the masked weights: their values no longer matter', async () => {
    const masks = new Map(TARGETS.map((p, i) => [p, mask(weightOf(p).shape, 300 + i)]));
    const withMask = await prefillLogits({ weights: base.weights, weightMasks: TARGETS }, maskFeeds(masks, 'weight'));

    const zeroed = new Map(base.weights);
    const junk = new Map(base.weights);
    for (const [p, m] of masks) {
      const w = weightOf(p);
      zeroed.set(`${p}.weight`, { shape: w.shape, data: w.data.map((x, i) => x * m.data[i]!) });
      junk.set(`${p}.weight`, { shape: w.shape, data: w.data.map((x, i) => (m.data[i] ? x : 1e3 * (i % 7))) });
    }
    assert.ok(maxAbsDiff(withMask, await prefillLogits({ weights: zeroed })) < 1e-6);
    const junkMasked = await prefillLogits({ weights: junk, weightMasks: TARGETS }, maskFeeds(masks, 'weight'));
    assert.equal(maxAbsDiff(junkMasked, withMask), 0);
  });

  it('a LoRA mask keeps the delta on the base pattern: (W + s·B·A ⊙ M) with masked W stays sparse', async () => {
    const a = adapter();
    const masks = new Map(TARGETS.map((p, i) => [p, mask(weightOf(p).shape, 400 + i)]));
    const feeds = { ...loraFeeds(a), ...maskFeeds(masks, 'lora'), ...maskFeeds(masks, 'weight') };
    const out = await prefillLogits({ weights: base.weights, lora: TARGETS, loraMasks: TARGETS, weightMasks: TARGETS }, feeds);

    // The reference: merge with the masked delta, then zero the masked base entries too.
    const ref = merged(a, masks);
    for (const [p, m] of masks) {
      const w = ref.get(`${p}.weight`) as WeightTensor;
      const base0 = weightOf(p);
      ref.set(`${p}.weight`, { shape: w.shape, data: w.data.map((x, i) => (m.data[i] ? x : x - base0.data[i]!)) });
    }
    const diff = maxAbsDiff(out, await prefillLogits({ weights: ref }));
    assert.ok(diff < 1e-5, `max |Δ| = ${diff}`);
  });

  it('names an unknown module path and lists valid ones', () => {
    assert.throws(() => buildPrefillGraph(c, { weights: base.weights, lora: ['model.layers.9.self_attn.q_proj'] }), /unknown linear module model\.layers\.9\.self_attn\.q_proj: expected paths like model\.layers\.0\.self_attn\.q_proj/);
  });
});
