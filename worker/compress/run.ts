// The compress entry: load PEFT adapters, check they fit each other, compress every module
// slot (JD-Full, JD-Diag or per-adapter SVD; with clustering), write the JD bundle and
// return a summary. The CLI and the gRPC worker call this.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { basisKey, bundleRevision, type JdBundleAdapter, type JdBundleManifest, type JdBundleSettings, JD_BUNDLE_FORMAT, JD_BUNDLE_VERSION, sigmaKey, writeJdBundle } from '../formats/jd-bundle.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, loadLoraAdapter, type LoraAdapter } from '../formats/peft.js';
import { makeTensor, shapeToString, type F32Tensor } from '../formats/tensor.js';
import { chooseRankAndClusters } from './auto.js';
import { clusterAdapters, type ClusterFit } from './cluster.js';
import { JdKernels } from './kernels.js';
import { countParameters, type ParameterCount } from './params.js';
import { packSlot, type Slot } from './slot.js';
import { perAdapterSvd } from './svd.js';
import { type JdFullVariant, type JdMethod, JD_METHODS, sigmaSize, type SlotResult } from './types.js';

export interface CompressProgress {
  stage: 'loading' | 'choosing' | 'compressing' | 'writing' | 'done';
  done: number;
  total: number;
  message: string;
}

