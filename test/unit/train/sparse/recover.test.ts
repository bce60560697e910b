// LORAM recovery: an adapter trained on the structurally pruned model, scattered back to the
// original shapes. Every trained entry lands at its original row (B of output-pruned modules) or
// column (A of input-pruned modules); the original model with the recovered adapter and the pruned
// units silenced computes exactly what the pruned model with its adapter computes.
import { strict as assert } from 'node:assert';
import { blockSizes, type LlamaConfig, LINEAR_MODULES, linearPath, linearShape } from '../../../../worker/model/llama/config.js';
import { type LoraModuleWeights } from '../../../../worker/model/llama/feeds.js';
import { type WeightTensor } from '../../../../worker/model/llama/weights.js';
import { calibrationWindows } from '../../../../worker/modes/train-inputs.js';
import { SessionCache } from '../../../../worker/onnx/session.js';
import { Rng } from '../../../../worker/train/rng.js';
import { parseLinearPath, PRUNED_INPUT_STD, recoverStructured } from '../../../../worker/train/sparse/recover.js';
import { prunedConfig, sliceModel, type StructuredPlan } from '../../../../worker/train/sparse/structured.js';
import { pretrainedTiny } from './fixture.js';
import { logitsOf, relativeMaxDiff, silenced } from './structured-fixture.js';

/** 4 query heads of 2 dims on 2 KV heads (g = 2), hidden 4, 6 neurons, 2 blocks. */
const HAND: LlamaConfig = {
  modelType: 'llama', hiddenSize: 4, intermediateSize: 6, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 2,
  rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null, maxPositionEmbeddings: 16, vocabSize: 8, tieWordEmbeddings: false, qkvBias: false, oProjBias: false, mlpBias: false,
};

/** Block 0 whole; block 1 keeps KV head 1 (query heads 2, 3) and neurons 0, 3, 5. */
const PLAN: StructuredPlan = [null, { neurons: [0, 3, 5], kvHeads: [1] }];

const rowsOf = (t: WeightTensor): number[][] => Array.from({ length: t.shape[0] as number }, (_, r) => [...t.data.subarray(r * (t.shape[1] as number), (r + 1) * (t.shape[1] as number))]);

/** A rank-2 adapter of the pruned model whose every entry is distinct and nonzero: 1000·module + 100·(A:1, B:2) + index + 1. */
function prunedAdapter(): Map<string, LoraModuleWeights> {
  const small = prunedConfig(HAND, PLAN);
  const out = new Map<string, LoraModuleWeights>();
  for (let l = 0; l < 2; l++) {
    const sizes = blockSizes(small, l);
    LINEAR_MODULES.forEach((m, mi) => {
      const [o, i] = linearShape(sizes, m);
      const fill = (n: number, which: number): Float32Array => Float32Array.from({ length: n }, (_, k) => 10000 * l + 1000 * mi + 100 * which + k + 1);
      out.set(linearPath(l, m), { A: { shape: [2, i], data: fill(2 * i, 1) }, B: { shape: [o, 2], data: fill(o * 2, 2) }, scaling: 0.5 });
    });
  }
  return out;
}

