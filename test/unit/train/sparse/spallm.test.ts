// SpaLLM on the pretrained tiny Llama: every sketched weight decodes from its tables; tuning only
// the tables lowers held-out perplexity below the untuned sketch's; the gradient the host
// scatters into a table entry is the sum of ∂L/∂Ŵ over the weights coded to it; more groups per
// row sketch closer to the dense model.
import { strict as assert } from 'node:assert';
import { linearPath } from '../../../../worker/model/llama/config.js';
import { calibrationWindows } from '../../../../worker/modes/train-inputs.js';
import { SessionCache } from '../../../../worker/onnx/session.js';
import { batchFromWindows } from '../../../../worker/train/data.js';
import { createSketchTrainModel, lutName, sketchedWeightNames, sketchModel } from '../../../../worker/train/sparse/spallm-model.js';
import { sketchWeight } from '../../../../worker/train/sparse/spallm-sketch.js';
import { fineTuneSpallm, type SpallmResult, sketchTensors } from '../../../../worker/train/sparse/spallm.js';
import { pretrainedTiny, type TinyFixture } from './fixture.js';

describe('SpaLLM fine-tuning', function () {
  this.timeout(180_000);
  const cache = new SessionCache({ intraOpThreads: 1 });
  let tiny: TinyFixture;
  let train: number[];
  let held: number[];
  let calibration: number[][];
  let result: SpallmResult;

  before(async () => {
    tiny = await pretrainedTiny();
    const cut = Math.floor(tiny.tokens.length * 0.9);
    [train, held] = [tiny.tokens.slice(0, cut), tiny.tokens.slice(cut)];
    calibration = calibrationWindows(train, 32, 64, 1);
    result = await fineTuneSpallm({
      config: tiny.model.config, weights: tiny.model.weights, train, eval: held, calibration, spallm: { bits: 2, groupsPerRow: 4 },
      training: { steps: 30, batchSize: 8, sequenceLength: 64, learningRate: 3e-3, warmupSteps: 3, minLrRatio: 0, seed: 3 }, cache,
    });
  });
  after(() => cache.dispose());

  it('sketches every linear layer of every block, and the model holds exactly the decoded tables', () => {
    const names = sketchedWeightNames(tiny.model.config);
    assert.deepEqual([...result.sketches.keys()].sort(), [...names].sort());
    for (const name of names) {
      const s = result.sketches.get(name);
      assert.ok(s, name);
      assert.deepEqual(result.merged.get(name)?.data, sketchWeight(s));
    }
    const q = result.sketches.get(`${linearPath(0, 'q_proj')}.weight`);
    assert.equal(q?.lut.length, 64 * 4 * 4);
    assert.equal(result.trainableParameters, [...result.sketches.values()].reduce((a, s) => a + s.rows * 4 * 4, 0));
    // The untouched tensors are the base's own.
    assert.equal(result.merged.get('model.embed_tokens.weight'), tiny.model.weights.get('model.embed_tokens.weight'));
    const tensors = sketchTensors(result.sketches);
    assert.equal(tensors.length, 2 * names.length);
    assert.equal(tensors.find(([n]) => n === `${linearPath(1, 'down_proj')}.codes`)?.[1].dtype, 'U8');
  });

  it('the 2-bit sketch loses perplexity, and tuning only its tables wins part of it back', () => {
    assert.ok(result.perplexityBefore > result.perplexityDense, `sketch ${result.perplexityBefore} vs dense ${result.perplexityDense}`);
    assert.ok(result.perplexityAfter < 0.97 * result.perplexityBefore, `tuned ${result.perplexityAfter} vs sketch ${result.perplexityBefore}`);
    assert.equal(result.losses.length, 30);
    assert.equal(result.interrupted, false);
  });

  it("a table entry's gradient is the sum of the weight gradient over the weights coded to it", async () => {
    const sketched = await sketchModel({ config: tiny.model.config, weights: tiny.model.weights, calibration: calibration.slice(0, 8), bits: 2, groupsPerRow: 2, cache });
    const model = await createSketchTrainModel({ config: tiny.model.config, weights: sketched.weights, sketches: sketched.sketches, cache });
    try {
      const batch = batchFromWindows([0, 1, 2, 3].map((b) => train.slice(b * 33, (b + 1) * 33)));
      const weights = new Float32Array(4 * 32).fill(1 / (4 * 32));
      const { loss, grads } = await model.lossAndGradients(batch, weights);
      // Finite differences on one table entry of a layer: nudge it and compare the loss change.
      const name = `${linearPath(1, 'up_proj')}.weight`;
      const lut = model.params.get(lutName(name)) as Float32Array;
      const g = grads.get(lutName(name)) as Float32Array;
      const entry = g.reduce((best, v, i) => (Math.abs(v) > Math.abs(g[best] as number) ? i : best), 0);
      const h = 1e-2;
      lut[entry] = (lut[entry] as number) + h;
      const plus = await model.loss(batch, weights);
      lut[entry] = (lut[entry] as number) - 2 * h;
      const minus = await model.loss(batch, weights);
      lut[entry] = (lut[entry] as number) + h;
      const numeric = (plus - minus) / (2 * h);
      assert.ok(Math.abs(numeric - (g[entry] as number)) < 0.05 * Math.abs(g[entry] as number) + 1e-5, `entry ${entry}: analytic ${g[entry]}, numeric ${numeric} (loss ${loss})`);
    } finally {
      await model.dispose();
    }
  });

  it('more groups per row sketch the blocks closer to the dense model', async () => {
    const err = async (groupsPerRow: number): Promise<number> => {
      const s = await sketchModel({ config: tiny.model.config, weights: tiny.model.weights, calibration: calibration.slice(0, 8), bits: 2, groupsPerRow, cache });
      return s.layers.reduce((a, l) => a + l.reconstructionError, 0);
    };
    const [one, eight] = [await err(1), await err(8)];
    assert.ok(eight < one, `block output error: 8 groups ${eight}, 1 group ${one}`);
  });
});
