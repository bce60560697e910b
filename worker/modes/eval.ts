// tessera-worker eval: perplexity of a model (optionally with a LoRA adapter) on a dataset.
//
// Windows: documents are tokenized with the tokenizer's special tokens (a leading <s> for
// Llama tokenizers), concatenated into one stream and cut into NON-OVERLAPPING windows of
// sequenceLength + 1 tokens that share their boundary token (stride = sequenceLength), so
// every token but the stream's first is predicted exactly once, with 0…sequenceLength−1
// tokens of context. This is what the training loop's held-out evaluation does and what
// transformers' perplexity guide calls stride = max_length; a strided (overlapping) scheme
// would give lower numbers for long documents. The last window is padded with ignored
// targets instead of being dropped, so no token goes uncounted.
//
// perplexity = exp(loss), loss = mean negative log-likelihood per predicted token (nats).
import { type Command, InvalidArgumentError, Option } from 'commander';
import { DATASET_FORMATS, parseDatasetFormat, readDataset, tokenizeDataset } from '../data/datasets.js';
import { type LlamaConfig, type LoraWeights, loraFeeds, sequentialPositions, type WeightMap } from '../model/llama/index.js';
import { buildTrainingGraph } from '../model/llama/graph.js';
import * as nn from '../onnx/index.js';
import { SessionCache } from '../onnx/session.js';
import { batchFromWindows, IGNORE_INDEX, type Batch } from '../train/data.js';
import { loadAdapter, loadModel, type LoadedModel } from './load-model.js';

export interface PerplexityResult {
  perplexity: number;
  /** Mean negative log-likelihood per predicted token, in nats. */
  loss: number;
  /** Tokens predicted (scored). */
  tokens: number;
}

export interface EvalPerplexityOptions {
  config: LlamaConfig;
  weights: WeightMap;
  /** LoRA factors per module path, fed as inputs (the adapter changes, the session does not). */
  lora?: LoraWeights;
  /** Token sequences (documents); concatenated in order. */
  sequences: readonly (readonly number[])[];
  sequenceLength: number;
  /** Windows per session run. Does not change the result beyond float32 rounding. */
  batchSize?: number;
  cache?: SessionCache;
}

/** Non-overlapping windows of sequenceLength + 1 tokens over the stream; the last padded with IGNORE_INDEX. */
export function perplexityWindows(stream: readonly number[], sequenceLength: number): number[][] {
  if (!Number.isInteger(sequenceLength) || sequenceLength < 1) throw new Error(`sequenceLength must be a positive integer, got ${sequenceLength}`);
  if (stream.length < 2) throw new Error(`perplexity needs at least 2 tokens, the data has ${stream.length}`);
  const windows: number[][] = [];
  for (let start = 0; start + 1 < stream.length; start += sequenceLength) {
    const w = stream.slice(start, start + sequenceLength + 1);
    while (w.length < sequenceLength + 1) w.push(IGNORE_INDEX);
    windows.push(w);
  }
  return windows;
}

export async function evalPerplexity(opts: EvalPerplexityOptions): Promise<PerplexityResult> {
  const c = opts.config;
  const batchSize = opts.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
  if (opts.sequenceLength > c.maxPositionEmbeddings) {
    throw new Error(`sequenceLength ${opts.sequenceLength} exceeds the model's max_position_embeddings ${c.maxPositionEmbeddings}`);
  }
  const stream = opts.sequences.flat();
  for (let i = 0; i < stream.length; i++) {
    const id = stream[i] as number;
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new Error(`token ${i} of the data is ${id}: expected an id in [0, ${c.vocabSize})`);
  }
  const windows = perplexityWindows(stream, opts.sequenceLength);

  const cache = opts.cache ?? new SessionCache();
  const lora = opts.lora ?? new Map();
  const graph = buildTrainingGraph(c, { weights: opts.weights, lora: [...lora.keys()], wrt: [] }).graph;
  const session = await cache.forGraph(graph);
  const constant = loraFeeds(lora);
  let nll = 0; // float64 across batches; each batch's sum is float32 inside the graph
  let tokens = 0;
  try {
    for (let i = 0; i < windows.length; i += batchSize) {
      const b: Batch = batchFromWindows(windows.slice(i, i + batchSize));
      const out = await session.run(
        {
          ...constant,
          input_ids: nn.tensor('int64', [b.batch, b.seqLen], b.inputIds),
          position_ids: sequentialPositions(b.batch, b.seqLen),
          targets: nn.tensor('int64', [b.batch, b.seqLen], b.targets),
          loss_weights: nn.tensor('float32', [b.batch, b.seqLen], b.mask),
        },
        ['loss'],
      );
      nll += Number((out.loss?.data as Float32Array)[0]);
      tokens += b.mask.reduce((s, x) => s + x, 0);
    }
  } finally {
    if (!opts.cache) await cache.dispose();
  }
  const loss = nll / tokens;
  return { perplexity: Math.exp(loss), tokens, loss };
}

