// Text continuation with the KV cache: one prefill run over the (left-padded) prompts, then
// one decode run per new token, each feeding back the cache the previous run returned.
// Greedy when topK is 0, else top-k sampling at a temperature from a seeded RNG, so samples
// printed by pretrain are reproducible.
import { buildDecodeGraph, buildPrefillGraph, type Feeds, type LlamaConfig, loraFeeds, type LoraWeights, pastName, prefillFeeds, presentName, type WeightMap } from '../model/llama/index.js';
import * as nn from '../onnx/index.js';
import { type Session, SessionCache } from '../onnx/session.js';
import { Rng } from '../train/rng.js';

export interface GenerateOptions {
  config: LlamaConfig;
  weights: WeightMap;
  prompts: readonly (readonly number[])[];
  maxNewTokens: number;
  /** 0: greedy (argmax). Default 0. */
  topK?: number;
  temperature?: number;
  seed?: number;
  /** Stop a row once it emits this id (the id is kept in its output). */
  eosTokenId?: number | null;
  padTokenId?: number;
  /** One LoRA adapter applied to every prompt (the reference the serving engine is checked against). */
  lora?: LoraWeights;
  cache?: SessionCache;
}

/** The index of the largest value in row `r` of [B, V] logits. */
function argmax(logits: Float32Array, r: number, v: number): number {
  let best = 0;
  let max = -Infinity;
  for (let j = 0; j < v; j++) {
    const x = logits[r * v + j] as number;
    if (x > max) [max, best] = [x, j];
  }
  return best;
}

/** Samples among the k largest logits of row `r`, softmax at `temperature`. */
export function sampleTopK(logits: Float32Array, r: number, v: number, k: number, temperature: number, rng: Rng): number {
  if (k <= 0) return argmax(logits, r, v);
  const row = Array.from({ length: v }, (_, j) => j).sort((a, b) => (logits[r * v + b] as number) - (logits[r * v + a] as number) || a - b);
  const top = row.slice(0, Math.min(k, v));
  const max = logits[r * v + (top[0] as number)] as number;
  const weights = top.map((j) => Math.exp(((logits[r * v + j] as number) - max) / temperature));
  let u = rng.next() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < top.length; i++) {
    u -= weights[i] as number;
    if (u <= 0) return top[i] as number;
  }
  return top[top.length - 1] as number;
}

function float32(t: nn.Tensor | undefined, what: string): Float32Array {
  if (!t || !(t.data instanceof Float32Array)) throw new Error(`generate: session output ${what} is missing or not float32`);
  return t.data;
}

/** The new tokens of each prompt (prompts excluded), at most maxNewTokens each. */
export async function generate(opts: GenerateOptions): Promise<number[][]> {
  const c = opts.config;
  const topK = opts.topK ?? 0;
  const temperature = opts.temperature ?? 1;
  if (!(temperature > 0)) throw new Error(`temperature must be positive, got ${temperature}`);
  const longest = Math.max(...opts.prompts.map((p) => p.length));
  if (longest + opts.maxNewTokens > c.maxPositionEmbeddings) {
    throw new Error(`prompt of ${longest} tokens + ${opts.maxNewTokens} new tokens exceeds max_position_embeddings ${c.maxPositionEmbeddings}`);
  }
  const cache = opts.cache ?? new SessionCache();
  const rng = new Rng(opts.seed ?? 0);
  try {
    const graphOpts = { weights: opts.weights, ...(opts.lora ? { lora: [...opts.lora.keys()] } : {}) };
    const prefill = await cache.forGraph(buildPrefillGraph(c, graphOpts).graph);
    const decode = await cache.forGraph(buildDecodeGraph(c, graphOpts).graph);
    return await decodeLoop(c, prefill, decode, opts, topK, temperature, rng);
  } finally {
    if (!opts.cache) await cache.dispose();
  }
}

async function decodeLoop(c: LlamaConfig, prefill: Session, decode: Session, opts: GenerateOptions, topK: number, temperature: number, rng: Rng): Promise<number[][]> {
  const { feeds, lengths } = prefillFeeds(opts.prompts, opts.padTokenId ?? 0);
  const adapter = opts.lora ? loraFeeds(opts.lora) : {};
  const b = lengths.length;
  let mask = Array.from(feeds.attention_mask?.data as BigInt64Array, Number);
  let width = mask.length / b;
  let out = await prefill.run({ ...feeds, ...adapter });
  const generated: number[][] = lengths.map(() => []);
  const done = lengths.map(() => false);
  for (let step = 0; step < opts.maxNewTokens; step++) {
    const logits = float32(out.logits, 'logits');
    const next = lengths.map((_, r) => (done[r] ? (opts.padTokenId ?? 0) : sampleTopK(logits, r, c.vocabSize, topK, temperature, rng)));
    next.forEach((id, r) => {
      if (done[r]) return;
      (generated[r] as number[]).push(id);
      if (opts.eosTokenId !== undefined && opts.eosTokenId !== null && id === opts.eosTokenId) done[r] = true;
    });
    if (done.every(Boolean) || step + 1 === opts.maxNewTokens) break;
    // The cache grows by one column per step; every row attends to its new token.
    const grown: number[] = [];
    for (let r = 0; r < b; r++) grown.push(...mask.slice(r * width, (r + 1) * width), 1);
    mask = grown;
    width += 1;
    const f: Feeds = {
      input_ids: nn.tensor('int64', [b, 1], BigInt64Array.from(next, BigInt)),
      position_ids: nn.tensor('int64', [b, 1], BigInt64Array.from(lengths, (len) => BigInt(len + step))),
      attention_mask: nn.tensor('int64', [b, width], BigInt64Array.from(mask, BigInt)),
      ...adapter,
    };
    for (let l = 0; l < c.numHiddenLayers; l++) {
      for (const kv of ['key', 'value'] as const) {
        const t = out[presentName(l, kv)];
        if (!t) throw new Error(`generate: session output ${presentName(l, kv)} is missing`);
        f[pastName(l, kv)] = t;
      }
    }
    out = await decode.run(f);
  }
  return generated;
}