export interface CompressOptions {
  adapters: ReadonlyArray<{ name: string; dir: string }>;
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
  /** Per module slot (of the last fit): iterations, convergence and objective history. */
  convergence: Array<{ module: string; cluster: number; iterations: number; converged: boolean; objective: number; history: number[] }>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export async function compressAdapters(opts: CompressOptions): Promise<CompressSummary> {
  checkOptions(opts);
  const progress = opts.onProgress ?? ((): void => undefined);
  const iterations = opts.iterations ?? 10;
  const tolerance = opts.tolerance ?? 1e-3;
  const seed = opts.seed ?? 0;
  const variant = opts.variant ?? 'alternating';
  const kernels = opts.kernels ?? new JdKernels();
  try {
    const loaded: Array<{ name: string; adapter: LoraAdapter; sha256: string; configSha256: string }> = [];
    for (const [i, { name, dir }] of opts.adapters.entries()) {
      progress({ stage: 'loading', done: i, total: opts.adapters.length, message: `loading adapter ${name}` });
      loaded.push(await loadOne(name, dir));
    }
    const modules = checkCompatible(loaded);
    const slots: Slot[] = [];
    for (const mod of modules) {
      const factors = loaded.map(({ adapter }) => {
        const lm = adapter.modules.get(mod.name);
        if (!lm) throw new Error(`unreachable: module ${mod.name} checked`);
        return { A: lm.A.data, B: lm.B.data, rank: lm.rank, scaling: lm.scaling };
      });
      slots.push(await packSlot(kernels, mod.name, mod.out, mod.in, factors, (i) => `adapter ${loaded[i]?.name}`));
    }

    let rank = opts.rank;
    let clusterCount = opts.clusters === 'auto' ? 1 : opts.clusters;
    if (opts.clusters === 'auto' && opts.method !== 'svd') {
      progress({ stage: 'choosing', done: 0, total: 1, message: `choosing rank and clusters for ${opts.targetErrorPercent}% mean error` });
      const choice = await chooseRankAndClusters(kernels, slots, { method: opts.method, targetErrorPercent: opts.targetErrorPercent as number, maxRank: opts.rank, iterations, tolerance, seed });
      rank = choice.rank;
      clusterCount = choice.clusters;
    }

    let fits: ClusterFit[];
    let assignment: number[];
    if (opts.method === 'svd') {
      // Each adapter is its own cluster: JD of one adapter is its truncated SVD (Eckart–Young).
      const perSlot: SlotResult[] = [];
      for (const [s, slot] of slots.entries()) {
        progress({ stage: 'compressing', done: s, total: slots.length, message: `SVD of module ${slot.name}` });
        perSlot.push(await perAdapterSvd(kernels, slot, rank));
      }
      assignment = loaded.map((_, i) => i);
      fits = loaded.map((_, i) => ({ members: [i], slots: perSlot.map((res, s) => sliceSvd(res, i, slots[s] as Slot)) }));
    } else {
      progress({ stage: 'compressing', done: 0, total: slots.length, message: `${opts.method} rank ${rank}, ${clusterCount} cluster(s), ${slots.length} module slots` });
      const res = await clusterAdapters(kernels, slots, {
        method: opts.method, clusters: clusterCount, rank, iterations, tolerance, seed, variant,
        onRound: (round, changed) => progress({ stage: 'compressing', done: round, total: 10, message: `clustering round ${round}: ${changed} adapter(s) moved` }),
      });
      fits = res.clusters;
      assignment = res.assignment;
    }

    progress({ stage: 'writing', done: 0, total: 1, message: `writing bundle to ${opts.output}` });
    const settings: JdBundleSettings = { method: opts.method, rank, clusters: fits.length, iterations, tolerance, seed, variant, targetErrorPercent: opts.targetErrorPercent ?? null };
    const summary = await writeBundle(opts, loaded, slots, fits, assignment, settings);
    progress({ stage: 'done', done: 1, total: 1, message: `bundle revision ${summary.revision.slice(0, 12)}` });
    return summary;
  } finally {
    if (!opts.kernels) await kernels.dispose();
  }
}

async function writeBundle(opts: CompressOptions, loaded: ReadonlyArray<{ name: string; adapter: LoraAdapter; sha256: string; configSha256: string }>, slots: readonly Slot[], fits: readonly ClusterFit[], assignment: readonly number[], settings: JdBundleSettings): Promise<CompressSummary> {
  const tensors = new Map<string, F32Tensor>();
  const errors = loaded.map(() => ({} as Record<string, number>));
  const convergence: CompressSummary['convergence'] = [];
  fits.forEach((fit, c) => {
    slots.forEach((slot, s) => {
      const res = fit.slots[s] as SlotResult;
      const r = res.rank;
      tensors.set(basisKey(slot.name, c, 'U'), makeTensor('F32', [slot.m, r], res.U));
      tensors.set(basisKey(slot.name, c, 'V'), makeTensor('F32', [slot.k, r], res.V));
      const size = sigmaSize(settings.method, r);
      fit.members.forEach((i, j) => {
        const name = (loaded[i] as { name: string }).name;
        tensors.set(sigmaKey(slot.name, name), makeTensor('F32', settings.method === 'jd-full' ? [r, r] : [r], res.sigma.slice(j * size, (j + 1) * size)));
        (errors[i] as Record<string, number>)[slot.name] = res.errors[j] as number;
      });
      if (settings.method !== 'svd') convergence.push({ module: slot.name, cluster: c, iterations: res.iterations, converged: res.converged, objective: res.objective, history: res.history });
    });
  });
  const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  const adapterMean = errors.map((e) => mean(Object.values(e)));
  const moduleRank = (slot: Slot): number => (fits[0]?.slots[slots.indexOf(slot)] as SlotResult).rank;
  const parameters = countParameters(settings.method, fits.length, slots.map((s) => ({ m: s.m, k: s.k, rank: moduleRank(s), ranks: s.ranks })));
  const clusters = fits.map((fit, id) => ({ id, size: fit.members.length, rank: settings.rank, meanErrorPercent: 100 * mean(fit.members.map((i) => adapterMean[i] as number)) }));
  const adapters: JdBundleAdapter[] = loaded.map(({ name, adapter, sha256, configSha256 }, i) => ({
    name,
    cluster: assignment[i] as number,
    sha256,
    configSha256,
    modules: Object.fromEntries(slots.map((slot) => {
      const lm = adapter.modules.get(slot.name);
      return [slot.name, { error: (errors[i] as Record<string, number>)[slot.name] as number, norm: slot.norms[i] as number, scaling: lm?.scaling ?? 0, rank: lm?.rank ?? 0 }];
    })),
  }));
  const revision = bundleRevision(loaded, settings);
  const manifest: JdBundleManifest = {
    format: JD_BUNDLE_FORMAT,
    formatVersion: JD_BUNDLE_VERSION,
    revision,
    createdAt: (opts.now ?? (() => new Date()))().toISOString(),
    baseModel: opts.baseModel ?? loaded[0]?.adapter.config.baseModelNameOrPath ?? null,
    settings,
    modules: slots.map((s) => ({ name: s.name, outFeatures: s.m, inFeatures: s.k, rank: moduleRank(s) })),
    clusters: clusters.map(({ id, size, meanErrorPercent }) => ({ id, size, meanErrorPercent })),
    adapters,
    parameters: { original: parameters.original, compressed: parameters.compressed, savedRatio: parameters.savedRatio, perAdapterSavedRatio: parameters.perAdapterSavedRatio },
  };
  await writeJdBundle(opts.output, { manifest, tensors });
  return {
    revision,
    output: opts.output,
    method: settings.method,
    rank: settings.rank,
    clusters,
    adapters: loaded.map(({ name }, i) => ({ name, cluster: assignment[i] as number, meanErrorPercent: 100 * (adapterMean[i] as number), errors: errors[i] as Record<string, number> })),
    meanErrorPercent: 100 * mean(adapterMean),
    parameters,
    convergence,
  };
}

/** The svd result of one adapter as a one-member cluster. */
function sliceSvd(res: SlotResult, i: number, slot: Slot): SlotResult {
  const r = res.rank;
  return { ...res, U: res.U.slice(i * slot.m * r, (i + 1) * slot.m * r), V: res.V.slice(i * slot.k * r, (i + 1) * slot.k * r), sigma: res.sigma.slice(i * r, (i + 1) * r), errors: res.errors.slice(i, i + 1) };
}

async function sha256File(path: string, adapter: string): Promise<string> {
  try {
    return createHash('sha256').update(await fsp.readFile(path)).digest('hex');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`adapter ${adapter}: ${path}: ${code === 'ENOENT' ? 'file not found' : (err as Error).message}`);
  }
}

