// Training-step throughput of a small Llama (d=256, 4 layers, ffn 1024, batch 8×128) through
// the training graph: full fine-tuning and LoRA-only, one session run per step plus the
// TypeScript AdamW update. Printed, not asserted. Not a timed test.
// Run: npx tsx bench/kernels-train.ts
// FLOPs per token: full = 6·N (forward 2N, backward 4N, N = weight matrices' parameters);
// LoRA-only = 4·N (no weight gradients for the frozen base). Attention score FLOPs are added.
import { type LlamaConfig, initWeights, linearPath, numParameters } from '../worker/model/llama/index.js';
import { SessionCache } from '../worker/onnx/session.js';
import { countTokens, sampleBatch } from '../worker/train/data.js';
import { createLlamaTrainModel, type TrainModel } from '../worker/train/model-step.js';
import { AdamW } from '../worker/train/optimizer.js';
import { Rng } from '../worker/train/rng.js';

const config: LlamaConfig = {
  modelType: 'llama',
  hiddenSize: 256,
  intermediateSize: 1024,
  numHiddenLayers: 4,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 64,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  ropeScaling: null,
  maxPositionEmbeddings: 512,
  vocabSize: 2048,
  tieWordEmbeddings: false,
  qkvBias: false,
  oProjBias: false,
  mlpBias: false,
};
const [BATCH, SEQ] = [8, 128];
const STEPS = Number(process.env.STEPS ?? 5);

async function measure(name: string, model: TrainModel, flopsPerToken: number): Promise<string> {
  const rng = new Rng(1);
  const corpus = Array.from({ length: 20000 }, () => rng.int(config.vocabSize));
  const opt = new AdamW({ weightDecay: 0 });
  const step = async (): Promise<number> => {
    const batch = sampleBatch(corpus, BATCH, SEQ, (n) => rng.int(n));
    const count = countTokens([batch]);
    const t0 = performance.now();
    const r = await model.lossAndGradients(batch, batch.mask.map((x) => x / count));
    opt.step(model.params, r.grads, 1e-4);
    return (performance.now() - t0) / 1000;
  };
  await step(); // warm-up: the first run allocates and packs
  const times: number[] = [];
  for (let i = 0; i < STEPS; i++) times.push(await step());
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)] as number;
  const tokens = BATCH * SEQ;
  const gflops = (flopsPerToken * tokens) / median / 1e9;
  await model.dispose();
  return `${name.padEnd(10)} ${(median * 1e3).toFixed(0).padStart(9)} ${(tokens / median).toFixed(0).padStart(9)} ${gflops.toFixed(1).padStart(9)}`;
}

async function main(): Promise<void> {
  const cache = new SessionCache({ intraOpThreads: Number(process.env.THREADS ?? 2) });
  const rng = new Rng(0);
  const weights = initWeights(config, () => rng.normal());
  // Matrix parameters (embedding lookup is not a matmul; the LM head is).
  const n = numParameters(config) - config.vocabSize * config.hiddenSize;
  const attention = 2 * 2 * config.numHiddenLayers * SEQ * config.numAttentionHeads * config.headDim; // QKᵀ and PV, forward, per token (full T×T)
  const targets = Array.from({ length: config.numHiddenLayers }, (_, l) => ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((m) => linearPath(l, m as 'q_proj'))).flat();

  const rows = [
    await measure('full', await createLlamaTrainModel({ config, weights, mode: 'full', cache, random: () => rng.next() }), 6 * n + 3 * attention),
    await measure('lora r16', await createLlamaTrainModel({ config, weights, mode: 'lora', lora: { targets, rank: 16, alpha: 32 }, cache, random: () => rng.next() }), 4 * n + 3 * attention),
  ];
  await cache.dispose();
  console.log(`model: d=${config.hiddenSize}, ${config.numHiddenLayers} layers, ffn ${config.intermediateSize}, vocab ${config.vocabSize}, ${(numParameters(config) / 1e6).toFixed(2)}M params; batch ${BATCH}×${SEQ}; ${STEPS} timed steps`);
  console.log(`${'gradients'.padEnd(10)} ${'median ms'.padStart(9)} ${'tokens/s'.padStart(9)} ${'GFLOP/s'.padStart(9)}`);
  for (const r of rows) console.log(r);
  console.log(`RESULT kernels-train ${rows.map((r) => r.trim().split(/\s+/).join(' ')).join(' | ')} (name ms tok/s GFLOP/s)`);
}

await main();
