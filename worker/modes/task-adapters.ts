// tessera-worker task-adapters: many small LoRA adapters on one base model, one per "task"
// (a Brown document or a State of the Union address), the collection JD compression is
// measured on. Each task's text is split once into a training part and a held-out tail, so
// "does the adapter help its task" and "does the compressed adapter still help" are both
// perplexity on text the adapter never trained on.
//
// Relative performance follows the paper (Compress then Serve): the share of the adapter's
// improvement over the base that the compressed adapter keeps,
//   (ppl_base − ppl_compressed) / (ppl_base − ppl_lora).
import { type Command, InvalidArgumentError, Option } from 'commander';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { gaussianArray } from '../compress/random.js';
import { BROWN_GENRES, type Document, loadBrown, loadSotu } from '../data/corpora.js';
import { buildLoraAdapter, type LoraAdapter, loraConfig, saveLoraAdapter } from '../formats/peft.js';
import { LINEAR_MODULES, type LinearModule } from '../formats/hf-checkpoint.js';
import { type F32Tensor, makeTensor } from '../formats/tensor.js';
import { linearPath, type LoraWeights } from '../model/llama/index.js';
import { loraInputNames } from '../model/llama/params.js';
import { SessionCache } from '../onnx/session.js';
import { type Progress, train } from '../train/loop.js';
import { createLlamaTrainModel } from '../train/model-step.js';
import { Rng } from '../train/rng.js';
import { type AdapterSource, evalPerplexity, PEFT_DIRECTORY_SOURCE, resolveAdapter } from './eval.js';
import { adapterToLora, type LoadedModel, loadModel } from './load-model.js';

export interface Task {
  /** Adapter name: also its directory under the output and its name in a JD bundle. */
  name: string;
  trainText: string;
  evalText: string;
  /** Where the text came from (document id), for reports. */
  source?: string;
}

export interface TaskAdaptersOptions {
  /** Base model: a Hugging Face checkpoint directory with a tokenizer. */
  model: string;
  tasks: readonly Task[];
  rank?: number;
  /** lora_alpha; default 2·rank. */
  alpha?: number;
  /** Module names (suffixes) to adapt in every layer. */
  targetModules?: readonly string[];
  steps?: number;
  batchSize?: number;
  /** Tokens per training and evaluation window; default min(64, max_position_embeddings). */
  sequenceLength?: number;
  learningRate?: number;
  /** Adapter i uses seed + i for its data order, and for its A initialization unless sharedInit. */
  seed?: number;
  /**
   * Initialize every adapter's A from `seed` alone, as a training pipeline with a fixed seed
   * does. Shared inits give the adapters a nearly common row space before any training, which
   * joint compression exploits; default false, so compressibility reflects what training learned.
   */
  sharedInit?: boolean;
  /**
   * Position of tasks[0] in the whole collection (default 0): adapter i of this call is adapter
   * firstIndex + i of the collection and takes that seed, so a collection trained in parts (a
   * cache that grows from 100 to 500 adapters) is the same as one trained at once.
   */
  firstIndex?: number;
  /** Directory that receives one PEFT adapter directory per task, `output/<name>`. */
  output: string;
  threads?: number;
  log?: Logger;
  onProgress?: (task: { index: number; name: string; total: number }, p: Progress) => void;
  /** Progress bar (one per adapter) on stderr when it is a terminal; false forces it off. Default true. */
  progressBar?: boolean;
  signal?: AbortSignal;
  /** Shared sessions; a private cache is created and disposed otherwise. */
  cache?: SessionCache;
}

export interface TaskAdapterResult {
  name: string;
  dir: string;
  source?: string;
  trainTokens: number;
  evalTokens: number;
  /** Held-out perplexity of the base model and of the base with this adapter. */
  pplBase: number;
  pplLora: number;
  finalLoss: number;
  seconds: number;
}

export interface TaskAdaptersResult {
  output: string;
  rank: number;
  alpha: number;
  targetModules: string[];
  steps: number;
  sequenceLength: number;
  adapters: TaskAdapterResult[];
  seconds: number;
}