async function loadOne(name: string, dir: string): Promise<{ name: string; adapter: LoraAdapter; sha256: string; configSha256: string }> {
  const sha256 = await sha256File(join(dir, ADAPTER_WEIGHTS), name);
  const configSha256 = await sha256File(join(dir, ADAPTER_CONFIG), name);
  try {
    return { name, adapter: await loadLoraAdapter(dir), sha256, configSha256 };
  } catch (err) {
    throw new Error(`adapter ${name}: ${(err as Error).message}`);
  }
}

/** Same module set and shapes in every adapter (ranks may differ); errors name adapter and module. */
function checkCompatible(loaded: ReadonlyArray<{ name: string; adapter: LoraAdapter }>): Array<{ name: string; out: number; in: number }> {
  const first = loaded[0] as { name: string; adapter: LoraAdapter };
  const ref = [...first.adapter.modules.values()].map((m) => ({ name: m.name, out: m.B.shape[0] as number, in: m.A.shape[1] as number })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const { name, adapter } of loaded.slice(1)) {
    for (const mod of ref) {
      const lm = adapter.modules.get(mod.name);
      if (!lm) throw new Error(`adapter ${name} has no module ${mod.name}, which adapter ${first.name} has: all adapters must target the same modules`);
      if (lm.B.shape[0] !== mod.out || lm.A.shape[1] !== mod.in) {
        throw new Error(`adapter ${name}: module ${mod.name} has lora_B ${shapeToString(lm.B.shape)} and lora_A ${shapeToString(lm.A.shape)} (out×in ${lm.B.shape[0]}×${lm.A.shape[1]}), but adapter ${first.name} has ${mod.out}×${mod.in}: adapters must share a base model`);
      }
    }
    for (const m of adapter.modules.keys()) {
      if (!ref.some((r) => r.name === m)) throw new Error(`adapter ${name} has module ${m}, which adapter ${first.name} lacks: all adapters must target the same modules`);
    }
  }
  return ref;
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
