// Part (b) of the jd bench: the paper's Table 3 trade-off on adapters that were actually trained
// (one LoRA per Brown document on the tiny pretrained base, from the task adapter cache). For each
// setting (method, rank, clusters): mean reconstruction error, mean relative performance
// (ppl_base − ppl_compressed)/(ppl_base − ppl_lora) on each task's held-out paragraphs, and the
// parameter-saved ratio.
import { join } from 'node:path';
import { compressAdapters } from '../../worker/compress/run.js';
import { type JdKernels } from '../../worker/compress/kernels.js';
import { type JdMethod } from '../../worker/compress/types.js';
import { type JdBundle, materializeAdapter, readJdBundle } from '../../worker/formats/jd-bundle.js';
import { validateAdapterForBase } from '../../worker/formats/peft.js';
import { type AdapterSource } from '../../worker/modes/eval.js';
import { adapterToLora, loadModel } from '../../worker/modes/load-model.js';
import { type CachedTaskAdapters } from '../../worker/modes/task-adapter-cache.js';
import { corpusTasks, relativePerformance, taskPerplexities, type TaskCorpus } from '../../worker/modes/task-adapters.js';
import { type SessionCache } from '../../worker/onnx/session.js';

export interface TaskSetting {
  method: JdMethod;
  rank: number;
  clusters: number;
}

export interface TaskRow extends TaskSetting {
  n: number;
  corpus: TaskCorpus;
  /** Mean relative reconstruction error over adapters × modules. */
  error: number;
  /** Mean relative performance over the adapters that improved on the base at all. */
  relPerf: number;
  /**
   * Its median: an adapter that barely improved on its base (a gain of 0.01 perplexity) turns a
   * small change into a ratio of ±10, which moves the mean but not the median.
   */
  relPerfMedian: number;
  /**
   * The collection's summed gain kept, Σ(ppl_base − ppl_compressed) / Σ(ppl_base − ppl_lora) over
   * the same adapters: weighted by each adapter's gain, so near-zero gains cannot swing it.
   */
  relPerfPooled: number;
  saved: number;
  perAdapterSaved: number;
  seconds: number;
}

/**
 * The settings measured for n adapters of rank 4 on the tiny model (m + k = 128 or 96): per-LoRA
 * SVD below the adapters' own rank; JD-Full ranks around where its r² per adapter still saves
 * (r ≤ 6 keeps about 0.9 at n = 100); JD-Diag ranks up to where r(m + k)/n + r does; and clusters
 * at the ranks nearest 0.9 saved (the paper uses 25 clusters for 500 adapters).
 */
export function taskGrid(n: number): TaskSetting[] {
  const clusterCounts = n >= 500 ? [5, 25] : [3, Math.max(4, Math.round(n / 10))];
  return [
    ...[1, 2, 3].map((rank) => ({ method: 'svd' as const, rank, clusters: 1 })),
    ...[2, 4, 6, 8, 16].map((rank) => ({ method: 'jd-full' as const, rank, clusters: 1 })),
    ...clusterCounts.map((clusters) => ({ method: 'jd-full' as const, rank: 4, clusters })),
    ...[8, 16, 24, 32].map((rank) => ({ method: 'jd-diag' as const, rank, clusters: 1 })),
    ...clusterCounts.map((clusters) => ({ method: 'jd-diag' as const, rank: 16, clusters })),
  ];
}

/** BUNDLE_DIR#NAME like the eval CLI's source, but each bundle read once: 500 adapters share it. */
function memoBundleSource(): AdapterSource {
  const bundles = new Map<string, Promise<JdBundle>>();
  return {
    describe: 'a JD bundle directory and adapter name (BUNDLE_DIR#NAME), read once per bundle',
    matches: (spec) => spec.includes('#'),
    load: async (spec, model) => {
      const hash = spec.lastIndexOf('#');
      const dir = spec.slice(0, hash);
      const name = spec.slice(hash + 1);
      let bundle = bundles.get(dir);
      if (!bundle) bundles.set(dir, (bundle = readJdBundle(dir)));
      const adapter = materializeAdapter(await bundle, name);
      validateAdapterForBase(adapter, model.config, spec);
      return adapterToLora(adapter);
    },
  };
}

