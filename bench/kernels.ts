// Kernels, side by side in one run, for the demo-size pretrained model (d=256, 4 layers,
// GQA 4/2 heads, ffn 704, vocab 2048, batch 8×128):
//   (a) ORT MatMul GFLOP/s at the model's own shapes (the bar a training graph can reach);
//   (b) training-step tokens/s and achieved GFLOP/s, full gradients and LoRA-only gradients;
//   (c) the same step in PyTorch on CPU with the same threads, from a venv that bench/torch-env.ts
//       sets up once under ~/.cache/tessera (or "unavailable" with the reason it could not);
//   (d) decode tokens/s with the KV cache at batch 1 and 32.
// Not a timed test: it prints a table and one RESULT line. Run: npm run bench -- kernels
// Env: THREADS (default 2), STEPS (timed training steps, default 5), WAIT (sleep | spin).
// The torch steps are timed once per run; ours twice (before and after), the faster kept.
// WAIT sets how idle worker threads wait on both sides alike: ORT's allow_spinning and
// libgomp's OMP_WAIT_POLICY. The default, sleep, because the machine is shared: spinning
// threads collapse when cores are oversubscribed (measured under the same load: PyTorch's full
// step 4.95 s spinning vs 0.35 s passive; ours 0.7–1.8 s vs 0.5–1.2 s). WAIT=spin measures the
// libraries' defaults, which an idle machine favours.
//
// FLOPs per token (as bench/kernels-train.ts): full = 6·N, LoRA-only = 4·N (no weight
// gradients for the frozen base), N = parameters of the weight matrices (the embedding lookup
// is not a matmul; the LM head is), plus 3× the forward attention-score FLOPs.
// kernels-matmul.ts and kernels-train.ts run themselves on import (top-level await) and export
// nothing, so the two small timing loops they hold are restated here for the model's shapes.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildDecodeGraph, buildPrefillGraph, type Feeds, initWeights, type LlamaConfig, linearPath, numParameters, pastName, prefillFeeds, presentName, type WeightMap } from '../worker/model/llama/index.js';
import { PRESETS } from '../worker/modes/pretrain.js';
import * as nn from '../worker/onnx/index.js';
import { SessionCache } from '../worker/onnx/session.js';
import { countTokens, sampleBatch } from '../worker/train/data.js';
import { createLlamaTrainModel, type TrainModel } from '../worker/train/model-step.js';
import { AdamW } from '../worker/train/optimizer.js';
import { Rng } from '../worker/train/rng.js';
import { torchPython } from './torch-env.js';

const THREADS = Number(process.env.THREADS ?? 2);
const WAIT = process.env.WAIT ?? 'sleep';
if (WAIT !== 'sleep' && WAIT !== 'spin') throw new Error(`invalid WAIT ${JSON.stringify(WAIT)}: expected one of sleep, spin`);
const STEPS = Number(process.env.STEPS ?? 5);
const LORA_RANK = 16;
const DECODE = { prompt: 32, steps: 48 };
const preset = PRESETS.demo;
const [BATCH, SEQ] = [preset.batchSize, preset.sequenceLength];

const config: LlamaConfig = {
  modelType: 'llama',
  hiddenSize: preset.hiddenSize,
  intermediateSize: preset.ffn,
  numHiddenLayers: preset.layers,
  numAttentionHeads: preset.heads,
  numKeyValueHeads: preset.kvHeads,
  headDim: preset.hiddenSize / preset.heads,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeScaling: null,
  maxPositionEmbeddings: 256,
  vocabSize: preset.vocabSize,
  tieWordEmbeddings: false,
  qkvBias: false,
  oProjBias: false,
  mlpBias: false,
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function timeIt(run: () => Promise<unknown>, iters: number): Promise<number> {
  await run(); // warm-up: the first run allocates and packs weights
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await run();
    times.push((performance.now() - t0) / 1000);
  }
  return median(times);
}