export const TASK_DEFAULTS = { rank: 4, targetModules: ['q_proj', 'v_proj'], steps: 40, batchSize: 8, learningRate: 1e-2, evalFraction: 0.2, maxChars: 12_000 } as const;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** (ppl_base − ppl_compressed) / (ppl_base − ppl_lora); NaN when the adapter did not improve on the base. */
export function relativePerformance(pplBase: number, pplCompressed: number, pplLora: number): number {
  const gain = pplBase - pplLora;
  return gain > 0 ? (pplBase - pplCompressed) / gain : Number.NaN;
}

/**
 * Split a text into training and held-out parts by paragraph: every `round(1/evalFraction)`-th
 * paragraph (starting with the second) is held out. Interleaving keeps the held-out text from
 * the same stretch of the document as the training text (a head/tail cut measures drift along
 * the document as much as adaptation); a text of too few paragraphs falls back to a tail cut
 * at a space.
 */
export function splitTaskText(text: string, evalFraction: number = TASK_DEFAULTS.evalFraction): { trainText: string; evalText: string } {
  if (!(evalFraction > 0 && evalFraction < 1)) throw new Error(`evalFraction must be in (0, 1), got ${evalFraction}`);
  const every = Math.max(2, Math.round(1 / evalFraction));
  const paragraphs = text.split(/\n\s*\n/).map((p) => p.trim()).filter((p) => p !== '');
  let trainText: string;
  let evalText: string;
  if (paragraphs.length >= 2 * every) {
    trainText = paragraphs.filter((_, i) => i % every !== 1).join('\n\n');
    evalText = paragraphs.filter((_, i) => i % every === 1).join('\n\n');
  } else {
    const target = Math.floor(text.length * (1 - evalFraction));
    const space = text.lastIndexOf(' ', target);
    const cut = space > 0 ? space : target;
    trainText = text.slice(0, cut).trim();
    evalText = text.slice(cut).trim();
  }
  if (trainText === '' || evalText === '') throw new Error(`text of ${text.length} characters is too short to split into training and held-out parts`);
  return { trainText, evalText };
}

/** At most `maxChars` of a document, cut at a space: bounds the cost of a long address. */
function clip(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const space = text.lastIndexOf(' ', maxChars);
  return text.slice(0, space > 0 ? space : maxChars);
}

function documentTask(d: Document, evalFraction: number, maxChars: number): Task {
  if (!NAME.test(d.id)) throw new Error(`document id ${JSON.stringify(d.id)} is not a valid adapter name`);
  return { name: d.id, source: d.id, ...splitTaskText(clip(d.text, maxChars), evalFraction) };
}

export interface CorpusTaskOptions {
  evalFraction?: number;
  /** Characters of each document used (training + held-out), from its start. */
  maxChars?: number;
}

/**
 * `count` Brown documents, one task each, taken round-robin over the 15 genres (each genre in
 * file order) so a handful of tasks already spans news, fiction, learned prose and the rest.
 */
export function brownTasks(count: number, opts: CorpusTaskOptions = {}): Task[] {
  const docs = loadBrown();
  checkCount(count, docs.length, 'Brown documents');
  const byGenre = Object.values(BROWN_GENRES).map((g) => docs.filter((d) => d.genre === g));
  const picked: Document[] = [];
  for (let round = 0; picked.length < count; round++) {
    for (const list of byGenre) {
      const d = list[round];
      if (d && picked.length < count) picked.push(d);
    }
  }
  return picked.map((d) => documentTask(d, opts.evalFraction ?? TASK_DEFAULTS.evalFraction, opts.maxChars ?? TASK_DEFAULTS.maxChars));
}

/** `count` State of the Union addresses, evenly spaced over the years (first and last included). */
export function sotuTasks(count: number, opts: CorpusTaskOptions = {}): Task[] {
  const docs = loadSotu();
  checkCount(count, docs.length, 'State of the Union addresses');
  const indices = count === 1 ? [0] : Array.from({ length: count }, (_, i) => Math.round((i * (docs.length - 1)) / (count - 1)));
  return indices.map((i) => documentTask(docs[i] as Document, opts.evalFraction ?? TASK_DEFAULTS.evalFraction, opts.maxChars ?? TASK_DEFAULTS.maxChars));
}

export type TaskCorpus = 'brown' | 'sotu';

