// lora and sparsepeft runs on a pretrained tiny Llama: the merged model keeps the pruned sparsity
// exactly and computes what base + (masked) adapter computes; training lowers held-out perplexity;
// a run stopped by a signal resumes from its checkpoint on the same loss curve.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LlamaConfig } from '../../../../worker/model/llama/config.js';
import { type Feeds, loraFeeds, maskFeeds, sequentialPositions } from '../../../../worker/model/llama/feeds.js';
import { buildTrainingGraph } from '../../../../worker/model/llama/graph.js';
import { type WeightMap, type WeightTensor } from '../../../../worker/model/llama/weights.js';
import { adapterToLora } from '../../../../worker/modes/load-model.js';
import { calibrationWindows } from '../../../../worker/modes/train-inputs.js';
import * as nn from '../../../../worker/onnx/index.js';
import { SessionCache } from '../../../../worker/onnx/session.js';
import { type FineTuneOptions, type FineTuneResult, fineTune } from '../../../../worker/train/sparse/finetune.js';
import { nonzeroMask } from '../../../../worker/train/sparse/merge.js';
import { parsePattern } from '../../../../worker/train/sparse/pattern.js';
import { pretrainedTiny, type TinyFixture } from './fixture.js';

const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

/** Logits [B, T, vocab] of `weights` (+ an adapter, masked or not) on fixed windows. */
async function logits(cache: SessionCache, c: LlamaConfig, weights: WeightMap, windows: number[][], extra?: { lora: ReturnType<typeof adapterToLora>; masks?: Map<string, WeightTensor> }): Promise<Float32Array> {
  const lora = extra ? [...extra.lora.keys()] : [];
  const graph = buildTrainingGraph(c, { weights, lora, loraMasks: extra?.masks ? lora : [], wrt: [], logits: true }).graph;
  const session = await cache.forGraph(graph);
  const [b, t] = [windows.length, (windows[0] as number[]).length];
  const ids = BigInt64Array.from(windows.flat(), (x) => BigInt(x));
  const feeds: Feeds = {
    input_ids: nn.tensor('int64', [b, t], ids), position_ids: sequentialPositions(b, t), targets: nn.tensor('int64', [b, t], ids), loss_weights: nn.tensor('float32', [b, t], new Float32Array(b * t)),
    ...(extra ? loraFeeds(extra.lora) : {}), ...(extra?.masks ? maskFeeds(extra.masks, 'lora') : {}),
  };
  return (await session.run(feeds, ['logits'])).logits?.data as Float32Array;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs((a[i] as number) - (b[i] as number)));
    scale = Math.max(scale, Math.abs(a[i] as number));
  }
  return { diff, scale };
}