interface MatmulRow {
  name: string;
  m: number;
  k: number;
  n: number;
  seconds: number;
}

/** (a) The projections of one forward pass over BATCH·SEQ rows, each timed as its own MatMul. */
async function matmuls(cache: SessionCache): Promise<MatmulRow[]> {
  const rows = BATCH * SEQ;
  const d = config.hiddenSize;
  const q = config.numAttentionHeads * config.headDim;
  const kv = config.numKeyValueHeads * config.headDim;
  const shapes: Array<[string, number, number, number]> = [
    ['q_proj, o_proj', rows, d, q],
    ['k_proj, v_proj', rows, d, kv],
    ['gate/up_proj', rows, d, config.intermediateSize],
    ['down_proj', rows, config.intermediateSize, d],
    ['lm_head', rows, d, config.vocabSize],
  ];
  const out: MatmulRow[] = [];
  for (const [name, m, k, n] of shapes) {
    const g = new nn.Graph(`matmul-${m}x${k}x${n}`);
    g.output(nn.matmul(g.input('a', 'float32', [m, k]), g.input('b', 'float32', [k, n])), 'c');
    const session = await cache.forGraph(g);
    const feeds = {
      a: nn.tensor('float32', [m, k], Float32Array.from({ length: m * k }, (_, i) => ((i * 7) % 13) / 13)),
      b: nn.tensor('float32', [k, n], Float32Array.from({ length: k * n }, (_, i) => ((i * 5) % 11) / 11)),
    };
    const iters = Math.max(5, Math.min(100, Math.round(2e9 / (2 * m * k * n))));
    out.push({ name, m, k, n, seconds: await timeIt(() => session.run(feeds), iters) });
    await session.dispose();
  }
  return out;
}

/** FLOP-weighted rate of a forward pass's projections: each shape counted as often as the model runs it. */
function modelShapeRate(rows: MatmulRow[]): number {
  const counts: Record<string, number> = { 'q_proj, o_proj': 2 * config.numHiddenLayers, 'k_proj, v_proj': 2 * config.numHiddenLayers, 'gate/up_proj': 2 * config.numHiddenLayers, down_proj: config.numHiddenLayers, lm_head: 1 };
  let flops = 0;
  let seconds = 0;
  for (const r of rows) {
    const c = counts[r.name] ?? 0;
    flops += c * 2 * r.m * r.k * r.n;
    seconds += c * r.seconds;
  }
  return flops / seconds / 1e9;
}

interface TrainRow {
  name: string;
  ms: number;
  tokensPerSecond: number;
  gflops: number;
}

/** (b) One optimizer step: the training session run plus the TypeScript AdamW update. */
async function trainStep(name: string, model: TrainModel, flopsPerToken: number): Promise<TrainRow> {
  const rng = new Rng(1);
  const corpus = Array.from({ length: 20000 }, () => rng.int(config.vocabSize));
  const opt = new AdamW({ weightDecay: 0 });
  const seconds = await timeIt(async () => {
    const batch = sampleBatch(corpus, BATCH, SEQ, (n) => rng.int(n));
    const count = countTokens([batch]);
    const r = await model.lossAndGradients(batch, batch.mask.map((x) => x / count));
    opt.step(model.params, r.grads, 1e-4);
  }, STEPS);
  await model.dispose();
  const tokens = BATCH * SEQ;
  return { name, ms: seconds * 1e3, tokensPerSecond: tokens / seconds, gflops: (flopsPerToken * tokens) / seconds / 1e9 };
}

interface TorchResult {
  torch: string;
  threads: number;
  full: { ms: number; tokens_per_s: number };
  lora: { ms: number; tokens_per_s: number };
}