/** The tasks of a corpus: brownTasks or sotuTasks. */
export function corpusTasks(corpus: TaskCorpus, count: number, opts: CorpusTaskOptions = {}): Task[] {
  return corpus === 'sotu' ? sotuTasks(count, opts) : brownTasks(count, opts);
}

function checkCount(count: number, available: number, what: string): void {
  if (!Number.isInteger(count) || count < 1 || count > available) throw new Error(`count must be an integer in [1, ${available}] (${what}), got ${count}`);
}

export interface TaskPerplexityOptions {
  model: LoadedModel;
  tasks: readonly Task[];
  /** Adapter spec per task (a PEFT directory, BUNDLE#NAME, …); undefined: the base model. */
  adapter?: (task: Task, index: number) => string | undefined;
  sources?: readonly AdapterSource[];
  sequenceLength: number;
  cache?: SessionCache;
}

/** Held-out perplexity of every task, with the adapter `adapter` names for it (or none). */
export async function taskPerplexities(opts: TaskPerplexityOptions): Promise<number[]> {
  const tok = opts.model.tokenizer;
  if (!tok) throw new Error(`${opts.model.dir}: the base model has no tokenizer.json, which task text needs`);
  const out: number[] = [];
  for (const [i, task] of opts.tasks.entries()) {
    const spec = opts.adapter?.(task, i);
    const lora = spec === undefined ? undefined : await resolveAdapter(spec, opts.model, opts.sources ?? [PEFT_DIRECTORY_SOURCE]);
    out.push((await evalPerplexity({ config: opts.model.config, weights: opts.model.weights, lora, sequences: [tok.encode(task.evalText)], sequenceLength: opts.sequenceLength, cache: opts.cache })).perplexity);
  }
  return out;
}

