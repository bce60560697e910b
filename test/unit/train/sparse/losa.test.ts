// LoSA end to end on tiny Llamas: every round's exact counts, layer rates within S_t ± δ_t and
// ranks summing to L·r̄_t; a merged model exactly as sparse as asked that computes what the sparse
// base with the masked, per-layer-rank adapter computes; resume from a round; and perplexity
// against dense + LoRA, SparsePEFT and one-shot pruning at 50 % and 70 %.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LINEAR_MODULES } from '../../../../worker/formats/hf-checkpoint.js';
import { type LlamaConfig, initWeights, linearPath, linearShape } from '../../../../worker/model/llama/index.js';
import { type Feeds, loraFeeds, maskFeeds, sequentialPositions } from '../../../../worker/model/llama/feeds.js';
import { buildTrainingGraph } from '../../../../worker/model/llama/graph.js';
import { type WeightMap, type WeightTensor } from '../../../../worker/model/llama/weights.js';
import { evalPerplexity } from '../../../../worker/modes/eval.js';
import { adapterToLora } from '../../../../worker/modes/load-model.js';
import { calibrationWindows } from '../../../../worker/modes/train-inputs.js';
import * as nn from '../../../../worker/onnx/index.js';
import { SessionCache } from '../../../../worker/onnx/session.js';
import { type FineTuneOptions, type FineTuneResult, fineTune } from '../../../../worker/train/sparse/finetune.js';
import { type LosaRound } from '../../../../worker/train/sparse/losa.js';
import { nonzeroMask } from '../../../../worker/train/sparse/merge.js';
import { parsePattern, prunedCount } from '../../../../worker/train/sparse/pattern.js';
import { modelSparsity, pruneModel } from '../../../../worker/train/sparse/prune-model.js';
import { PRUNERS } from '../../../../worker/train/sparse/pruners.js';
import { pruningRounds } from '../../../../worker/train/sparse/sparsity-schedule.js';
import { Rng } from '../../../../worker/train/rng.js';
import { pretrainedTiny, type TinyFixture } from './fixture.js';

const ALL = LINEAR_MODULES;

/** Weights in the linear layers of one block and of the model: what the sparsity counts. */
function sizes(c: LlamaConfig): { block: number; model: number } {
  const block = ALL.reduce((s, m) => s + linearShape(c, m)[0] * linearShape(c, m)[1], 0);
  return { block, model: block * c.numHiddenLayers };
}

/** What every round must satisfy: exact counts at S_t, block rates within ±δ_t around it, Σ r_l = L·r̄_t. */
function checkRounds(rounds: readonly LosaRound[], c: LlamaConfig, opts: { percent: number; steps: number; rank: number; maxRank: number }): void {
  const { block, model } = sizes(c);
  const schedule = pruningRounds('cubic', opts.percent, opts.steps);
  assert.equal(rounds.length, opts.steps);
  rounds.forEach((r, i) => {
    const t = schedule[i] as (typeof schedule)[number];
    assert.equal(r.percent, t.percent, `round ${r.step} mean`);
    assert.equal(r.delta, t.delta, `round ${r.step} band`);
    assert.equal(r.layers.reduce((s, l) => s + l.zeros, 0), prunedCount(t.percent, model), `round ${r.step}: ⌊S_t·N⌋ zeros`);
    const mean = t.percent / 100;
    for (const l of r.layers) {
      assert.ok(l.zeros >= Math.floor((mean - t.delta) * block) && l.zeros <= Math.ceil((mean + t.delta) * block), `round ${r.step} block ${l.index}: ${l.zeros} of ${block} outside ${mean} ± ${t.delta}`);
    }
    const rateMean = r.layers.reduce((s, l) => s + l.zeros / block, 0) / r.layers.length;
    assert.ok(Math.abs(rateMean - mean) <= 1 / block, `round ${r.step}: mean rate ${rateMean} vs ${mean}`);
    assert.equal(r.meanRank, opts.rank + i, `round ${r.step}: r̄ grows by one`);
    assert.equal(r.ranks.reduce((s, x) => s + x, 0), c.numHiddenLayers * r.meanRank, `round ${r.step}: Σ r_l = L·r̄`);
    for (const x of r.ranks) assert.ok(x >= 1 && x <= opts.maxRank, `round ${r.step}: rank ${x}`);
  });
}