/** (c) bench/reference/torch_train_step.py, or the reason it could not run. */
function torchStep(): TorchResult | string {
  const env = torchPython();
  if (typeof env === 'string') return `unavailable (${env})`;
  const script = join(dirname(fileURLToPath(import.meta.url)), 'reference', 'torch_train_step.py');
  const args = {
    hidden: config.hiddenSize, head_dim: config.headDim, heads: config.numAttentionHeads, kv_heads: config.numKeyValueHeads, ffn: config.intermediateSize,
    layers: config.numHiddenLayers, vocab: config.vocabSize, eps: config.rmsNormEps, rope_theta: config.ropeTheta,
    seq: SEQ, batch: BATCH, lora_rank: LORA_RANK, threads: THREADS, steps: STEPS,
  };
  const run = spawnSync(env.python, [script, JSON.stringify(args)], { encoding: 'utf8', timeout: 600_000, env: { ...process.env, OMP_WAIT_POLICY: WAIT === 'spin' ? 'ACTIVE' : 'PASSIVE' } });
  if (run.status !== 0) return `unavailable (${script} exited ${run.status}: ${run.stderr.trim().split('\n').at(-1) ?? ''})`;
  return JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as TorchResult;
}

/** (d) Tokens/s of the decode graph (all layers in one run) after a DECODE.prompt-token prefill. */
async function decodeRate(cache: SessionCache, weights: WeightMap, batch: number): Promise<number> {
  const prefill = await cache.forGraph(buildPrefillGraph(config, { weights }).graph);
  const decode = await cache.forGraph(buildDecodeGraph(config, { weights }).graph);
  const prompts = Array.from({ length: batch }, (_, b) => Array.from({ length: DECODE.prompt }, (_, i) => (b * 31 + i * 7) % config.vocabSize));
  const { feeds } = prefillFeeds(prompts);
  const first = await prefill.run(feeds);
  const run = async (): Promise<void> => {
    let out = first;
    for (let s = 0; s < DECODE.steps; s++) {
      const p = DECODE.prompt + s;
      const f: Feeds = {
        input_ids: nn.tensor('int64', [batch, 1], BigInt64Array.from({ length: batch }, (_, b) => BigInt((b + s) % config.vocabSize))),
        position_ids: nn.tensor('int64', [batch, 1], BigInt64Array.from({ length: batch }, () => BigInt(p))),
        attention_mask: nn.tensor('int64', [batch, p + 1], new BigInt64Array(batch * (p + 1)).fill(1n)),
      };
      for (let l = 0; l < config.numHiddenLayers; l++) {
        for (const kv of ['key', 'value'] as const) f[pastName(l, kv)] = out[presentName(l, kv)] as nn.Tensor;
      }
      out = await decode.run(f);
    }
  };
  const seconds = await timeIt(run, 3);
  await prefill.dispose();
  await decode.dispose();
  return (batch * DECODE.steps) / seconds;
}

const fmt = (x: number, digits = 1): string => x.toFixed(digits);
const pad = (cells: string[], widths: number[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[0] as number) : c.padStart(widths[i] as number))).join(' ');

