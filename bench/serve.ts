// Serving throughput with many adapters, side by side in one run: the batching engine (the
// one `tessera-worker serve` runs, here in process without HTTP) generating for a stream of
// requests that each pick one of N adapters uniformly at random, N = 1, 64, 1024:
//   merged — the base model alone: the cost of one adapter merged into the weights (the ceiling);
//   lora   — N uncompressed rank-r LoRA adapters, gathered per row as vLLM/S-LoRA batch them;
//   jd     — the same N adapters as a JD bundle: C clusters of rank-R shared bases, an R×R Σ
//            per adapter (the form `serve` uses for bundles).
// Adapter values are random (throughput does not depend on them); shapes follow the design's
// anchors: rank-8 LoRA on q, k, v, o (S-LoRA's setting), JD rank 16 with up to 4 clusters, so
// the shared bases stay a small fraction of the hidden size as in the paper's 7 × rank 64 on d=4096.
// Not a timed test: it prints a table and one RESULT line. Run: npm run bench -- serve
// Env: THREADS (ORT intra-op threads, default 2), D (hidden size, default 512), REQUESTS (per
// run, default 128), BATCH (max sequences per step, default 64), PROMPT / NEW (tokens, default 32 / 32),
// REPEAT (default 2: the three variants run interleaved this many times and the best of each
// counts, since the shared machine's load swings more than the differences measured).
import { basisKey, JD_BUNDLE_FORMAT, JD_BUNDLE_VERSION, type JdBundle, sigmaKey } from '../worker/formats/jd-bundle.js';
import { makeTensor, type F32Tensor } from '../worker/formats/tensor.js';
import { initWeights, type LlamaConfig, linearPath, linearShape, type LoraWeights, numParameters, type WeightMap } from '../worker/model/llama/index.js';
import { type AdapterPack, type AdapterRoute, BASE_ROUTE, packAdapters, packBytes } from '../worker/serve/adapter-pack.js';
import { EngineCore, type EngineEvent } from '../worker/serve/engine-core.js';
import { ModelRunner } from '../worker/serve/model-runner.js';
import { GREEDY } from '../worker/serve/sampling.js';
import { Rng } from '../worker/train/rng.js';

const THREADS = Number(process.env.THREADS ?? 2);
const D = Number(process.env.D ?? 512);
const REQUESTS = Number(process.env.REQUESTS ?? 128);
const BATCH = Number(process.env.BATCH ?? 64);
const PROMPT = Number(process.env.PROMPT ?? 32);
const NEW = Number(process.env.NEW ?? 32);
const REPEAT = Number(process.env.REPEAT ?? 2);
const COUNTS = [1, 64, 1024];
const LORA_RANK = 8;
const JD_RANK = 16;
const MAX_CLUSTERS = 4;
const MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;

const config: LlamaConfig = {
  modelType: 'llama', hiddenSize: D, intermediateSize: Math.round((D * 11) / 4 / 64) * 64, numHiddenLayers: 4,
  numAttentionHeads: D / 64, numKeyValueHeads: D / 128, headDim: 64, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null,
  maxPositionEmbeddings: 512, vocabSize: 2048, tieWordEmbeddings: false, qkvBias: false, oProjBias: false, mlpBias: false,
};
const rng = new Rng(1);
const weights: WeightMap = initWeights(config, () => rng.normal(), 0.02);
const paths = Array.from({ length: config.numHiddenLayers }, (_, l) => MODULES.map((m) => ({ path: linearPath(l, m), shape: linearShape(config, m) }))).flat();

function normals(n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
}

function loraAdapters(n: number): Map<string, LoraWeights> {
  const out = new Map<string, LoraWeights>();
  for (let i = 0; i < n; i++) {
    out.set(`a${i}`, new Map(paths.map(({ path, shape: [o, k] }) => [path, {
      A: { shape: [LORA_RANK, k], data: normals(LORA_RANK * k, 1 / Math.sqrt(k)) },
      B: { shape: [o, LORA_RANK], data: normals(o * LORA_RANK, 0.01) },
      scaling: 2,
    }])));
  }
  return out;
}

