// A tiny random-weight Llama checkpoint with a trained BPE tokenizer, PEFT adapters for it and
// JD bundles compressed from them: everything a serve replica reads, written to a temp folder.
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JdKernels } from '../../../worker/compress/kernels.js';
import { compressAdapters } from '../../../worker/compress/run.js';
import { trainByteLevelBpe } from '../../../worker/formats/bpe-trainer.js';
import { BYTE_TO_CHAR } from '../../../worker/formats/byte-level.js';
import { writeHfCheckpoint } from '../../../worker/formats/hf-checkpoint.js';
import { parseHfConfig, type LlamaFamilyConfig } from '../../../worker/formats/hf-config.js';
import { buildLoraAdapter, loraConfig, saveLoraAdapter } from '../../../worker/formats/peft.js';
import { fromFloat32, makeTensor, type Tensor } from '../../../worker/formats/tensor.js';
import { writeBpeTokenizer } from '../../../worker/formats/tokenizer.js';
import { initWeights, linearPath, linearShape } from '../../../worker/model/llama/index.js';
import { Rng } from '../../../worker/train/rng.js';
import { tinyConfigJson } from '../formats/builders.js';

const CORPUS = [
  'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse,',
  'and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.',
  'The state of the union is strong. We the people of the United States, in order to form a more perfect union.',
  'Hello world! The quick brown fox jumps over the lazy dog; 0123456789.',
];

/** A Llama chat template in the usual shape, small enough to read. */
export const CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

export interface TinyModelOptions {
  /** tokenizer_config.json gets this chat_template. */
  chatTemplate?: string;
  seed?: number;
  /** Standard deviation of the linear weights: large enough that logits are far from ties. */
  std?: number;
}

/** Writes config.json, model.safetensors, tokenizer.json and tokenizer_config.json into `dir`. */
export async function writeTinyModel(dir: string, opts: TinyModelOptions = {}): Promise<LlamaFamilyConfig> {
  const trained = trainByteLevelBpe(CORPUS, { vocabSize: 300 });
  const tokDir = `${dir}.tokenizer`;
  await mkdir(tokDir, { recursive: true });
  await writeBpeTokenizer(tokDir, trained);
  if (opts.chatTemplate !== undefined) {
    const cfgPath = join(tokDir, 'tokenizer_config.json');
    const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown>;
    await writeFile(cfgPath, JSON.stringify({ ...cfg, chat_template: opts.chatTemplate }));
  }
  const config = parseHfConfig(tinyConfigJson('llama', { vocab_size: trained.vocab.size, max_position_embeddings: 128, bos_token_id: 1, eos_token_id: 2 }));
  const rng = new Rng(opts.seed ?? 1);
  const weights = initWeights(config, () => rng.normal(), opts.std ?? 0.3);
  // Zero LM-head rows for the bytes ≥ 0x80 and the special tokens but </s>: their logits are 0
  // while the best of ~170 random ones is well above it, so greedy text is valid UTF-8 (and
  // comparisons of texts mean comparisons of tokens).
  const head = weights.get('lm_head.weight') as { data: Float32Array };
  const silent = [...Array.from({ length: 128 }, (_, i) => trained.vocab.get(BYTE_TO_CHAR[128 + i] as string)), ...['<unk>', '<s>', '<pad>'].map((t) => trained.vocab.get(t))];
  for (const id of silent) if (id !== undefined) head.data.fill(0, id * config.hiddenSize, (id + 1) * config.hiddenSize);
  const tensors = new Map<string, Tensor>([...weights].map(([name, w]) => [name, fromFloat32(w.data, [...w.shape], 'F32')]));
  await writeHfCheckpoint(dir, { config, tensors, tokenizerDir: tokDir });
  await rm(tokDir, { recursive: true, force: true });
  return config;
}

const TARGETS = ['q_proj', 'v_proj', 'down_proj'] as const;