export async function taskTable(opts: { trained: CachedTaskAdapters; settings: readonly TaskSetting[]; kernels: JdKernels; cache: SessionCache; workDir: string; onRow?: (row: TaskRow) => void }): Promise<TaskRow[]> {
  const { trained } = opts;
  const n = trained.adapters.length;
  const tasks = corpusTasks(trained.corpus, n);
  const model = await loadModel(trained.base);
  // Relative performance is a ratio of gains: defined only where the adapter helped at all.
  const helped = trained.adapters.map((a) => a.pplLora < a.pplBase);
  const adapters = trained.adapters.map((a) => ({ name: a.name, dir: a.dir }));
  const rows: TaskRow[] = [];
  for (const s of opts.settings) {
    const t0 = performance.now();
    const output = join(opts.workDir, `n${n}-${s.method}-r${s.rank}-c${s.clusters}`);
    const summary = await compressAdapters({ adapters, method: s.method, rank: s.rank, clusters: s.clusters, output, baseModelDir: trained.base, kernels: opts.kernels });
    const seconds = (performance.now() - t0) / 1000;
    const ppl = await taskPerplexities({ model, tasks, adapter: (t) => `${output}#${t.name}`, sources: [memoBundleSource()], sequenceLength: trained.sequenceLength, cache: opts.cache });
    const rel = trained.adapters.flatMap((a, i) => (helped[i] ? [relativePerformance(a.pplBase, ppl[i] as number, a.pplLora)] : []));
    let kept = 0;
    let gained = 0;
    trained.adapters.forEach((a, i) => {
      if (!helped[i]) return;
      kept += a.pplBase - (ppl[i] as number);
      gained += a.pplBase - a.pplLora;
    });
    const sorted = [...rel].sort((x, y) => x - y);
    const median = sorted.length ? ((sorted[(sorted.length - 1) >> 1] as number) + (sorted[sorted.length >> 1] as number)) / 2 : Number.NaN;
    const row: TaskRow = { ...s, n, corpus: trained.corpus, error: summary.meanErrorPercent / 100, relPerf: rel.length ? rel.reduce((x, y) => x + y, 0) / rel.length : Number.NaN, relPerfMedian: median, relPerfPooled: gained > 0 ? kept / gained : Number.NaN, saved: summary.parameters.savedRatio, perAdapterSaved: summary.parameters.perAdapterSavedRatio, seconds };
    rows.push(row);
    opts.onRow?.(row);
  }
  return rows;
}

/**
 * The highest parameter-saved setting that keeps ≥ `keep` mean relative performance. When none
 * does, the best-keeping setting among those that save anything (met false): a setting that
 * stores more than the adapters themselves is no compression, whatever it keeps.
 */
export function bestSetting(rows: readonly TaskRow[], keep = 0.99): { row: TaskRow; met: boolean } | undefined {
  const compressing = rows.filter((r) => r.saved > 0 && !Number.isNaN(r.relPerf));
  const keeping = compressing.filter((r) => r.relPerf >= keep);
  if (keeping.length) return { row: keeping.reduce((a, b) => (b.saved > a.saved ? b : a)), met: true };
  if (!compressing.length) return undefined;
  return { row: compressing.reduce((a, b) => (b.relPerf > a.relPerf ? b : a)), met: false };
}

export const TASK_HEADER = `${'n'.padStart(4)} ${'method'.padEnd(8)} ${'rank'.padStart(4)} ${'clus'.padStart(4)} ${'error'.padStart(7)} ${'rel perf'.padStart(9)} ${'median'.padStart(7)} ${'pooled'.padStart(7)} ${'saved'.padStart(7)} ${'per-ad'.padStart(7)} ${'compress s'.padStart(10)}`;

export function formatTaskRow(r: TaskRow): string {
  return `${String(r.n).padStart(4)} ${r.method.padEnd(8)} ${String(r.rank).padStart(4)} ${String(r.clusters).padStart(4)} ${r.error.toFixed(3).padStart(7)} ${r.relPerf.toFixed(3).padStart(9)} ${r.relPerfMedian.toFixed(3).padStart(7)} ${r.relPerfPooled.toFixed(3).padStart(7)} ${r.saved.toFixed(3).padStart(7)} ${r.perAdapterSaved.toFixed(3).padStart(7)} ${r.seconds.toFixed(1).padStart(10)}`;
}
