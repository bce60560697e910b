// Whole-model pruning on a pretrained tiny Llama: blocks pruned in order on the outputs of the
// already-pruned blocks, exact sparsity, and SparseGPT < Wanda < magnitude in block output error.
import { strict as assert } from 'node:assert';
import { linearPath, linearShape } from '../../../../worker/model/llama/config.js';
import { EMBED, type WeightTensor } from '../../../../worker/model/llama/weights.js';
import { calibrationWindows } from '../../../../worker/modes/train-inputs.js';
import { SessionCache } from '../../../../worker/onnx/session.js';
import { BlockRunner, embedTokens } from '../../../../worker/train/sparse/calibration.js';
import { countZeros, parsePattern, type SparsityPattern } from '../../../../worker/train/sparse/pattern.js';
import { modelSparsity, type PrunedModel, pruneModel } from '../../../../worker/train/sparse/prune-model.js';
import { PRUNERS, pruneLinear, type PrunerKind } from '../../../../worker/train/sparse/pruners.js';
import { pretrainedTiny, type TinyFixture } from './fixture.js';

describe('pruning a model block by block', function () {
  this.timeout(120_000);
  const cache = new SessionCache({ intraOpThreads: 1 });
  let tiny: TinyFixture;
  let calibration: number[][];
  const runs = new Map<string, PrunedModel>();
  const pruned = async (pruner: PrunerKind, pattern: SparsityPattern): Promise<PrunedModel> => {
    const key = `${pruner}:${JSON.stringify(pattern)}`;
    let r = runs.get(key);
    if (!r) runs.set(key, (r = await pruneModel({ config: tiny.model.config, weights: tiny.model.weights, calibration, pruner, pattern, cache })));
    return r;
  };

  before(async () => {
    tiny = await pretrainedTiny();
    calibration = calibrationWindows(tiny.tokens, 32, 64, 1);
  });
  after(() => cache.dispose());

  for (const pruner of PRUNERS) {
    it(`${pruner} at 50% leaves every block and the model exactly 50% sparse, the rest of the model untouched`, async () => {
      const r = await pruned(pruner, parsePattern('unstructured', 50));
      assert.deepEqual(r.layers.map((l) => l.sparsityPercent), [50, 50]);
      assert.equal(r.achievedSparsityPercent, 50);
      assert.equal(modelSparsity(tiny.model.config, r.weights).percent, 50);
      for (const [name, w] of tiny.model.weights) if (!/_proj\.weight$/.test(name)) assert.equal(r.weights.get(name), w, name);
      for (const l of r.layers) assert.ok(l.reconstructionError > 0 && l.reconstructionError < 1, `block ${l.index}: ${l.reconstructionError}`);
    });
  }

  it('wanda with 2:4 keeps exactly 2 of every 4 inputs in every row of every linear layer', async () => {
    const r = await pruned('wanda', parsePattern('2:4', 50));
    for (const name of [...r.weights.keys()].filter((n) => /_proj\.weight$/.test(n))) {
      const w = r.weights.get(name) as WeightTensor;
      for (let g = 0; g < w.data.length; g += 4) assert.equal(countZeros(w.data.subarray(g, g + 4)), 2, `${name} at ${g}`);
    }
  });

  it('prunes block 1 on the outputs of the pruned block 0, not of the dense one', async () => {
    const c = tiny.model.config;
    const pattern = parsePattern('unstructured', 50);
    const r = await pruned('wanda', pattern);
    // By hand: block 0 pruned with its own statistics, then block 1's statistics from pruned block 0's outputs.
    const runner = new BlockRunner(c, cache, 64);
    const weights = new Map(tiny.model.weights);
    const hidden = embedTokens(weights.get(EMBED) as WeightTensor, calibration, c.hiddenSize);
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const) weights.set(`${linearPath(0, m)}.weight`, r.weights.get(`${linearPath(0, m)}.weight`) as WeightTensor);
    const upstream = await runner.run(0, weights, hidden, calibration.length, 64, 'none');
    const block1 = await runner.run(1, weights, upstream.hidden, calibration.length, 64, 'sumsq');
    const g = block1.groups.findIndex((ms) => ms.includes('q_proj'));
    const [rows, cols] = linearShape(c, 'q_proj');
    const name = `${linearPath(1, 'q_proj')}.weight`;
    const expected = pruneLinear('wanda', { weight: (tiny.model.weights.get(name) as WeightTensor).data, rows, cols, name }, pattern, { tokens: block1.tokens, sumSquares: block1.stats[g] as Float64Array });
    assert.deepEqual([...(r.weights.get(name) as WeightTensor).data], [...expected.weight]);
    // And from the dense block 0 the choice would differ: the upstream pruning matters.
    const dense = await runner.run(0, tiny.model.weights, hidden, calibration.length, 64, 'none');
    const stale = await runner.run(1, tiny.model.weights, dense.hidden, calibration.length, 64, 'sumsq');
    const other = pruneLinear('wanda', { weight: (tiny.model.weights.get(name) as WeightTensor).data, rows, cols, name }, pattern, { tokens: stale.tokens, sumSquares: stale.stats[g] as Float64Array });
    assert.notDeepEqual([...other.weight], [...expected.weight]);
  });

  const settings: [string, SparsityPattern][] = [
    ['50%', parsePattern('unstructured', 50)],
    ['60%', parsePattern('unstructured', 60)],
    ['70%', parsePattern('unstructured', 70)],
    ['2:4', parsePattern('2:4', 50)],
  ];
  for (const [label, pattern] of settings) {
    it(`orders the mean block output error sparsegpt < wanda < magnitude at ${label}`, async () => {
      const mean = async (p: PrunerKind): Promise<number> => {
        const r = await pruned(p, pattern);
        return r.layers.reduce((s, l) => s + l.reconstructionError, 0) / r.layers.length;
      };
      const [sparsegpt, wanda, magnitude] = [await mean('sparsegpt'), await mean('wanda'), await mean('magnitude')];
      const numbers = `sparsegpt ${sparsegpt.toFixed(4)}, wanda ${wanda.toFixed(4)}, magnitude ${magnitude.toFixed(4)}`;
      assert.ok(sparsegpt < 0.8 * wanda, numbers);
      assert.ok(wanda < magnitude, numbers);
    });
  }
});
