// The compress entry: load PEFT adapters, check them (digest pins, the base model, each other),
// compress every module slot (JD-Full, JD-Diag or per-adapter SVD; with clustering) or, when
// asked, extend an earlier revision by projecting the new adapters onto its bases; write the JD
// bundle and return a summary. The CLI and the gRPC worker call this.
import { type JdBundleSettings, type JdBundleSlotConvergence, type JdBundleUpdate, writeJdBundle } from '../formats/jd-bundle.js';
import { chooseRankAndClusters } from './auto.js';
import { type BundleAdapter, type BundleContent, buildBundle } from './bundle-writer.js';
import { clusterAdapters, type ClusterFit } from './cluster.js';
import { extendBundle } from './incremental.js';
import { type AdapterInput, checkCompatible, loadAdapter, type LoadedAdapter, type ModuleShape, packSlots, readBaseConfig } from './inputs.js';
import { JdKernels } from './kernels.js';
import { type ParameterCount } from './params.js';
import { type Slot } from './slot.js';
import { perAdapterSvd } from './svd.js';
import { type JdFullVariant, type JdMethod, JD_METHODS, sigmaSize, type SlotResult } from './types.js';

export interface CompressProgress {
  stage: 'loading' | 'choosing' | 'projecting' | 'compressing' | 'writing' | 'done';
  done: number;
  total: number;
  message: string;
}

export interface CompressOptions {
  adapters: readonly AdapterInput[];
  method: JdMethod;
  /** Rank of the shared bases (the maximum rank considered with clusters 'auto'). */
  rank: number;
  clusters: number | 'auto';
  /** Target mean relative reconstruction error, in percent; required with clusters 'auto'. */
  targetErrorPercent?: number;
  /** Iteration cap. Default 10, as in the paper. */
  iterations?: number;
  /** Relative subspace change (Full) / objective decrease (Diag) to stop at. Default 1e-3. */
  tolerance?: number;
  seed?: number;
  variant?: JdFullVariant;
  /** Bundle directory, written atomically. */
  output: string;
  /** Base model reference for the manifest; default the adapters' base_model_name_or_path. */
  baseModel?: string;
  /** Base model checkpoint directory: every adapter's modules and shapes are checked against its config.json. */
  baseModelDir?: string;
  /**
   * Extend the revision at `previous` instead of compressing from scratch, when its settings and
   * modules match and every new adapter projects onto its bases within `maxErrorPercent`
   * (default targetErrorPercent, else the earlier revision's worst adapter); otherwise recompress.
   */
  incremental?: { previous: string; maxErrorPercent?: number };
  onProgress?: (p: CompressProgress) => void;
  /** Shared kernels (sessions); a private set is created and disposed otherwise. */
  kernels?: JdKernels;
  /** Injected clock for createdAt. */
  now?: () => Date;
}