/** PEFT adapters `${prefix}0…` over q, v and down of every layer, strong enough to change greedy output. */
export async function writeLoraAdapters(root: string, config: LlamaFamilyConfig, count: number, opts: { prefix?: string; rank?: number; seed?: number } = {}): Promise<Array<{ name: string; dir: string }>> {
  const rank = opts.rank ?? 2;
  const out: Array<{ name: string; dir: string }> = [];
  for (let i = 0; i < count; i++) {
    const rng = new Rng((opts.seed ?? 11) * 1000 + i);
    const pairs = [];
    for (let l = 0; l < config.numHiddenLayers; l++) {
      for (const m of TARGETS) {
        const [o, k] = linearShape(config, m);
        const A = Float32Array.from({ length: rank * k }, () => rng.normal() / Math.sqrt(k));
        const B = Float32Array.from({ length: o * rank }, () => rng.normal() * 0.5);
        pairs.push({ name: linearPath(l, m), A: makeTensor('F32', [rank, k], A), B: makeTensor('F32', [o, rank], B) });
      }
    }
    const name = `${opts.prefix ?? 'a'}${i}`;
    const dir = join(root, name);
    await saveLoraAdapter(dir, buildLoraAdapter(loraConfig({ r: rank, loraAlpha: 2 * rank, targetModules: [...TARGETS] }), pairs));
    out.push({ name, dir });
  }
  return out;
}

/** Compresses adapters into a JD bundle at `output`; returns its revision. */
export async function writeBundle(adapters: Array<{ name: string; dir: string }>, output: string, opts: { method?: 'jd-full' | 'jd-diag'; rank?: number; clusters?: number; kernels?: JdKernels } = {}): Promise<string> {
  const kernels = opts.kernels ?? new JdKernels();
  try {
    // Few iterations: the tests check that serving computes what the bundle says, not how well it fits.
    const summary = await compressAdapters({ adapters, method: opts.method ?? 'jd-full', rank: opts.rank ?? 3, clusters: opts.clusters ?? 1, iterations: 2, output, seed: 0, kernels, now: () => new Date(0) });
    return summary.revision;
  } finally {
    if (!opts.kernels) await kernels.dispose();
  }
}

export interface ServingFixture {
  root: string;
  modelDir: string;
  config: LlamaFamilyConfig;
  /** Raw PEFT adapters r0, r1. */
  raw: Array<{ name: string; dir: string }>;
  /** JD-Full bundle (2 clusters) of p0…p3 and JD-Diag bundle of n0, n1, with their revisions. */
  bundles: Array<{ adapterCluster: string; uri: string; revision: string; adapters: Array<{ name: string; dir: string }> }>;
}

let shared: Promise<ServingFixture> | undefined;

/** Built once per test process (compression takes seconds) and removed when it exits. */
export function servingFixture(): Promise<ServingFixture> {
  shared ??= (async () => {
    const root = mkdtempSync(join(tmpdir(), 'tessera-serve-'));
    process.once('exit', () => rmSync(root, { recursive: true, force: true }));
    const modelDir = join(root, 'model');
    const config = await writeTinyModel(modelDir, { chatTemplate: CHAT_TEMPLATE });
    const kernels = new JdKernels();
    try {
      const pool = await writeLoraAdapters(join(root, 'pool'), config, 4, { prefix: 'p' });
      const news = await writeLoraAdapters(join(root, 'news'), config, 2, { prefix: 'n', seed: 5 });
      const raw = await writeLoraAdapters(join(root, 'raw'), config, 2, { prefix: 'r', seed: 9, rank: 4 });
      const poolRev = await writeBundle(pool, join(root, 'bundles/pool'), { clusters: 2, kernels });
      const newsRev = await writeBundle(news, join(root, 'bundles/news'), { method: 'jd-diag', rank: 2, kernels });
      return {
        root, modelDir, config, raw,
        bundles: [
          { adapterCluster: 'pool', uri: join(root, 'bundles/pool'), revision: poolRev, adapters: pool },
          { adapterCluster: 'news', uri: join(root, 'bundles/news'), revision: newsRev, adapters: news },
        ],
      };
    } finally {
      await kernels.dispose();
    }
  })();
  return shared;
}
