// The training loop on a tiny random Llama: the loss falls, accumulation equals one big batch,
// and a run resumed from a checkpoint continues the same loss curve.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LlamaConfig, initWeights, linearPath } from '../../../worker/model/llama/index.js';
import { SessionCache } from '../../../worker/onnx/session.js';
import { countTokens, sampleBatch } from '../../../worker/train/data.js';
import { createLlamaTrainModel, type TrainModel } from '../../../worker/train/model-step.js';
import { type Progress, train } from '../../../worker/train/loop.js';
import { Rng } from '../../../worker/train/rng.js';
import { latestCheckpoint } from '../../../worker/train/checkpoint.js';

const config: LlamaConfig = {
  modelType: 'llama',
  hiddenSize: 32,
  intermediateSize: 64,
  numHiddenLayers: 2,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 8,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  ropeScaling: null,
  maxPositionEmbeddings: 64,
  vocabSize: 32,
  tieWordEmbeddings: false,
  qkvBias: false,
  oProjBias: false,
  mlpBias: false,
};

const rng = new Rng(7);
const weights = initWeights(config, () => rng.normal(), 0.05);
/** A repetitive toy corpus: the phrase 0..11 over and over. */
const corpus = Array.from({ length: 600 }, (_, i) => i % 12);
const cache = new SessionCache({ intraOpThreads: 1 });

function fullModel(): Promise<TrainModel> {
  return createLlamaTrainModel({ config, weights, mode: 'full', cache, random: () => 0 });
}

function loraModel(): Promise<TrainModel> {
  const r = new Rng(3);
  const targets = [0, 1].flatMap((l) => [linearPath(l, 'q_proj'), linearPath(l, 'v_proj')]);
  return createLlamaTrainModel({ config, weights, mode: 'lora', lora: { targets, rank: 4, alpha: 8 }, cache, random: () => r.next() });
}

describe('training loop', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'tessera-train-'))));
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await cache.dispose();
  });

  it('full fine-tuning more than halves the loss on a repetitive corpus within 50 steps', async () => {
    const model = await fullModel();
    const seen: Progress[] = [];
    const result = await train({
      model,
      train: corpus,
      eval: corpus.slice(0, 200),
      config: { steps: 50, batchSize: 4, sequenceLength: 16, learningRate: 1e-2, warmupSteps: 5, evalBatches: 2 },
      onProgress: (p) => seen.push(p),
    });
    const first = result.losses[0]!;
    const last = result.losses.at(-1)!;
    assert.ok(last < 0.5 * first, `loss went from ${first} to ${last}`);
    assert.ok(result.perplexity !== null && result.perplexity < Math.exp(0.5 * first), `held-out perplexity ${result.perplexity}`);
    assert.equal(seen.length, 50);
    assert.deepEqual([seen[0]!.step, seen[0]!.totalSteps], [1, 50]);
    assert.ok(seen.every((p) => p.tokensPerSecond > 0 && p.etaSeconds >= 0));
    assert.equal(seen.at(-1)!.evalLoss, result.evalLoss);
    await model.dispose();
  });

  it('LoRA-only training lowers the loss with the base weights frozen', async () => {
    const model = await loraModel();
    assert.ok([...model.params.keys()].every((k) => k.includes('.lora_')));
    const result = await train({ model, train: corpus, config: { steps: 20, batchSize: 4, sequenceLength: 16, learningRate: 3e-2 } });
    assert.ok(result.losses.at(-1)! < result.losses[0]! - 0.1, `loss went from ${result.losses[0]} to ${result.losses.at(-1)}`);
    await model.dispose();
  });

  it('two accumulated half-batches give the gradient of the full batch', async () => {
    const model = await fullModel();
    const full = sampleBatch(corpus, 4, 16, (n) => (n * 0.37) | 0);
    const halves = [0, 1].map((h) => ({
      batch: 2,
      seqLen: 16,
      inputIds: full.inputIds.slice(h * 32, (h + 1) * 32),
      targets: full.targets.slice(h * 32, (h + 1) * 32),
      mask: full.mask.slice(h * 32, (h + 1) * 32),
    }));
    const count = countTokens([full]);
    const whole = await model.lossAndGradients(full, full.mask.map((x) => x / count));
    const parts = await Promise.all(halves.map((b) => model.lossAndGradients(b, b.mask.map((x) => x / count))));
    assert.ok(Math.abs(parts[0]!.loss + parts[1]!.loss - whole.loss) < 1e-5);
    let worst = 0;
    for (const [name, g] of whole.grads) {
      const a = parts[0]!.grads.get(name)!;
      const b = parts[1]!.grads.get(name)!;
      for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(a[i]! + b[i]! - g[i]!));
    }
    assert.ok(worst < 1e-5, `max |Δgrad| = ${worst}`);
    await model.dispose();
  });

  it('a run stopped at step 4 and resumed from its checkpoint reproduces the uninterrupted loss curve', async () => {
    const cfg = { steps: 8, batchSize: 4, microBatches: 2, sequenceLength: 16, learningRate: 5e-3, warmupSteps: 2, evalBatches: 1 };
    const heldOut = corpus.slice(0, 100);
    const straight = await fullModel();
    const all = await train({ model: straight, train: corpus, eval: heldOut, config: { ...cfg, evalEvery: 2 } });
    await straight.dispose();

    const stop = new AbortController();
    const first = await fullModel();
    const root = join(dir, 'run');
    const part = await train({ model: first, train: corpus, eval: heldOut, config: { ...cfg, evalEvery: 2, checkpointEvery: 100, checkpointDir: root }, signal: stop.signal, onProgress: (p) => p.step === 4 && stop.abort() });
    await first.dispose();
    assert.equal(part.losses.length, 4);
    const saved = await latestCheckpoint(root);
    assert.equal(saved, join(root, 'checkpoint-4'));

    const second = await fullModel();
    const resumed = await train({ model: second, train: corpus, eval: heldOut, config: { ...cfg, evalEvery: 2 }, resumeFrom: saved! });
    await second.dispose();
    assert.equal(resumed.losses.length, 8);
    const worst = Math.max(...resumed.losses.map((l, i) => Math.abs(l - all.losses[i]!)));
    assert.ok(worst <= 1e-6, `max |Δloss| = ${worst}: ${resumed.losses.join(', ')} vs ${all.losses.join(', ')}`);
    assert.equal(resumed.bestLoss, all.bestLoss);
  });
});