export interface CompressSummary {
  revision: string;
  output: string;
  method: JdMethod;
  rank: number;
  clusters: Array<{ id: number; size: number; rank: number; meanErrorPercent: number }>;
  adapters: Array<{ name: string; cluster: number; meanErrorPercent: number; errors: Record<string, number> }>;
  meanErrorPercent: number;
  parameters: ParameterCount;
  /** Per module slot and cluster: iterations, convergence and objective (history only for a fresh fit). */
  convergence: Array<JdBundleSlotConvergence & { history?: number[] }>;
  /** Which path made this revision: from scratch, by projection onto an earlier one, or recompressed. */
  update: JdBundleUpdate;
  /** sha256 of bundle.safetensors and its size. */
  bundleDigest: string;
  bundleBytes: number;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export async function compressAdapters(opts: CompressOptions): Promise<CompressSummary> {
  checkOptions(opts);
  const progress = opts.onProgress ?? ((): void => undefined);
  const requested = { method: opts.method, rank: opts.rank, clusters: opts.clusters, iterations: opts.iterations ?? 10, tolerance: opts.tolerance ?? 1e-3, seed: opts.seed ?? 0, variant: opts.variant ?? 'alternating', ...(opts.targetErrorPercent === undefined ? {} : { targetErrorPercent: opts.targetErrorPercent }) } as const;
  const kernels = opts.kernels ?? new JdKernels();
  try {
    const base = opts.baseModelDir === undefined ? undefined : await readBaseConfig(opts.baseModelDir);
    const loaded: LoadedAdapter[] = [];
    for (const [i, input] of opts.adapters.entries()) {
      progress({ stage: 'loading', done: i, total: opts.adapters.length, message: `loading adapter ${input.name}` });
      loaded.push(await loadAdapter(input, base));
    }
    const modules = checkCompatible(loaded);
    const slots = await packSlots(kernels, loaded, modules);

    let content: Omit<BundleContent, 'createdAt' | 'baseModel'> | undefined;
    let update: JdBundleUpdate = { path: 'full', previousRevision: null, projected: [], maxErrorPercent: null, reason: opts.incremental ? 'no earlier revision' : 'incremental update not requested' };
    if (opts.incremental) {
      progress({ stage: 'projecting', done: 0, total: 1, message: `projecting new adapters onto ${opts.incremental.previous}` });
      const outcome = await extendBundle({ kernels, previous: opts.incremental.previous, loaded, modules, slots, requested, ...(opts.incremental.maxErrorPercent === undefined ? {} : { maxErrorPercent: opts.incremental.maxErrorPercent }) });
      if (outcome.path === 'projected') content = outcome.content;
      else update = { path: 'recompressed', previousRevision: outcome.previousRevision, projected: [], maxErrorPercent: outcome.maxErrorPercent, reason: outcome.reason };
    }
    content ??= await compressAll(kernels, loaded, modules, slots, requested, opts.targetErrorPercent, progress, update);

    progress({ stage: 'writing', done: 0, total: 1, message: `writing bundle to ${opts.output}` });
    const built = buildBundle({ ...content, createdAt: (opts.now ?? (() => new Date()))().toISOString(), baseModel: opts.baseModel ?? loaded[0]?.adapter.config.baseModelNameOrPath ?? null });
    const written = await writeJdBundle(opts.output, built.bundle);
    const { manifest } = built.bundle;
    progress({ stage: 'done', done: 1, total: 1, message: `bundle revision ${manifest.revision.slice(0, 12)} (${manifest.update.path})` });
    return {
      revision: manifest.revision,
      output: opts.output,
      method: manifest.settings.method,
      rank: manifest.settings.rank,
      clusters: built.clusters,
      adapters: content.adapters.map((a, i) => ({ name: a.name, cluster: a.cluster, meanErrorPercent: 100 * (built.adapterMeans[i] as number), errors: Object.fromEntries(content.modules.map((mod, s) => [mod.name, (a.modules[s] as { error: number }).error])) })),
      meanErrorPercent: 100 * (built.adapterMeans.reduce((x, y) => x + y, 0) / Math.max(built.adapterMeans.length, 1)),
      parameters: built.parameters,
      convergence: content.convergence,
      update: manifest.update,
      bundleDigest: written.weightsSha256,
      bundleBytes: written.weightsBytes,
    };
  } finally {
    if (!opts.kernels) await kernels.dispose();
  }
}

/** A fresh fit of every adapter: per-adapter SVD, or JD with clustering (rank and clusters chosen first for 'auto'). */
async function compressAll(
  kernels: JdKernels, loaded: readonly LoadedAdapter[], modules: readonly ModuleShape[], slots: readonly Slot[],
  req: { method: JdMethod; rank: number; clusters: number | 'auto'; iterations: number; tolerance: number; seed: number; variant: JdFullVariant },
  targetErrorPercent: number | undefined, progress: (p: CompressProgress) => void, update: JdBundleUpdate,
): Promise<Omit<BundleContent, 'createdAt' | 'baseModel'>> {
  const { method, iterations, tolerance, seed, variant } = req;
  let rank = req.rank;
  let clusterCount = req.clusters === 'auto' ? 1 : req.clusters;
  if (req.clusters === 'auto' && method !== 'svd') {
    progress({ stage: 'choosing', done: 0, total: 1, message: `choosing rank and clusters for ${targetErrorPercent}% mean error` });
    const choice = await chooseRankAndClusters(kernels, slots, { method, targetErrorPercent: targetErrorPercent as number, maxRank: req.rank, iterations, tolerance, seed });
    rank = choice.rank;
    clusterCount = choice.clusters;
  }

  let fits: ClusterFit[];
  let assignment: number[];
  if (method === 'svd') {
    // Each adapter is its own cluster: JD of one adapter is its truncated SVD (Eckart–Young).
    const perSlot: SlotResult[] = [];
    for (const [s, slot] of slots.entries()) {
      progress({ stage: 'compressing', done: s, total: slots.length, message: `SVD of module ${slot.name}` });
      perSlot.push(await perAdapterSvd(kernels, slot, rank));
    }
    assignment = loaded.map((_, i) => i);
    fits = loaded.map((_, i) => ({ members: [i], slots: perSlot.map((res, s) => sliceSvd(res, i, slots[s] as Slot)) }));
  } else {
    progress({ stage: 'compressing', done: 0, total: slots.length, message: `${method} rank ${rank}, ${clusterCount} cluster(s), ${slots.length} module slots` });
    const res = await clusterAdapters(kernels, slots, {
      method, clusters: clusterCount, rank, iterations, tolerance, seed, variant,
      onRound: (round, changed) => progress({ stage: 'compressing', done: round, total: 10, message: `clustering round ${round}: ${changed} adapter(s) moved` }),
    });
    fits = res.clusters;
    assignment = res.assignment;
  }

  const settings: JdBundleSettings = { method, rank, clusters: fits.length, iterations, tolerance, seed, variant, targetErrorPercent: targetErrorPercent ?? null };
  const moduleRank = (s: number): number => (fits[0]?.slots[s] as SlotResult).rank;
  const adapters: BundleAdapter[] = loaded.map(({ name, adapter, sha256, configSha256 }, i) => {
    const fit = fits[assignment[i] as number] as ClusterFit;
    const j = fit.members.indexOf(i);
    return {
      name, sha256, configSha256, cluster: assignment[i] as number,
      modules: modules.map((mod, s) => {
        const lm = adapter.modules.get(mod.name);
        return { error: (fit.slots[s] as SlotResult).errors[j] as number, norm: (slots[s] as Slot).norms[i] as number, scaling: lm?.scaling ?? 0, rank: lm?.rank ?? 0 };
      }),
      sigma: modules.map((_, s) => {
        const size = sigmaSize(method, moduleRank(s));
        return (fit.slots[s] as SlotResult).sigma.slice(j * size, (j + 1) * size);
      }),
    };
  });
  // SVD is direct (no iterations), so only the joint methods report convergence.
  const convergence = method === 'svd' ? [] : fits.flatMap((fit, c) => fit.slots.map((res, s) => ({ module: (modules[s] as ModuleShape).name, cluster: c, iterations: res.iterations, converged: res.converged, objective: res.objective, history: res.history })));
  return {
    settings,
    modules: modules.map((mod, s) => ({ name: mod.name, m: mod.out, k: mod.in, rank: moduleRank(s) })),
    bases: fits.map((fit) => fit.slots.map((res) => ({ U: res.U, V: res.V }))),
    adapters,
    convergence,
    update,
  };
}

/** The svd result of one adapter as a one-member cluster. */
function sliceSvd(res: SlotResult, i: number, slot: Slot): SlotResult {
  const r = res.rank;
  return { ...res, U: res.U.slice(i * slot.m * r, (i + 1) * slot.m * r), V: res.V.slice(i * slot.k * r, (i + 1) * slot.k * r), sigma: res.sigma.slice(i * r, (i + 1) * r), errors: res.errors.slice(i, i + 1) };
}

function checkOptions(opts: CompressOptions): void {
  if (!JD_METHODS.includes(opts.method)) throw new Error(`method ${JSON.stringify(opts.method)} is not supported: expected one of ${JD_METHODS.join(', ')}`);
  if (!Number.isInteger(opts.rank) || opts.rank < 1) throw new Error(`rank ${opts.rank} is invalid: expected a positive integer`);
  if (opts.clusters !== 'auto' && (!Number.isInteger(opts.clusters) || opts.clusters < 1)) throw new Error(`clusters ${JSON.stringify(opts.clusters)} is invalid: expected a positive integer or 'auto'`);
  if (opts.clusters === 'auto' && opts.targetErrorPercent === undefined) throw new Error(`clusters 'auto' needs targetErrorPercent (the mean reconstruction error to meet, e.g. 40)`);
  if (opts.adapters.length === 0) throw new Error('adapters is empty: expected at least one {name, dir}');
  const seen = new Set<string>();
  for (const { name } of opts.adapters) {
    if (!NAME.test(name)) throw new Error(`adapter name ${JSON.stringify(name)} is invalid: expected letters, digits, '.', '_' or '-', starting with a letter or digit`);
    if (seen.has(name)) throw new Error(`adapter name ${name} appears twice: names must be unique`);
    seen.add(name);
  }
}