describe('LORAM recovery', function () {
  this.timeout(120_000);
  const cache = new SessionCache({ intraOpThreads: 1 });
  after(() => cache.dispose());

  it('scatters B rows of output-pruned modules and A columns of input-pruned ones to their original indices (hand-built case)', () => {
    const pruned = prunedAdapter();
    const recovered = recoverStructured(HAND, PLAN, pruned);
    const got = (m: string, which: 'A' | 'B'): number[][] => rowsOf((recovered.get(`model.layers.1.${m}`) as LoraModuleWeights)[which]);
    const trained = (m: string, which: 'A' | 'B'): number[][] => rowsOf((pruned.get(`model.layers.1.${m}`) as LoraModuleWeights)[which]);

    // q_proj: KV head 1 carries query heads 2 and 3, rows 4..7 of 8; A (over the hidden size) as trained.
    assert.deepEqual(got('self_attn.q_proj', 'B'), [[0, 0], [0, 0], [0, 0], [0, 0], [10201, 10202], [10203, 10204], [10205, 10206], [10207, 10208]]);
    assert.deepEqual(got('self_attn.q_proj', 'A'), trained('self_attn.q_proj', 'A'));
    // k_proj and v_proj: KV head 1 is rows 2..3 of 4.
    assert.deepEqual(got('self_attn.k_proj', 'B'), [[0, 0], [0, 0], [11201, 11202], [11203, 11204]]);
    assert.deepEqual(got('self_attn.v_proj', 'B'), [[0, 0], [0, 0], [12201, 12202], [12203, 12204]]);
    // o_proj: the same query heads are input columns 4..7 of A; B (over the hidden size) as trained.
    assert.deepEqual(got('self_attn.o_proj', 'A'), [[0, 0, 0, 0, 13101, 13102, 13103, 13104], [0, 0, 0, 0, 13105, 13106, 13107, 13108]]);
    assert.deepEqual(got('self_attn.o_proj', 'B'), trained('self_attn.o_proj', 'B'));
    // gate and up: neurons 0, 3, 5 are rows; down: the same neurons are A's columns.
    assert.deepEqual(got('mlp.gate_proj', 'B'), [[14201, 14202], [0, 0], [0, 0], [14203, 14204], [0, 0], [14205, 14206]]);
    assert.deepEqual(got('mlp.up_proj', 'B'), [[15201, 15202], [0, 0], [0, 0], [15203, 15204], [0, 0], [15205, 15206]]);
    assert.deepEqual(got('mlp.down_proj', 'A'), [[16101, 0, 0, 16102, 0, 16103], [16104, 0, 0, 16105, 0, 16106]]);
    assert.deepEqual(got('mlp.down_proj', 'B'), trained('mlp.down_proj', 'B'));
    // The block kept whole keeps its factors; every module has the original model's shapes.
    for (const m of LINEAR_MODULES) {
      assert.deepEqual(recovered.get(linearPath(0, m)), pruned.get(linearPath(0, m)));
      const [o, i] = linearShape(HAND, m);
      const r = recovered.get(linearPath(1, m)) as LoraModuleWeights;
      assert.deepEqual([r.B.shape, r.A.shape, r.scaling], [[o, 2], [2, i], 0.5], m);
    }
  });

  it('fills the pruned input columns from N(0, (1/8)²) when asked, keeping every trained column', () => {
    const pruned = prunedAdapter();
    const rng = new Rng(7);
    const zeros = recoverStructured(HAND, PLAN, pruned);
    const normal = recoverStructured(HAND, PLAN, pruned, { prunedInputs: 'normal', normal: () => rng.normal() });
    const a = (normal.get('model.layers.1.mlp.down_proj') as LoraModuleWeights).A.data;
    const z = (zeros.get('model.layers.1.mlp.down_proj') as LoraModuleWeights).A.data;
    const filled: number[] = [];
    a.forEach((x, i) => (z[i] !== 0 ? assert.equal(x, z[i]) : filled.push(x)));
    assert.equal(filled.length, 2 * 3);
    assert.ok(filled.every((x) => x !== 0 && Math.abs(x) < 6 * PRUNED_INPUT_STD));
    // Output-pruned modules are untouched by the flag.
    assert.deepEqual(normal.get('model.layers.1.self_attn.q_proj'), zeros.get('model.layers.1.self_attn.q_proj'));
    assert.throws(() => recoverStructured(HAND, PLAN, pruned, { prunedInputs: 'normal' }), /needs a normal sampler/);
  });

  it('refuses an adapter whose shapes are not the pruned block\'s, naming the module', () => {
    const wrong = new Map(prunedAdapter());
    const q = wrong.get('model.layers.1.self_attn.q_proj') as LoraModuleWeights;
    wrong.set('model.layers.1.self_attn.q_proj', { ...q, B: { shape: [8, 2], data: new Float32Array(16) } });
    assert.throws(() => recoverStructured(HAND, PLAN, wrong), /model\.layers\.1\.self_attn\.q_proj: B is \[8,2\] and A \[2,4\], expected \[4,2\] and \[2,4\]/);
    assert.deepEqual(parseLinearPath('model.layers.12.mlp.down_proj'), { layer: 12, module: 'down_proj' });
    assert.throws(() => parseLinearPath('model.layers.1.mlp.act'), /not a linear module path/);
  });

  it('the original model with the recovered adapter and the pruned units silenced computes what the pruned model with its adapter computes', async () => {
    const tiny = await pretrainedTiny();
    const c = tiny.model.config;
    const plan: StructuredPlan = [{ neurons: Array.from({ length: 88 }, (_, i) => 2 * i), kvHeads: [0] }, null];
    const small = prunedConfig(c, plan);
    const weights = sliceModel(c, tiny.model.weights, plan);
    const rng = new Rng(3);
    const adapter = new Map<string, LoraModuleWeights>();
    for (let l = 0; l < 2; l++) {
      for (const m of LINEAR_MODULES) {
        const [o, i] = (weights.get(`${linearPath(l, m)}.weight`) as WeightTensor).shape as [number, number];
        adapter.set(linearPath(l, m), { A: { shape: [4, i], data: Float32Array.from({ length: 4 * i }, () => rng.normal() * 0.1) }, B: { shape: [o, 4], data: Float32Array.from({ length: o * 4 }, () => rng.normal() * 0.1) }, scaling: 2 });
      }
    }
    const probe = calibrationWindows(tiny.tokens, 2, 32, 4);
    const reference = await logitsOf(cache, small, weights, probe, adapter);
    const recovered = await logitsOf(cache, c, silenced(c, tiny.model.weights, plan), probe, recoverStructured(c, plan, adapter));
    const diff = relativeMaxDiff(reference, recovered);
    assert.ok(diff < 1e-5, `relative max |Δlogit| ${diff}`);
    // The adapter matters: without it the logits are far apart.
    assert.ok(relativeMaxDiff(reference, await logitsOf(cache, small, weights, probe)) > 1e3 * diff);
  });
});
