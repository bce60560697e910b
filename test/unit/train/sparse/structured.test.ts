// Structured pruning (LORAM): the sliced model, with its own per-block sizes, computes exactly what
// the original computes with the pruned units silenced; units are chosen by Taylor importance
// |W ⊙ ∇W| or at random, the same share in every pruned block; Taylor beats random.
import { strict as assert } from 'node:assert';
import { type LlamaConfig, linearPath } from '../../../../worker/model/llama/config.js';
import { type Feeds, sequentialPositions } from '../../../../worker/model/llama/feeds.js';
import { buildTrainingGraph, gradName } from '../../../../worker/model/llama/graph.js';
import { numParameters, type WeightTensor, weightSpecs } from '../../../../worker/model/llama/weights.js';
import { calibrationWindows } from '../../../../worker/modes/train-inputs.js';
import { evalPerplexity } from '../../../../worker/modes/eval.js';
import * as nn from '../../../../worker/onnx/index.js';
import { SessionCache } from '../../../../worker/onnx/session.js';
import { batchFromWindows } from '../../../../worker/train/data.js';
import {
  keptIndices, type KeptUnits, planFromImportance, prunableLayers, prunedConfig, randomImportance, sliceModel, type StructuredPlan, taylorImportance,
} from '../../../../worker/train/sparse/structured.js';
import { pretrainedTiny, type TinyFixture } from './fixture.js';
import { logitsOf, relativeMaxDiff, silenced } from './structured-fixture.js';