export interface EvalCommandOptions {
  model: string;
  adapter?: string;
  data: string;
  /** text | jsonl | tokens; default from the file extension. */
  format?: string;
  textField?: string;
  sequenceLength?: number;
  batchSize?: number;
}

/**
 * Where an adapter comes from. A PEFT directory is built in; other sources (a JD bundle and
 * an adapter name in it) register here, tried in order, the first whose `matches` is true wins.
 */
export interface AdapterSource {
  /** For the --adapter help text and errors, e.g. "a PEFT adapter directory". */
  describe: string;
  matches(spec: string): boolean | Promise<boolean>;
  load(spec: string, model: LoadedModel): Promise<LoraWeights>;
}

export const PEFT_DIRECTORY_SOURCE: AdapterSource = {
  describe: 'a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)',
  matches: () => true,
  load: async (spec, model) => (await loadAdapter(spec, model.config)).lora,
};

export async function resolveAdapter(spec: string, model: LoadedModel, sources: readonly AdapterSource[]): Promise<LoraWeights> {
  for (const s of sources) if (await s.matches(spec)) return s.load(spec, model);
  throw new Error(`adapter ${JSON.stringify(spec)} is not ${sources.map((s) => s.describe).join(' or ')}`);
}

/** The eval command without the CLI: load, read, tokenize, evaluate. */
export async function runEval(opts: EvalCommandOptions, sources: readonly AdapterSource[] = [PEFT_DIRECTORY_SOURCE], cache?: SessionCache): Promise<PerplexityResult> {
  const model = await loadModel(opts.model);
  const lora = opts.adapter ? await resolveAdapter(opts.adapter, model, sources) : undefined;
  const format = opts.format === undefined ? undefined : parseDatasetFormat(opts.format);
  const ds = await readDataset(opts.data, { format, textField: opts.textField, vocabSize: model.config.vocabSize });
  const tokenizer = model.tokenizer;
  const sequences = tokenizeDataset(ds, tokenizer ? (t) => tokenizer.encode(t) : null);
  const sequenceLength = opts.sequenceLength ?? Math.min(model.config.maxPositionEmbeddings, 1024);
  return evalPerplexity({ config: model.config, weights: model.weights, lora, sequences, sequenceLength, batchSize: opts.batchSize, cache });
}

function positiveInt(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
}

export interface RegisterEvalOptions {
  /** Extra adapter sources tried before the PEFT directory (the JD bundle hook). */
  adapterSources?: readonly AdapterSource[];
}

/** Adds `eval` to a commander program; prints {"perplexity", "tokens", "loss"} as one JSON line on stdout. */
export function registerEval(program: Command, opts: RegisterEvalOptions = {}): Command {
  const sources = [...(opts.adapterSources ?? []), PEFT_DIRECTORY_SOURCE];
  return program
    .command('eval')
    .description('perplexity of a Hugging Face checkpoint (optionally with a LoRA adapter) on a dataset, over non-overlapping windows')
    .requiredOption('--model <dir>', 'Hugging Face checkpoint directory (config.json, model.safetensors, tokenizer.json)')
    .option('--adapter <spec>', sources.map((s) => s.describe).join(', or '))
    .requiredOption('--data <file>', 'dataset file')
    .addOption(new Option('--format <format>', 'dataset format (default: from the extension, .jsonl/.json → jsonl)').choices([...DATASET_FORMATS]))
    .option('--text-field <name>', 'string field of each JSON Lines record', 'text')
    .option('--sequence-length <n>', 'tokens per window (default min(max_position_embeddings, 1024))', positiveInt('--sequence-length'))
    .option('--batch-size <n>', 'windows per run', positiveInt('--batch-size'), 8)
    .action(async (o: EvalCommandOptions) => {
      const result = await runEval(o, sources);
      process.stdout.write(`${JSON.stringify(result)}\n`);
    });
}
