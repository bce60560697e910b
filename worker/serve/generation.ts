// Text generation for one replica, wired together: the checkpoint checked on this thread (so a
// bad one fails before any thread starts, naming the file), the tokenizer and chat template,
// the engine thread with the adapter pack of the store's active set, the generator, and the
// statistics the status hub and /metrics read.
import type { Logger } from 'pino';
import { openHfCheckpoint } from '../formats/hf-checkpoint.js';
import type { LlamaFamilyConfig } from '../formats/hf-config.js';
import { TextTokenizer } from '../formats/tokenizer.js';
import type { LoraWeights } from '../model/llama/index.js';
import type { AdapterStore } from './adapter-store.js';
import { ChatTemplate } from './chat-template.js';
import type { EngineLimits } from './engine-core.js';
import { ServingEngine } from './engine.js';
import { Generator } from './generator.js';
import type { GenerationDeps } from './openai-routes.js';
import { ServingAdapters } from './serving-adapters.js';
import { ServingStats, type StatsSnapshot } from './stats.js';

export interface EngineSettings extends EngineLimits {
  maxQueue: number;
}

/** spec.engine's defaults (the CRD's), for spec files written without them. */
export const ENGINE_DEFAULTS: Readonly<EngineSettings> = Object.freeze({ maxBatchTokens: 8192, maxBatchSize: 64, kvCacheTokens: 65536, maxQueue: 1024 });

export interface GenerationOptions {
  modelDir: string;
  store: AdapterStore;
  /** Raw adapters by name, as LoRA factors. */
  raw: ReadonlyMap<string, LoraWeights>;
  baseModelId: string;
  /** spec.engine; its dtype is not applied: the CPU engine computes in float32. */
  engine?: Partial<EngineSettings> & { dtype?: string };
  intraOpThreads?: number;
  log: Logger;
}

export interface Generation {
  config: LlamaFamilyConfig;
  deps: GenerationDeps;
  stats: ServingStats;
  engine: ServingEngine;
  /** What report() sends: the window's rates and latencies and the queue depth now. */
  snapshot(): StatsSnapshot & { queueDepth: number };
  close(): Promise<void>;
}

export async function startGeneration(opts: GenerationOptions): Promise<Generation> {
  const ckpt = await openHfCheckpoint(opts.modelDir);
  const { config, generationConfig, tokenizerPath } = ckpt;
  await ckpt.close();
  const tokenizer = tokenizerPath ? await TextTokenizer.load(opts.modelDir) : null;
  const chat = tokenizer ? ChatTemplate.fromTokenizerConfig(tokenizer.config, `${opts.modelDir}/tokenizer_config.json`) : null;
  const e = opts.engine ?? {};
  const limits: EngineSettings = {
    maxBatchTokens: e.maxBatchTokens ?? ENGINE_DEFAULTS.maxBatchTokens,
    maxBatchSize: e.maxBatchSize ?? ENGINE_DEFAULTS.maxBatchSize,
    kvCacheTokens: e.kvCacheTokens ?? ENGINE_DEFAULTS.kvCacheTokens,
    maxQueue: e.maxQueue ?? ENGINE_DEFAULTS.maxQueue,
  };

  // Later packs go to the engine as requests find the store's active set changed; the first
  // one goes with the engine's start (onPack is not called before the engine exists).
  const adapters = new ServingAdapters(opts.store, opts.raw, opts.baseModelId, (pack, info) => {
    opts.log.info({ revision: info.id, adapters: info.adapters, packBytes: info.bytes, packMs: info.buildMs }, 'adapter pack handed to the engine');
    engine.setPack(pack);
  });
  const initial = adapters.nextPack();
  const started = Date.now();
  const engine = await ServingEngine.start({ modelDir: opts.modelDir, limits, pack: initial?.pack ?? null, ...(opts.intraOpThreads === undefined ? {} : { intraOpThreads: opts.intraOpThreads }) });
  opts.log.info({ ms: Date.now() - started, adapters: initial?.info.adapters ?? 0, packBytes: initial?.info.bytes ?? 0, limits, dtype: 'float32', requestedDtype: e.dtype ?? null }, 'engine ready');

  const stats: ServingStats = new ServingStats({
    queuedRequests: () => engine.queued,
    runningSequences: () => engine.running,
    adapterLoad: (): { running: string[]; waiting: string[] } => generator.adapterLoad(),
    maxLora: () => opts.store.adapterNames().length,
  });
  // Without a tokenizer the routes refuse before anything reaches the generator.
  const generator: Generator = new Generator(engine, tokenizer ?? { decode: () => '' }, stopTokenIds(config, generationConfig, tokenizer), stats);
  return {
    config,
    deps: { generator, adapters, tokenizer, chat, maxPositions: config.maxPositionEmbeddings, vocabSize: config.vocabSize, kvCacheTokens: limits.kvCacheTokens },
    stats,
    engine,
    snapshot: () => ({ ...stats.snapshot(), queueDepth: engine.queued }),
    close: () => engine.close(),
  };
}

/** generation_config.json's eos_token_id (one id or a list), else config.json's, else the tokenizer's. */
export function stopTokenIds(config: LlamaFamilyConfig, generation: Record<string, unknown> | null, tokenizer: TextTokenizer | null): number[] {
  const fromGen = generation?.eos_token_id;
  const ids = (x: unknown): number[] | null => (Number.isInteger(x) ? [x as number] : Array.isArray(x) && x.every(Number.isInteger) ? (x as number[]) : null);
  return ids(fromGen) ?? ids(config.eosTokenId) ?? (tokenizer?.eosTokenId !== null && tokenizer?.eosTokenId !== undefined ? [tokenizer.eosTokenId] : []);
}