async function main(): Promise<void> {
  const cache = new SessionCache({ intraOpThreads: THREADS, spinning: WAIT === 'spin' });
  const rng = new Rng(0);
  const weights = initWeights(config, () => rng.normal());
  const n = numParameters(config) - config.vocabSize * config.hiddenSize;
  const attention = 2 * 2 * config.numHiddenLayers * SEQ * config.numAttentionHeads * config.headDim;
  const targets = Array.from({ length: config.numHiddenLayers }, (_, l) => (['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const).map((m) => linearPath(l, m))).flat();

  // The machine is shared: our kernels are timed before and after PyTorch and the faster of
  // the two medians kept, so a burst of load elsewhere does not land on one side only.
  const ours = async (): Promise<{ mm: MatmulRow[]; train: TrainRow[] }> => ({
    mm: await matmuls(cache),
    train: [
      await trainStep('ours full', await createLlamaTrainModel({ config, weights, mode: 'full', cache, random: () => rng.next() }), 6 * n + 3 * attention),
      await trainStep(`ours lora r${LORA_RANK}`, await createLlamaTrainModel({ config, weights, mode: 'lora', lora: { targets, rank: LORA_RANK, alpha: 2 * LORA_RANK }, cache, random: () => rng.next() }), 4 * n + 3 * attention),
    ],
  });
  const first = await ours();
  const torch = torchStep();
  const second = await ours();
  const mm = first.mm.map((r, i) => (r.seconds <= (second.mm[i] as MatmulRow).seconds ? r : (second.mm[i] as MatmulRow)));
  const train = first.train.map((r, i) => (r.ms <= (second.train[i] as TrainRow).ms ? r : (second.train[i] as TrainRow)));
  const mmRate = modelShapeRate(mm);
  const decode1 = await decodeRate(cache, weights, 1);
  const decode32 = await decodeRate(cache, weights, 32);
  await cache.dispose();

  console.log(`model: d=${config.hiddenSize}, ${config.numHiddenLayers} layers, heads ${config.numAttentionHeads}/${config.numKeyValueHeads} kv, ffn ${config.intermediateSize}, vocab ${config.vocabSize}, ${fmt(numParameters(config) / 1e6, 2)}M params; batch ${BATCH}×${SEQ}; ${THREADS} threads that ${WAIT} when idle; ${STEPS} timed steps`);
  console.log('\n(a) ORT MatMul at the model shapes');
  const wa = [16, 18, 10, 9];
  console.log(pad(['matmul', 'M×K×N', 'median ms', 'GFLOP/s'], wa));
  for (const r of mm) console.log(pad([r.name, `${r.m}×${r.k}×${r.n}`, fmt(r.seconds * 1e3, 2), fmt((2 * r.m * r.k * r.n) / r.seconds / 1e9)], wa));
  console.log(pad(['forward mix', '(FLOP-weighted)', '', fmt(mmRate)], wa));

  console.log('\n(b, c) training step (forward + backward + AdamW)');
  const wb = [16, 10, 10, 9, 12];
  console.log(pad(['gradients', 'median ms', 'tokens/s', 'GFLOP/s', 'vs MatMul'], wb));
  for (const r of train) console.log(pad([r.name, fmt(r.ms, 0), fmt(r.tokensPerSecond, 0), fmt(r.gflops), `${fmt((100 * r.gflops) / mmRate, 0)}%`], wb));
  if (typeof torch === 'string') console.log(`PyTorch: ${torch}`);
  else {
    for (const [mode, r] of [['full', torch.full], ['lora', torch.lora]] as const) {
      const ours = train[mode === 'full' ? 0 : 1] as TrainRow;
      console.log(pad([`torch ${mode}`, fmt(r.ms, 0), fmt(r.tokens_per_s, 0), fmt(r.tokens_per_s * (ours.gflops / ours.tokensPerSecond)), `ours ${fmt(ours.tokensPerSecond / r.tokens_per_s, 2)}×`], wb));
    }
    console.log(`(PyTorch ${torch.torch}, ${torch.threads} threads, CPU, scaled_dot_product_attention)`);
  }

  console.log('\n(d) decode with the KV cache (one graph run per token, all layers)');
  console.log(`batch 1:  ${fmt(decode1, 0)} tokens/s (${fmt(1000 / decode1, 2)} ms/step)`);
  console.log(`batch 32: ${fmt(decode32, 0)} tokens/s (${fmt((32 * 1000) / decode32, 2)} ms/step)`);

  const full = train[0] as TrainRow;
  const keys = [`train_gflops_ratio_to_matmul=${fmt(full.gflops / mmRate, 2)}`];
  if (typeof torch !== 'string') keys.push(`vs_torch=${fmt(full.tokensPerSecond / torch.full.tokens_per_s, 2)}`);
  keys.push(`decode_tok_s_b32=${fmt(decode32, 0)}`);
  console.log(`RESULT kernels ${keys.join(' ')}`);
}

await main();