/** A JD-Full bundle of n adapters in min(n, 4) clusters, built in memory with random bases and Σ. */
function jdBundle(n: number): JdBundle {
  const clusters = Math.min(n, MAX_CLUSTERS);
  const R = JD_RANK;
  const tensors = new Map<string, F32Tensor>();
  for (const { path, shape: [o, k] } of paths) {
    for (let c = 0; c < clusters; c++) {
      tensors.set(basisKey(path, c, 'U'), makeTensor('F32', [o, R], normals(o * R, 1 / Math.sqrt(o))));
      tensors.set(basisKey(path, c, 'V'), makeTensor('F32', [k, R], normals(k * R, 1 / Math.sqrt(k))));
    }
    for (let i = 0; i < n; i++) tensors.set(sigmaKey(path, `a${i}`), makeTensor('F32', [R, R], normals(R * R, 0.1)));
  }
  const modules = paths.map(({ path, shape: [o, k] }) => ({ name: path, outFeatures: o, inFeatures: k, rank: R }));
  const adapters = Array.from({ length: n }, (_, i) => ({
    name: `a${i}`, cluster: i % clusters, sha256: '', configSha256: '',
    modules: Object.fromEntries(paths.map(({ path }) => [path, { error: 0, norm: 1, scaling: 2, rank: LORA_RANK }])),
  }));
  return {
    tensors,
    manifest: {
      format: JD_BUNDLE_FORMAT, formatVersion: JD_BUNDLE_VERSION, revision: `bench-${n}`, createdAt: new Date(0).toISOString(), baseModel: null,
      settings: { method: 'jd-full', rank: R, clusters, iterations: 0, tolerance: 0, seed: 0, variant: 'alternating', targetErrorPercent: null },
      modules, clusters: Array.from({ length: clusters }, (_, id) => ({ id, size: 0, meanErrorPercent: 0 })), adapters,
      parameters: { original: 0, compressed: 0, savedRatio: 0, perAdapterSavedRatio: 0 }, convergence: [],
      update: { path: 'full', previousRevision: null, projected: [], maxErrorPercent: null, reason: 'bench' },
    },
  };
}

interface Run {
  tokS: number;
  packBytes: number;
  steps: number;
}

async function run(runner: ModelRunner, pack: AdapterPack | null, routes: ReadonlyMap<string, AdapterRoute>, n: number): Promise<Run> {
  await runner.usePack(pack);
  let tokens = 0;
  let finished = 0;
  const core = new EngineCore(runner, { maxBatchSize: BATCH, maxBatchTokens: BATCH * PROMPT, kvCacheTokens: BATCH * (PROMPT + NEW) }, (events: EngineEvent[]) => {
    for (const e of events) {
      if (e.kind === 'token') tokens++;
      if (e.kind === 'finished') {
        if (e.reason === 'error') throw new Error(e.message);
        finished++;
      }
    }
  });
  const pick = new Rng(7);
  const prompt = (): number[] => Array.from({ length: PROMPT }, () => 3 + pick.int(config.vocabSize - 3));
  const submitAll = (count: number, from: number): void => {
    for (let i = 0; i < count; i++) {
      const name = `a${pick.int(n)}`;
      core.submit({ id: from + i, prompt: prompt(), maxTokens: NEW, sampling: GREEDY, stopTokenIds: [], packId: pack ? pack.id : null, route: routes.get(name) ?? BASE_ROUTE });
    }
  };
  // Warm-up: a first batch builds nothing new but touches every page of the pack.
  submitAll(Math.min(BATCH, 8), 0);
  while (core.busy) await core.step();
  tokens = 0;
  finished = 0;
  submitAll(REQUESTS, 1000);
  const start = performance.now();
  let steps = 0;
  while (core.busy) {
    await core.step();
    steps++;
  }
  const seconds = (performance.now() - start) / 1000;
  if (finished !== REQUESTS) throw new Error(`only ${finished} of ${REQUESTS} requests finished`);
  return { tokS: tokens / seconds, packBytes: pack ? packBytes(pack) : 0, steps };
}