describe('structured pruning (LORAM)', function () {
  this.timeout(120_000);
  const cache = new SessionCache({ intraOpThreads: 1 });
  let tiny: TinyFixture;
  let c: LlamaConfig;
  let probe: number[][];
  let calibration: number[][];
  let held: number[];

  before(async () => {
    tiny = await pretrainedTiny();
    c = tiny.model.config;
    const cut = Math.floor(tiny.tokens.length * 0.9);
    held = tiny.tokens.slice(cut);
    probe = calibrationWindows(held, 2, 32, 5);
    calibration = calibrationWindows(tiny.tokens.slice(0, cut), 32, 64, 1);
  });
  after(() => cache.dispose());

  it('maps a KV head to its g query heads: rows of q, k and v, columns of o; a neuron to rows of gate and up, a column of down', () => {
    // The tiny model: 4 query heads on 2 KV heads (g = 2) of 16 dims, 176 neurons.
    const kept: KeptUnits = { neurons: [2, 7], kvHeads: [1] };
    const span = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);
    assert.deepEqual([...(keptIndices(c, kept, 'q_proj').rows as Int32Array)], span(32, 32));
    assert.deepEqual([...(keptIndices(c, kept, 'k_proj').rows as Int32Array)], span(16, 16));
    assert.deepEqual([...(keptIndices(c, kept, 'v_proj').rows as Int32Array)], span(16, 16));
    assert.deepEqual([...(keptIndices(c, kept, 'o_proj').cols as Int32Array)], span(32, 32));
    assert.equal(keptIndices(c, kept, 'o_proj').rows, null);
    assert.deepEqual([...(keptIndices(c, kept, 'gate_proj').rows as Int32Array)], [2, 7]);
    assert.deepEqual([...(keptIndices(c, kept, 'up_proj').rows as Int32Array)], [2, 7]);
    assert.deepEqual([...(keptIndices(c, kept, 'down_proj').cols as Int32Array)], [2, 7]);
    assert.equal(keptIndices(c, kept, 'q_proj').cols, null);
  });

  it('the sliced model, each block at its own size, computes what the original computes with the pruned units silenced', async () => {
    const neurons = Array.from({ length: 176 }, (_, i) => i).filter((i) => i % 3 !== 1);
    const plan: StructuredPlan = [null, { neurons, kvHeads: [1] }];
    const small = prunedConfig(c, plan);
    assert.deepEqual(small.layerSizes, [{ intermediateSize: 176, numKeyValueHeads: 2 }, { intermediateSize: neurons.length, numKeyValueHeads: 1 }]);
    const weights = sliceModel(c, tiny.model.weights, plan);
    for (const s of weightSpecs(small)) assert.deepEqual((weights.get(s.name) as WeightTensor).shape, s.shape, s.name);
    assert.equal(numParameters(small), numParameters(c) - 3 * 64 * (176 - neurons.length) - (32 + 16 + 16 + 32) * 64);
    const reference = await logitsOf(cache, c, silenced(c, tiny.model.weights, plan), probe);
    const diff = relativeMaxDiff(reference, await logitsOf(cache, small, weights, probe));
    assert.ok(diff < 1e-5, `relative max |Δlogit| ${diff}`);
  });

  it('keeps the same share of neurons and KV heads in every pruned block, the highest scores, at least one of each', () => {
    const scores = { neurons: Float64Array.from([5, 1, 4, 1, 3, 9]), kvHeads: Float64Array.from([2, 1]) };
    const cfg = { ...c, intermediateSize: 6, numHiddenLayers: 3 };
    const plan = planFromImportance(cfg, new Map([[1, scores], [2, scores]]), 50);
    assert.equal(plan[0], null);
    // Three of six neurons go: the scores 1 (index 1), 1 (index 3, the tie after it) and 3.
    assert.deepEqual(plan[1], { neurons: [0, 2, 5], kvHeads: [0] });
    assert.deepEqual(plan[2], plan[1]);
    assert.deepEqual(planFromImportance(cfg, new Map([[1, scores]]), 95)[1], { neurons: [5], kvHeads: [0] });
    assert.deepEqual(prunableLayers(6, 2, 1), [2, 3, 4]);
    assert.deepEqual(prunableLayers(2, 0, 0), [0, 1]);
  });

  it('Taylor importance is Σ|W ⊙ ∇W| over each unit, ∇W the gradient of the mean calibration loss', async () => {
    const windows = calibration.slice(0, 12);
    const importance = (await taylorImportance({ config: c, weights: tiny.model.weights, calibration: windows, layers: [1], cache, batch: 5 })).get(1);
    assert.ok(importance);
    // Reference: one run over all windows at once, then the sums by hand.
    const names = (['gate_proj', 'up_proj', 'down_proj', 'q_proj', 'o_proj', 'k_proj', 'v_proj'] as const).map((m) => `${linearPath(1, m)}.weight`);
    const b = batchFromWindows(windows);
    const tokens = b.mask.reduce((s, x) => s + x, 0);
    const session = await cache.forGraph(buildTrainingGraph(c, { weights: tiny.model.weights, feed: names, wrt: names }).graph);
    const feeds: Feeds = {
      input_ids: nn.tensor('int64', [b.batch, b.seqLen], b.inputIds), position_ids: sequentialPositions(b.batch, b.seqLen),
      targets: nn.tensor('int64', [b.batch, b.seqLen], b.targets), loss_weights: nn.tensor('float32', [b.batch, b.seqLen], b.mask.map((x) => x / tokens)),
    };
    for (const n of names) feeds[n] = nn.tensor('float32', (tiny.model.weights.get(n) as WeightTensor).shape, (tiny.model.weights.get(n) as WeightTensor).data);
    const out = await session.run(feeds, names.map(gradName));
    const term = (n: string, i: number): number => Math.abs(((tiny.model.weights.get(n) as WeightTensor).data[i] as number) * ((out[gradName(n)]?.data as Float32Array)[i] as number));
    // Neuron 5: row 5 of gate and up (64 inputs each), column 5 of down (64 rows of 176).
    let neuron = 0;
    for (let j = 0; j < 64; j++) neuron += term(names[0] as string, 5 * 64 + j) + term(names[1] as string, 5 * 64 + j) + term(names[2] as string, j * 176 + 5);
    const n5 = importance.neurons[5] as number;
    assert.ok(Math.abs(n5 - neuron) <= 1e-4 * neuron, `neuron 5: ${n5} vs ${neuron}`);
    // KV head 1 takes query heads 2 and 3: q rows and o columns 32..63, k and v rows 16..31.
    let head = 0;
    for (let j = 0; j < 64; j++) {
      for (let r = 32; r < 64; r++) head += term(names[3] as string, r * 64 + j) + term(names[4] as string, j * 64 + r);
      for (let r = 16; r < 32; r++) head += term(names[5] as string, r * 64 + j) + term(names[6] as string, r * 64 + j);
    }
    const h1 = importance.kvHeads[1] as number;
    assert.ok(Math.abs(h1 - head) <= 1e-4 * head, `KV head 1: ${h1} vs ${head}`);
    assert.ok(importance.neurons.every((x) => x > 0) && importance.kvHeads.every((x) => x > 0));
  });

  it('at half the units, Taylor importance keeps a better model than random choices', async () => {
    const layers = prunableLayers(c.numHiddenLayers, 0, 0);
    const perplexity = async (plan: StructuredPlan): Promise<number> =>
      (await evalPerplexity({ config: prunedConfig(c, plan), weights: sliceModel(c, tiny.model.weights, plan), sequences: [held], sequenceLength: 64, cache })).perplexity;
    const taylor = await perplexity(planFromImportance(c, await taylorImportance({ config: c, weights: tiny.model.weights, calibration, layers, cache }), 50));
    const random = await Promise.all([1, 2, 3].map(async (seed) => perplexity(planFromImportance(c, randomImportance(c, layers, seed), 50))));
    const dense = (await evalPerplexity({ config: c, weights: tiny.model.weights, sequences: [held], sequenceLength: 64, cache })).perplexity;
    assert.ok(dense < taylor, `dense ${dense} vs Taylor ${taylor}`);
    assert.ok(random.every((r) => taylor < r), `Taylor ${taylor} vs random ${random.join(', ')}`);
  });
});