describe('LoSA on a pretrained tiny Llama', function () {
  this.timeout(300_000);
  const cache = new SessionCache({ intraOpThreads: 1 });
  let tiny: TinyFixture;
  let held: number[];
  let options: (over?: Partial<FineTuneOptions>) => FineTuneOptions;
  const rounds: LosaRound[] = [];
  const runs = new Map<string, FineTuneResult>();
  const perplexity = new Map<string, number>();
  let dir: string;

  before(async () => {
    tiny = await pretrainedTiny();
    dir = mkdtempSync(join(tmpdir(), 'tessera-losa-'));
    const cut = Math.floor(tiny.tokens.length * 0.9);
    const train = tiny.tokens.slice(0, cut);
    held = tiny.tokens.slice(cut);
    const calibration = calibrationWindows(train, 32, 64, 1);
    const base = (percent: number): FineTuneOptions => ({
      method: 'sparsepeft', config: tiny.model.config, weights: tiny.model.weights, train, eval: held, calibration,
      sparsity: { pruner: 'wanda', pattern: parsePattern('unstructured', percent) },
      // SparsePEFT trains rank 8; LoSA starts at a mean of 6 and ends at 10 (8 on average over its rounds), s = 2 for both.
      adapter: { rank: 8, alpha: 16, targetModules: ALL },
      training: { steps: 100, batchSize: 8, sequenceLength: 64, learningRate: 5e-3, schedule: 'linear', warmupSteps: 10, minLrRatio: 0, seed: 3 },
      seed: 3, cache,
    });
    options = (over = {}) => {
      const percent = over.sparsity?.pattern.kind === 'unstructured' ? over.sparsity.pattern.percent : 70;
      return {
        ...base(percent), method: 'losa',
        sparsity: { pruner: 'wanda', pattern: parsePattern('unstructured', percent), schedule: { kind: 'cubic', steps: 5 }, layerwise: 'rmi' },
        adapter: { rank: 6, alpha: 12, targetModules: ALL, maxRank: 16, rankAllocation: 'reconstruction-error' },
        ...over,
      };
    };
    const ppl = async (weights: WeightMap): Promise<number> => (await evalPerplexity({ config: tiny.model.config, weights, sequences: [held], sequenceLength: 64, cache })).perplexity;
    runs.set('losa 70', await fineTune(options({ onLosaRound: (r) => rounds.push(r) })));
    runs.set('losa 50', await fineTune(options({ sparsity: { pruner: 'wanda', pattern: parsePattern('unstructured', 50), schedule: { kind: 'cubic', steps: 5 }, layerwise: 'rmi' } })));
    for (const p of [50, 70]) {
      runs.set(`sparsepeft ${p}`, await fineTune(base(p)));
      perplexity.set(`one-shot ${p}`, await ppl((await pruneModel({ config: tiny.model.config, weights: tiny.model.weights, calibration, pruner: 'wanda', pattern: parsePattern('unstructured', p), cache })).weights));
    }
    runs.set('dense', await fineTune({ ...base(0), method: 'lora', sparsity: undefined, calibration: undefined }));
    for (const [name, r] of runs) perplexity.set(name, r.perplexityAfter);
  });
  after(async () => {
    await cache.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('every round prunes exactly ⌊S_t·N⌋ weights on the cubic schedule, blocks within S_t ± δ_t, ranks summing to L·r̄_t', () => {
    checkRounds(rounds, tiny.model.config, { percent: 70, steps: 5, rank: 6, maxRank: 16 });
    // Two blocks: CKA(0, 1) = CKA(1, 0), so they tie in importance and share the mean rate.
    for (const r of rounds) assert.equal(r.rates[0], r.rates[1]);
    assert.ok(rounds.every((r) => r.importance !== undefined), 'rmi measured the importance in every round');
  });

  it('the merged model has exactly ⌊S·N⌋ zeros, each one pruned in the last round, and its blocks the ranks reported', () => {
    const losa = runs.get('losa 70') as FineTuneResult;
    const { model } = sizes(tiny.model.config);
    assert.equal(losa.sparsity.zeros, prunedCount(70, model));
    assert.equal(losa.sparsity.percent, (100 * prunedCount(70, model)) / model);
    assert.equal((runs.get('losa 50') as FineTuneResult).sparsity.percent, 50);
    for (const [name, w] of losa.pruning?.weights ?? []) {
      if (!/_proj\.weight$/.test(name)) continue;
      const merged = (losa.merged.get(name) as WeightTensor).data;
      for (let i = 0; i < w.data.length; i++) assert.equal(merged[i] === 0, w.data[i] === 0, `${name}[${i}]`);
    }
    assert.deepEqual(losa.ranks, rounds.at(-1)?.ranks);
    for (const m of losa.adapter.modules.values()) assert.equal(m.rank, losa.ranks?.[Number(/layers\.(\d+)\./.exec(m.name)?.[1])], m.name);
    assert.deepEqual(losa.pruning?.layers.map((l) => l.reconstructionError), rounds.at(-1)?.layers.map((l) => l.reconstructionError));
  });

  it('the merged model computes what the sparse base with the masked, per-layer-rank PEFT adapter computes', async () => {
    const losa = runs.get('losa 70') as FineTuneResult;
    const c = tiny.model.config;
    const base = losa.pruning?.weights as WeightMap;
    const lora = adapterToLora(losa.adapter);
    const masks = new Map([...lora.keys()].map((p) => [p, { shape: (base.get(`${p}.weight`) as WeightTensor).shape, data: nonzeroMask((base.get(`${p}.weight`) as WeightTensor).data) }]));
    const probe = calibrationWindows(held, 2, 32, 9);
    const logits = async (weights: WeightMap, extra?: Feeds): Promise<Float32Array> => {
      const paths = extra ? [...lora.keys()] : [];
      const session = await cache.forGraph(buildTrainingGraph(c, { weights, lora: paths, loraMasks: paths, wrt: [], logits: true }).graph);
      const ids = BigInt64Array.from(probe.flat(), (x) => BigInt(x));
      const feeds: Feeds = { input_ids: nn.tensor('int64', [2, 32], ids), position_ids: sequentialPositions(2, 32), targets: nn.tensor('int64', [2, 32], ids), loss_weights: nn.tensor('float32', [2, 32], new Float32Array(64)), ...extra };
      return (await session.run(feeds, ['logits'])).logits?.data as Float32Array;
    };
    const reference = await logits(base, { ...loraFeeds(lora), ...maskFeeds(masks, 'lora') });
    const merged = await logits(losa.merged);
    let diff = 0;
    let scale = 0;
    reference.forEach((v, i) => {
      diff = Math.max(diff, Math.abs(v - (merged[i] as number)));
      scale = Math.max(scale, Math.abs(v));
    });
    assert.ok(diff <= 1e-5 * scale, `max |Δlogit| ${diff} at logit scale ${scale}`);
  });

  it('perplexity: dense + LoRA < LoSA < one-shot Wanda at 50 % and 70 %, and LoSA within 2 % of SparsePEFT (not below it: see the comment)', () => {
    // Measured (held-out Moby Dick, 100 steps of batch 8 × 64 tokens, seed 3):
    //            dense+LoRA  LoSA   SparsePEFT  one-shot Wanda
    //   50 %     80.51       81.99  81.36       90.05
    //   70 %     80.51       82.58  82.39       93.19
    // LoSA does not beat SparsePEFT on this model, and no variant tried did (README, Sparse
    // fine-tuning): two blocks leave RMI nothing to choose (CKA ties), the base model is so
    // undertrained that one-shot pruning costs it little (89 → 93 at 70 %) while the held-out text
    // rewards any fine-tuning, and LoSA prunes exactly 70.00 % where per-row Wanda stops at 69.03 %.
    // What is asserted is what holds: the rounds recover as much as one-shot training, to 2 %.
    const p = (k: string): number => perplexity.get(k) as number;
    for (const s of [50, 70]) {
      assert.ok(p('dense') < p(`losa ${s}`), `${s} %: dense + LoRA ${p('dense')} vs LoSA ${p(`losa ${s}`)}`);
      assert.ok(p(`losa ${s}`) < p(`one-shot ${s}`) - 5, `${s} %: LoSA ${p(`losa ${s}`)} vs one-shot ${p(`one-shot ${s}`)}`);
      assert.ok(p(`losa ${s}`) < 1.02 * p(`sparsepeft ${s}`), `${s} %: LoSA ${p(`losa ${s}`)} vs SparsePEFT ${p(`sparsepeft ${s}`)}`);
      assert.ok(p(`sparsepeft ${s}`) < p(`one-shot ${s}`), `${s} %: SparsePEFT ${p(`sparsepeft ${s}`)} vs one-shot ${p(`one-shot ${s}`)}`);
    }
    assert.ok(p('losa 50') < p('losa 70'), 'less pruning, lower perplexity');
  });

  it('a run stopped in its third round resumes from that round\'s state and training checkpoint, on the uninterrupted run\'s path', async () => {
    const checkpointDir = join(dir, 'checkpoints');
    const training = { ...options().training, checkpointDir, checkpointEvery: 5 };
    const stop = new AbortController();
    const first = await fineTune(options({ training, signal: stop.signal, onTrainProgress: (p) => p.step === 27 && stop.abort() }));
    assert.equal(first.interrupted, true);
    assert.equal(first.losses.length, 27);
    const seen: LosaRound[] = [];
    const resumed = await fineTune(options({ training, onLosaRound: (r) => seen.push(r) }));
    assert.equal(resumed.interrupted, false);
    assert.equal(resumed.resumedFromStep, 27);
    assert.deepEqual(seen.map((r) => r.step), [4, 5], 'rounds 1–3 were not pruned again');
    const uninterrupted = runs.get('losa 70') as FineTuneResult;
    const worst = Math.max(...resumed.losses.map((l, i) => Math.abs(l - (uninterrupted.losses[i] as number))));
    assert.equal(resumed.losses.length, 100);
    assert.ok(worst <= 1e-5, `max |Δloss| ${worst}`);
    assert.ok(Math.abs(resumed.perplexityAfter - uninterrupted.perplexityAfter) <= 1e-4 * uninterrupted.perplexityAfter, `${resumed.perplexityAfter} vs ${uninterrupted.perplexityAfter}`);
  });

  it('2:4: every round prunes to the pattern, so the merged model keeps 2 of every 4 inputs', async () => {
    const seen: LosaRound[] = [];
    const r = await fineTune(options({
      sparsity: { pruner: 'sparsegpt', pattern: parsePattern('2:4', 50), schedule: { kind: 'cubic', steps: 3 }, layerwise: 'uniform' },
      training: { ...options().training, steps: 12 }, onLosaRound: (x) => seen.push(x),
    }));
    assert.deepEqual(seen.map((x) => x.percent), [50, 50, 50]);
    for (const [name, w] of r.merged) {
      if (!/_proj\.weight$/.test(name)) continue;
      for (let g = 0; g < w.data.length; g += 4) assert.equal(w.data.subarray(g, g + 4).filter((x) => x === 0).length, 2, `${name} at ${g}`);
    }
  });
});

describe('LoSA on a random four-block Llama', function () {
  this.timeout(120_000);
  const config: LlamaConfig = {
    modelType: 'llama', hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 4, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 8,
    rmsNormEps: 1e-6, ropeTheta: 10000, ropeScaling: null, maxPositionEmbeddings: 64, vocabSize: 64, tieWordEmbeddings: false, qkvBias: false, oProjBias: false, mlpBias: false,
  };
  const cache = new SessionCache({ intraOpThreads: 1 });
  after(() => cache.dispose());

  for (const pruner of PRUNERS) {
    it(`${pruner}: RMI spreads the blocks over S_t ± δ_t (most redundant hardest), every round exact and at the mean, ranks summing to L·r̄_t`, async () => {
      const rng = new Rng(2);
      const weights = initWeights(config, () => rng.normal(), 0.2);
      const tokens = Array.from({ length: 4000 }, () => rng.int(config.vocabSize));
      const seen: LosaRound[] = [];
      const r = await fineTune({
        method: 'losa', config, weights, train: tokens, eval: tokens.slice(0, 200), calibration: calibrationWindows(tokens, 8, 32, 1),
        sparsity: { pruner, pattern: parsePattern('unstructured', 60), schedule: { kind: 'cubic', steps: 5 }, layerwise: 'rmi' },
        // Adapters on three modules only: the other four cannot grow back what a round zeroed.
        adapter: { rank: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'], maxRank: 8, rankAllocation: 'reconstruction-error' },
        training: { steps: 10, batchSize: 4, sequenceLength: 32, learningRate: 1e-3, seed: 1 }, seed: 1, cache, onLosaRound: (x) => seen.push(x),
      });
      checkRounds(seen, config, { percent: 60, steps: 5, rank: 4, maxRank: 8 });
      for (const round of seen) {
        const imp = round.importance?.importance as number[];
        const order = [...imp.keys()].sort((a, b) => (imp[a] as number) - (imp[b] as number));
        const mean = round.percent / 100;
        // Four blocks of distinct importance: two at S_t + δ_t, two at S_t − δ_t.
        assert.deepEqual(order.map((l) => Math.round(((round.rates[l] as number) - mean) / round.delta)), [1, 1, -1, -1], `round ${round.step}: importance ${imp}, rates ${round.rates}`);
      }
      assert.equal(modelSparsity(config, r.merged).zeros, prunedCount(60, sizes(config).model));
      assert.equal(r.adapter.modules.get(linearPath(3, 'q_proj'))?.rank, r.ranks?.[3]);
    });
  }
});