/** Train one LoRA adapter per task on the frozen base and save each as `output/<name>`. */
export async function trainTaskAdapters(opts: TaskAdaptersOptions): Promise<TaskAdaptersResult> {
  const started = performance.now();
  const log = (opts.log ?? pino({ level: 'info' }, pino.destination({ dest: 2, sync: true }))).child({ mode: 'task-adapters' });
  const rank = opts.rank ?? TASK_DEFAULTS.rank;
  const alpha = opts.alpha ?? 2 * rank;
  const targetModules = [...(opts.targetModules ?? TASK_DEFAULTS.targetModules)];
  const steps = opts.steps ?? TASK_DEFAULTS.steps;
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(rank) || rank < 1) throw new Error(`rank must be a positive integer, got ${rank}`);
  if (opts.tasks.length === 0) throw new Error('no tasks: expected at least one');
  const names = new Set<string>();
  for (const t of opts.tasks) {
    if (!NAME.test(t.name)) throw new Error(`task name ${JSON.stringify(t.name)} must match ${NAME} (it becomes a directory and a bundle adapter name)`);
    if (names.has(t.name)) throw new Error(`task name ${JSON.stringify(t.name)} appears twice`);
    names.add(t.name);
  }

  const model = await loadModel(opts.model);
  const tok = model.tokenizer;
  if (!tok) throw new Error(`${opts.model}: the base model has no tokenizer.json, which task text needs`);
  const c = model.config;
  const sequenceLength = opts.sequenceLength ?? Math.min(64, c.maxPositionEmbeddings);
  const modules = targetModules.map((m) => {
    if (!(LINEAR_MODULES as readonly string[]).includes(m)) throw new Error(`target module ${JSON.stringify(m)} is not one of ${LINEAR_MODULES.join(', ')}`);
    return m as LinearModule;
  });
  const targets = Array.from({ length: c.numHiddenLayers }, (_, l) => modules.map((m) => linearPath(l, m))).flat();
  const cache = opts.cache ?? new SessionCache(opts.threads === undefined ? {} : { intraOpThreads: opts.threads });
  const adapters: TaskAdapterResult[] = [];
  try {
    await mkdir(opts.output, { recursive: true });
    for (const [local, task] of opts.tasks.entries()) {
      if (opts.signal?.aborted) break;
      const index = (opts.firstIndex ?? 0) + local;
      const t0 = performance.now();
      const trainTokens = tok.encode(task.trainText);
      const evalTokens = tok.encode(task.evalText);
      const rng = new Rng(opts.sharedInit ? seed : seed + index);
      const trainModel = await createLlamaTrainModel({ config: c, weights: model.weights, mode: 'lora', lora: { targets, rank, alpha }, cache, random: () => rng.next() });
      let losses: number[];
      let adapter: LoraAdapter;
      try {
        ({ losses } = await train({
          model: trainModel,
          train: trainTokens,
          config: { steps, batchSize: opts.batchSize ?? TASK_DEFAULTS.batchSize, sequenceLength, learningRate: opts.learningRate ?? TASK_DEFAULTS.learningRate, warmupSteps: 0, weightDecay: 0, seed: seed + index },
          progressBar: opts.progressBar,
          signal: opts.signal,
          onProgress: (p) => opts.onProgress?.({ index: local, name: task.name, total: opts.tasks.length }, p),
        }));
        const tensor = (name: string): F32Tensor => makeTensor('F32', [...(trainModel.shapes.get(name) as readonly number[])], trainModel.params.get(name) as Float32Array);
        const pairs = targets.map((path) => ({ name: path, A: tensor(loraInputNames(path).A), B: tensor(loraInputNames(path).B) }));
        adapter = buildLoraAdapter(loraConfig({ r: rank, loraAlpha: alpha, targetModules, baseModelNameOrPath: opts.model }), pairs, task.name);
      } finally {
        await trainModel.dispose();
      }
      const dir = join(opts.output, task.name);
      await saveLoraAdapter(dir, adapter);
      const measure = async (lora?: LoraWeights): Promise<number> => (await evalPerplexity({ config: c, weights: model.weights, lora, sequences: [evalTokens], sequenceLength, cache })).perplexity;
      const pplBase = await measure();
      const pplLora = await measure(adapterToLora(adapter));
      const r: TaskAdapterResult = { name: task.name, dir, trainTokens: trainTokens.length, evalTokens: evalTokens.length, pplBase, pplLora, finalLoss: losses.at(-1) ?? Number.NaN, seconds: (performance.now() - t0) / 1000 };
      if (task.source !== undefined) r.source = task.source;
      adapters.push(r);
      log.info({ task: task.name, index: local + 1, of: opts.tasks.length, pplBase: round(pplBase), pplLora: round(pplLora), seconds: round(r.seconds) }, 'trained task adapter');
    }
  } finally {
    if (!opts.cache) await cache.dispose();
  }
  return { output: opts.output, rank, alpha, targetModules, steps, sequenceLength, adapters, seconds: (performance.now() - started) / 1000 };
}

/**
 * Gaussian adapter of the same modules and shapes whose A has the same Frobenius norm as the
 * given one's and whose update B·A has the same Frobenius norm too: what the trained adapter
 * would be if training had found no structure (the paper's random-LoRA control, G.9).
 */
export function randomAdapterLike(adapter: LoraAdapter, seed: number): LoraAdapter {
  let s = seed * 7919;
  const pairs = [...adapter.modules.values()].map((m) => {
    const [r, k] = m.A.shape as [number, number];
    const [mOut] = m.B.shape as [number, number];
    const A = gaussianArray(r * k, ++s);
    const B = gaussianArray(mOut * r, ++s);
    scaleTo(A, norm(m.A.data));
    const current = productNorm(B, A, mOut, r, k);
    scaleBy(B, current > 0 ? productNorm(m.B.data, m.A.data, mOut, r, k) / current : 0);
    return { name: m.name, A: makeTensor('F32', [r, k], A), B: makeTensor('F32', [mOut, r], B) };
  });
  return buildLoraAdapter(adapter.config, pairs, 'random adapter');
}

function norm(x: Float32Array): number {
  let s = 0;
  for (const v of x) s += v * v;
  return Math.sqrt(s);
}

function scaleBy(x: Float32Array, f: number): void {
  for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) * f;
}

function scaleTo(x: Float32Array, target: number): void {
  const n = norm(x);
  scaleBy(x, n > 0 ? target / n : 0);
}