describe('fine-tuning lora and sparsepeft', function () {
  this.timeout(180_000);
  const cache = new SessionCache({ intraOpThreads: 1 });
  let tiny: TinyFixture;
  let dir: string;
  let options: (over?: Partial<FineTuneOptions>) => FineTuneOptions;
  let sparse: FineTuneResult;
  let dense: FineTuneResult;
  let probe: number[][];

  before(async () => {
    tiny = await pretrainedTiny();
    dir = mkdtempSync(join(tmpdir(), 'tessera-finetune-'));
    const cut = Math.floor(tiny.tokens.length * 0.9);
    const [train, held] = [tiny.tokens.slice(0, cut), tiny.tokens.slice(cut)];
    probe = calibrationWindows(held, 2, 32, 9);
    options = (over = {}) => ({
      method: 'sparsepeft', config: tiny.model.config, weights: tiny.model.weights, train, eval: held,
      calibration: calibrationWindows(train, 32, 64, 1), sparsity: { pruner: 'wanda', pattern: parsePattern('unstructured', 50) },
      adapter: { rank: 4, alpha: 8, targetModules: ALL },
      training: { steps: 30, batchSize: 8, sequenceLength: 64, learningRate: 5e-3, warmupSteps: 3, minLrRatio: 0, seed: 3 },
      seed: 3, cache, ...over,
    });
    sparse = await fineTune(options());
    dense = await fineTune(options({ method: 'lora', sparsity: undefined, calibration: undefined }));
  });
  after(async () => {
    await cache.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sparsepeft: the merged model is exactly as sparse as the pruned base, zero for zero', () => {
    assert.equal(sparse.sparsity.percent, 50);
    assert.deepEqual(sparse.sparsity.layers.map((l) => l.sparsityPercent), [50, 50]);
    for (const [name, w] of sparse.pruning?.weights ?? []) {
      if (!/_proj\.weight$/.test(name)) continue;
      const merged = (sparse.merged.get(name) as WeightTensor).data;
      for (let i = 0; i < w.data.length; i++) assert.equal(merged[i] === 0, w.data[i] === 0, `${name}[${i}]`);
    }
    // The adapter learned something: the merge changed the nonzero weights.
    const q = 'model.layers.0.self_attn.q_proj.weight';
    assert.notDeepEqual([...(sparse.merged.get(q) as WeightTensor).data], [...(sparse.pruning?.weights.get(q) as WeightTensor).data]);
  });

  it('sparsepeft: the merged model\'s logits are those of the pruned base with the masked adapter', async () => {
    const c = tiny.model.config;
    const base = sparse.pruning?.weights as WeightMap;
    const lora = adapterToLora(sparse.adapter);
    const masks = new Map([...lora.keys()].map((p) => [p, { shape: (base.get(`${p}.weight`) as WeightTensor).shape, data: nonzeroMask((base.get(`${p}.weight`) as WeightTensor).data) }]));
    const reference = await logits(cache, c, base, probe, { lora, masks });
    const { diff, scale } = maxAbsDiff(reference, await logits(cache, c, sparse.merged, probe));
    assert.ok(diff <= 1e-5 * scale, `max |Δlogit| ${diff} at logit scale ${scale}`);
    // Unmasked, the same adapter is a different model: the mask is not a formality.
    const unmasked = maxAbsDiff(reference, await logits(cache, c, base, probe, { lora }));
    assert.ok(unmasked.diff > 100 * diff, `unmasked differs by ${unmasked.diff}`);
  });

  it('lora: the merged model\'s logits are those of the base with the adapter, and nothing is pruned', async () => {
    const c = tiny.model.config;
    const reference = await logits(cache, c, tiny.model.weights, probe, { lora: adapterToLora(dense.adapter) });
    const { diff, scale } = maxAbsDiff(reference, await logits(cache, c, dense.merged, probe));
    assert.ok(diff <= 1e-4 * scale, `max |Δlogit| ${diff} at logit scale ${scale}`);
    assert.equal(dense.pruning, undefined);
    assert.ok(dense.sparsity.percent < 0.01, `${dense.sparsity.percent}% zeros`);
  });

  it('training lowers the held-out perplexity for both methods, and pruning raised it first', () => {
    assert.ok(sparse.perplexityAfter < 0.97 * sparse.perplexityBefore, `sparsepeft ${sparse.perplexityBefore} → ${sparse.perplexityAfter}`);
    assert.ok(dense.perplexityAfter < 0.97 * dense.perplexityBefore, `lora ${dense.perplexityBefore} → ${dense.perplexityAfter}`);
    assert.ok(sparse.perplexityBefore > dense.perplexityBefore, `pruned ${sparse.perplexityBefore} vs dense ${dense.perplexityBefore}`);
    assert.equal(sparse.losses.length, 30);
  });

  it('a run stopped by its signal resumes from the checkpoint on the uninterrupted loss curve', async () => {
    const checkpointDir = join(dir, 'checkpoints');
    const stop = new AbortController();
    const training = { ...options().training, checkpointEvery: 100, checkpointDir };
    const first = await fineTune(options({ training, signal: stop.signal, onTrainProgress: (p) => p.step === 12 && stop.abort() }));
    assert.equal(first.interrupted, true);
    assert.equal(first.losses.length, 12);
    assert.ok(Number.isNaN(first.perplexityAfter));
    const resumed = await fineTune(options({ training }));
    assert.equal(resumed.interrupted, false);
    assert.equal(resumed.resumedFromStep, 12);
    const worst = Math.max(...resumed.losses.map((l, i) => Math.abs(l - (sparse.losses[i] as number))));
    assert.ok(worst <= 1e-5, `max |Δloss| ${worst}`);
    assert.ok(Math.abs(resumed.perplexityAfter - sparse.perplexityAfter) <= 1e-3 * sparse.perplexityAfter, `${resumed.perplexityAfter} vs ${sparse.perplexityAfter}`);
  });
});