const mb = (bytes: number): string => (bytes / 2 ** 20 < 10 ? (bytes / 2 ** 20).toFixed(2) : (bytes / 2 ** 20).toFixed(0));
const fmt = (x: number): string => x.toFixed(0).padStart(7);

console.log(`serve bench: llama d=${D}, ${config.numHiddenLayers} layers, ${(numParameters(config) / 1e6).toFixed(1)}M parameters; ${REQUESTS} requests × (${PROMPT} prompt + ${NEW} new tokens), up to ${BATCH} per batch, ${THREADS} ORT threads`);
console.log(`adapters: LoRA rank ${LORA_RANK} on ${MODULES.join(', ')}; JD-Full rank ${JD_RANK}, min(N, ${MAX_CLUSTERS}) clusters; each request picks one of N uniformly\n`);

const session = { intraOpThreads: THREADS };
const runners = { merged: new ModelRunner({ config, weights, session }), lora: new ModelRunner({ config, weights, session }), jd: new ModelRunner({ config, weights, session }) };
const rows: Array<{ n: number; merged: Run; lora: Run; jd: Run }> = [];
const best = (a: Run | undefined, b: Run): Run => (a && a.tokS >= b.tokS ? a : b);
for (const n of COUNTS) {
  const lora = packAdapters(`lora-${n}`, [], loraAdapters(n));
  const jd = packAdapters(`jd-${n}`, [jdBundle(n)], new Map());
  let row: { merged?: Run; lora?: Run; jd?: Run } = {};
  for (let r = 0; r < REPEAT; r++) {
    row = {
      merged: best(row.merged, await run(runners.merged, null, new Map(), n)),
      lora: best(row.lora, await run(runners.lora, lora.pack, lora.routes, n)),
      jd: best(row.jd, await run(runners.jd, jd.pack, jd.routes, n)),
    };
  }
  const done = row as { merged: Run; lora: Run; jd: Run };
  rows.push({ n, ...done });
  console.error(`  N=${n}: merged ${done.merged.tokS.toFixed(0)}, lora ${done.lora.tokS.toFixed(0)}, jd ${done.jd.tokS.toFixed(0)} tok/s (best of ${REPEAT})`);
}
await Promise.all(Object.values(runners).map((r) => r.dispose()));

console.log('\n adapters | merged tok/s | LoRA tok/s | JD tok/s | JD/LoRA | JD/merged | LoRA MB | JD MB');
console.log('----------|--------------|------------|----------|---------|-----------|---------|------');
for (const r of rows) {
  console.log(` ${String(r.n).padStart(8)} |      ${fmt(r.merged.tokS)} |    ${fmt(r.lora.tokS)} |  ${fmt(r.jd.tokS)} |   ${(r.jd.tokS / r.lora.tokS).toFixed(2)} |      ${(r.jd.tokS / r.merged.tokS).toFixed(2)} | ${mb(r.lora.packBytes).padStart(7)} | ${mb(r.jd.packBytes).padStart(5)}`);
}
const at = (n: number): { n: number; merged: Run; lora: Run; jd: Run } => rows.find((r) => r.n === n) as (typeof rows)[number];
console.log(`RESULT serve tok_s_1=${at(1).jd.tokS.toFixed(0)} tok_s_64=${at(64).jd.tokS.toFixed(0)} tok_s_1024=${at(1024).jd.tokS.toFixed(0)} jd_vs_lora_1024=${(at(1024).jd.tokS / at(1024).lora.tokS).toFixed(2)}`);