/** ‖B·A‖_F for B [m, r] and A [r, k], through the r×r Gram matrices (never forms B·A). */
function productNorm(B: Float32Array, A: Float32Array, m: number, r: number, k: number): number {
  // ‖BA‖² = tr(BᵀB · AAᵀ)
  const btb = new Float64Array(r * r);
  const aat = new Float64Array(r * r);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < r; j++) {
      let sb = 0;
      for (let row = 0; row < m; row++) sb += (B[row * r + i] as number) * (B[row * r + j] as number);
      btb[i * r + j] = sb;
      let sa = 0;
      for (let col = 0; col < k; col++) sa += (A[i * k + col] as number) * (A[j * k + col] as number);
      aat[i * r + j] = sa;
    }
  }
  let t = 0;
  for (let i = 0; i < r * r; i++) t += (btb[i] as number) * (aat[i] as number);
  return Math.sqrt(Math.max(0, t));
}

function round(x: number): number {
  return Math.round(x * 1e3) / 1e3;
}

function positiveInt(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
}

function positiveNumber(name: string): (v: string) => number {
  return (v) => {
    const x = Number(v);
    if (!(x > 0)) throw new InvalidArgumentError(`${name} must be a positive number, got ${JSON.stringify(v)}`);
    return x;
  };
}

interface TaskAdaptersCli {
  model: string;
  output: string;
  corpus: TaskCorpus;
  count: number;
  rank: number;
  alpha?: number;
  targetModules: string;
  steps: number;
  batchSize: number;
  sequenceLength?: number;
  learningRate: number;
  seed: number;
  maxChars: number;
  threads?: number;
  progress: boolean;
}

/** Adds `task-adapters` to a commander program; the last stdout line is the result as JSON. */
export function registerTaskAdapters(program: Command): Command {
  return program
    .command('task-adapters')
    .description('train one LoRA adapter per Brown document or State of the Union address on a base model and save each as a PEFT directory (a collection to compress with JD)')
    .requiredOption('--model <dir>', 'base model: Hugging Face checkpoint directory with tokenizer.json')
    .requiredOption('--output <dir>', 'directory that receives one adapter directory per task')
    .addOption(new Option('--corpus <name>', 'where the tasks come from').choices(['brown', 'sotu']).default('brown'))
    .option('--count <n>', 'number of tasks (adapters)', positiveInt('--count'), 24)
    .option('--rank <r>', 'LoRA rank', positiveInt('--rank'), TASK_DEFAULTS.rank)
    .option('--alpha <x>', 'lora_alpha (default 2·rank)', positiveNumber('--alpha'))
    .option('--target-modules <list>', 'comma-separated module names adapted in every layer', TASK_DEFAULTS.targetModules.join(','))
    .option('--steps <n>', 'optimizer steps per adapter', positiveInt('--steps'), TASK_DEFAULTS.steps)
    .option('--batch-size <n>', 'sequences per step', positiveInt('--batch-size'), TASK_DEFAULTS.batchSize)
    .option('--sequence-length <n>', 'tokens per window (default min(64, max_position_embeddings))', positiveInt('--sequence-length'))
    .option('--learning-rate <x>', 'peak learning rate', positiveNumber('--learning-rate'), TASK_DEFAULTS.learningRate)
    .option('--seed <n>', 'adapter i uses seed + i', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`--seed must be an integer ≥ 0, got ${JSON.stringify(v)}`);
      return n;
    }, 0)
    .option('--max-chars <n>', 'characters of each document used, training and held-out together', positiveInt('--max-chars'), TASK_DEFAULTS.maxChars)
    .option('--threads <n>', 'ONNX Runtime intra-op threads', positiveInt('--threads'))
    .option('--no-progress', 'never draw the progress bar (drawn only when stderr is a terminal)')
    .action(async (o: TaskAdaptersCli) => {
      const controller = new AbortController();
      const stop = (): void => controller.abort();
      process.once('SIGTERM', stop);
      try {
        const tasks = corpusTasks(o.corpus, o.count, { maxChars: o.maxChars });
        const targetModules = o.targetModules.split(',').map((s) => s.trim()).filter((s) => s !== '');
        const r = await trainTaskAdapters({ ...o, tasks, targetModules, progressBar: o.progress, signal: controller.signal });
        process.stdout.write(`${JSON.stringify(r)}\n`);
      } finally {
        process.off('SIGTERM', stop);
      }
    });
}
