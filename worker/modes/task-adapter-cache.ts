// A collection of trained task adapters kept on disk between runs: the tiny pretrained base and
// one LoRA per Brown document or State of the Union address, trained once and reused by the jd
// bench (and anything else that wants real adapters without paying for training again). A Brown
// collection only grows: asking for 500 after 100 trains adapters 100…499 and keeps the first 100,
// which are exactly what a single run of 500 would have trained (brownTasks(n) is a prefix of
// brownTasks(500), and adapter i always takes seed + i). SOTU counts pick addresses spread over the
// years, so another count is another collection.
//
// Layout under `root`:  <key>/base/ (HF checkpoint)  <key>/adapters/<name>/ (PEFT)  <key>/index.json
// where key hashes every setting that changes what is trained, so a change trains a new set. The
// base lives with its adapters: a base pretrained again (it went missing) invalidates them all.
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type Logger } from 'pino';
import { fileExists, readJsonFile, writeJsonAtomic } from '../formats/atomic-file.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../formats/peft.js';
import { type SessionCache } from '../onnx/session.js';
import { pretrain } from './pretrain.js';
import { corpusTasks, TASK_DEFAULTS, type TaskAdapterResult, type TaskAdaptersResult, type TaskCorpus, trainTaskAdapters } from './task-adapters.js';

/**
 * Bumped whenever training or pretraining code changes what a setting produces, so stale
 * adapters are not mistaken for current ones (the key cannot see code).
 */
export const TASK_CACHE_VERSION = 1;

/** `$XDG_CACHE_HOME/tessera` or `~/.cache/tessera`, the project's cache convention (scripts/demo.sh). */
export function tesseraCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tessera');
}

export interface CachedTaskAdaptersOptions {
  /** Cache root; default `tesseraCacheDir()/task-adapters`. */
  root?: string;
  /** Adapters wanted: corpusTasks(corpus, count). */
  count: number;
  /** Default brown. */
  corpus?: TaskCorpus;
  rank?: number;
  steps?: number;
  learningRate?: number;
  seed?: number;
  /** Adapters trained between two writes of the index: what an interrupted run can lose. */
  chunk?: number;
  log?: Logger;
  cache?: SessionCache;
}

export interface CachedTaskAdapters extends TaskAdaptersResult {
  /** The pretrained base model directory the adapters belong to. */
  base: string;
  /** Where the tasks came from: adapter i is for corpusTasks(corpus, count)[i]. */
  corpus: TaskCorpus;
  /** Adapters trained by this call (0 when all came from the cache), and the seconds it took. */
  trainedNow: number;
  trainSeconds: number;
}

interface Index {
  version: number;
  settings: Record<string, unknown>;
  rank: number;
  alpha: number;
  targetModules: string[];
  steps: number;
  sequenceLength: number;
  /** Adapter directories are stored relative to the cache entry, so the cache can move. */
  adapters: TaskAdapterResult[];
}

export async function cachedTaskAdapters(opts: CachedTaskAdaptersOptions): Promise<CachedTaskAdapters> {
  const settings = {
    version: TASK_CACHE_VERSION, base: 'tiny', baseSeed: 0, corpus: opts.corpus ?? 'brown',
    rank: opts.rank ?? TASK_DEFAULTS.rank, steps: opts.steps ?? TASK_DEFAULTS.steps,
    learningRate: opts.learningRate ?? TASK_DEFAULTS.learningRate, seed: opts.seed ?? 0,
  };
  const key = createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 16);
  const dir = join(opts.root ?? join(tesseraCacheDir(), 'task-adapters'), key);
  const base = join(dir, 'base');
  const indexPath = join(dir, 'index.json');
  const tasks = corpusTasks(settings.corpus, opts.count);
  const started = performance.now();

  let index = await readIndex(indexPath, settings);
  if (!(await fileExists(join(base, 'config.json')))) {
    opts.log?.info({ base }, 'pretraining the tiny base model for the task adapter cache');
    await pretrain({ output: base, size: 'tiny', seed: settings.baseSeed, threads: 1, progressBar: false, ...(opts.log ? { log: opts.log } : {}) });
    // Adapters trained on an earlier copy of the base are not trusted with this one.
    index = { ...index, adapters: [] };
  }
  // Keep the longest prefix of the wanted tasks whose adapters are intact on disk.
  let have = 0;
  while (have < tasks.length && have < index.adapters.length && index.adapters[have]?.name === tasks[have]?.name && (await intact(join(dir, 'adapters', tasks[have]?.name ?? '')))) have++;
  // Entries past the wanted count stay when the wanted prefix is intact (asking for 100 of 500).
  if (have < tasks.length) index = { ...index, adapters: index.adapters.slice(0, have) };

  const chunk = opts.chunk ?? 25;
  let trainedNow = 0;
  for (let start = have; start < tasks.length; start += chunk) {
    const part = tasks.slice(start, start + chunk);
    const res = await trainTaskAdapters({
      model: base, tasks: part, firstIndex: start, rank: settings.rank, steps: settings.steps, learningRate: settings.learningRate, seed: settings.seed,
      output: join(dir, 'adapters'), progressBar: false, ...(opts.log ? { log: opts.log } : {}), ...(opts.cache ? { cache: opts.cache } : {}),
    });
    trainedNow += res.adapters.length;
    index = { ...index, rank: res.rank, alpha: res.alpha, targetModules: res.targetModules, steps: res.steps, sequenceLength: res.sequenceLength, adapters: [...index.adapters.slice(0, start), ...res.adapters.map((a) => ({ ...a, dir: join('adapters', a.name) }))] };
    await writeJsonAtomic(indexPath, index);
    opts.log?.info({ trained: start + part.length, of: tasks.length }, 'task adapter cache grew');
  }
  const adapters = index.adapters.slice(0, tasks.length).map((a) => ({ ...a, dir: join(dir, a.dir) }));
  return {
    output: join(dir, 'adapters'), base, corpus: settings.corpus, rank: index.rank, alpha: index.alpha, targetModules: index.targetModules, steps: index.steps, sequenceLength: index.sequenceLength,
    adapters, seconds: adapters.reduce((s, a) => s + a.seconds, 0), trainedNow, trainSeconds: trainedNow > 0 ? (performance.now() - started) / 1000 : 0,
  };
}

async function intact(adapterDir: string): Promise<boolean> {
  return (await fileExists(join(adapterDir, ADAPTER_WEIGHTS))) && (await fileExists(join(adapterDir, ADAPTER_CONFIG)));
}

async function readIndex(path: string, settings: Record<string, unknown>): Promise<Index> {
  const empty: Index = { version: TASK_CACHE_VERSION, settings, rank: 0, alpha: 0, targetModules: [], steps: 0, sequenceLength: 0, adapters: [] };
  if (!(await fileExists(path))) return empty;
  const raw = (await readJsonFile(path)) as Partial<Index>;
  // A foreign or older index is ignored (and overwritten), never trusted: retraining is the safe side.
  if (raw.version !== TASK_CACHE_VERSION || JSON.stringify(raw.settings) !== JSON.stringify(settings) || !Array.isArray(raw.adapters)) {
    return empty;
  }
  return raw as Index;
}
