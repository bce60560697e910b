// JD bundle: a directory with manifest.json (settings, adapters → cluster, per-adapter
// per-module error/norm/scaling, source digests, per-module rank, revision) and
// bundle.safetensors (per module per cluster U [out, r] and V [in, r]; per adapter per
// module sigma: [r, r] for jd-full, [r] for jd-diag and svd). Sigma is for the unit-norm
// update; the serving form of adapter i is  y = W x + norm_i · U (Σ_i (Vᵀ x)).
// `revision` hashes only the inputs and settings (and, for an incremental update, the revision
// it extends), so the same inputs give the same revision.
// The manifest also records how each module slot's fit converged and whether this revision was
// compressed from scratch or extended an earlier one by projection (`update`); bundles written
// before these fields existed read back with an empty `convergence` and update path 'full'.
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { readJsonFile, writeJsonAtomic } from './atomic-file.js';
import { loraConfig, type LoraAdapter, type LoraModule } from './peft.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';
import { makeTensor, shapeToString, type F32Tensor } from './tensor.js';

export const JD_BUNDLE_FORMAT = 'tessera.jd-bundle';
export const JD_BUNDLE_VERSION = 1;
export const JD_MANIFEST = 'manifest.json';
export const JD_WEIGHTS = 'bundle.safetensors';
const METHODS = ['jd-full', 'jd-diag', 'svd'] as const;
export type JdBundleMethod = (typeof METHODS)[number];

export interface JdBundleSettings {
  method: JdBundleMethod;
  rank: number;
  clusters: number;
  iterations: number;
  tolerance: number;
  seed: number;
  variant: 'alternating' | 'eigen';
  targetErrorPercent: number | null;
}

export interface JdBundleModule {
  name: string;
  outFeatures: number;
  inFeatures: number;
  rank: number;
}

export interface JdBundleAdapterModule {
  /** ‖ΔW − norm·UΣVᵀ‖_F / ‖ΔW‖_F. */
  error: number;
  /** ‖ΔW‖_F = ‖s·B·A‖_F of the source adapter (the serving scale). */
  norm: number;
  /** s = alpha/r of the source adapter. */
  scaling: number;
  /** The source adapter's rank here. */
  rank: number;
}

export interface JdBundleAdapter {
  name: string;
  cluster: number;
  /** sha256 of the source adapter_model.safetensors and adapter_config.json. */
  sha256: string;
  configSha256: string;
  modules: Record<string, JdBundleAdapterModule>;
}

/** How one module slot's fit for one cluster ended (jd-full and jd-diag; svd is direct). */
export interface JdBundleSlotConvergence {
  module: string;
  cluster: number;
  iterations: number;
  /** True when the tolerance was met before the iteration cap. */
  converged: boolean;
  /** Σ_i ‖M̃_i − U Σ_i Vᵀ‖²_F over the cluster's normalized adapters. */
  objective: number;
}

export const JD_UPDATE_PATHS = ['full', 'projected', 'recompressed'] as const;

/** How this revision came to be. */
export interface JdBundleUpdate {
  /**
   * full: compressed from scratch with no earlier revision to extend; projected: the earlier
   * revision's bases kept and new adapters projected onto them; recompressed: an earlier revision
   * existed but could not be extended (`reason` says why), so everything was compressed again.
   */
  path: (typeof JD_UPDATE_PATHS)[number];
  previousRevision: string | null;
  /** Adapters this revision added by projection (path projected). */
  projected: string[];
  /** The most mean reconstruction error, in percent, a projected adapter was allowed. */
  maxErrorPercent: number | null;
  reason: string;
}

export interface JdBundleManifest {
  format: typeof JD_BUNDLE_FORMAT;
  formatVersion: number;
  revision: string;
  createdAt: string;
  baseModel: string | null;
  settings: JdBundleSettings;
  modules: JdBundleModule[];
  clusters: Array<{ id: number; size: number; meanErrorPercent: number }>;
  adapters: JdBundleAdapter[];
  parameters: { original: number; compressed: number; savedRatio: number; perAdapterSavedRatio: number };
  convergence: JdBundleSlotConvergence[];
  update: JdBundleUpdate;
}

export interface JdBundle {
  manifest: JdBundleManifest;
  tensors: Map<string, F32Tensor>;
}

export const basisKey = (module: string, cluster: number, which: 'U' | 'V'): string => `modules/${module}/clusters/${cluster}/${which}`;
export const sigmaKey = (module: string, adapter: string): string => `modules/${module}/adapters/${adapter}/sigma`;

/**
 * sha256 over the sorted (name, digests) of the inputs and the settings; no timestamps. An
 * incremental update also hashes the revision it extends: its bases came from that revision's
 * inputs, so the same inputs compressed from scratch are a different bundle.
 */
export function bundleRevision(inputs: ReadonlyArray<{ name: string; sha256: string; configSha256: string }>, settings: JdBundleSettings, previousRevision?: string): string {
  const sorted = [...inputs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((a) => [a.name, a.sha256, a.configSha256]);
  const canon = Object.fromEntries(Object.entries(settings).sort(([a], [b]) => (a < b ? -1 : 1)));
  const body = { format: JD_BUNDLE_VERSION, inputs: sorted, settings: canon, ...(previousRevision === undefined ? {} : { extends: previousRevision }) };
  return createHash('sha256').update(JSON.stringify(body)).digest('hex');
}

/** What writeJdBundle wrote: the digest and size of bundle.safetensors (status.bundleDigest). */
export interface JdBundleWritten {
  weightsSha256: string;
  weightsBytes: number;
}

/**
 * Writes the bundle into a fresh temp directory beside `dir`, then renames it into place; an
 * existing bundle is moved aside first and removed after, so `dir` never holds a mix.
 */
export async function writeJdBundle(dir: string, bundle: JdBundle): Promise<JdBundleWritten> {
  validateBundle(bundle, dir);
  const parent = dirname(dir);
  await fsp.mkdir(parent, { recursive: true });
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(parent, `.${basename(dir)}.tmp-${tag}`);
  await fsp.mkdir(tmp);
  try {
    await writeSafetensors(join(tmp, JD_WEIGHTS), bundle.tensors, { format: JD_BUNDLE_FORMAT, revision: bundle.manifest.revision });
    // Hashed from the file as written, before the rename: the digest is of these exact bytes.
    const weights = await fsp.readFile(join(tmp, JD_WEIGHTS));
    const written = { weightsSha256: createHash('sha256').update(weights).digest('hex'), weightsBytes: weights.length };
    await writeJsonAtomic(join(tmp, JD_MANIFEST), bundle.manifest);
    const old = join(parent, `.${basename(dir)}.old-${tag}`);
    const hadOld = await fsp.rename(dir, old).then(() => true, (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    });
    try {
      await fsp.rename(tmp, dir);
    } catch (err) {
      if (hadOld) await fsp.rename(old, dir);
      throw err;
    }
    if (hadOld) await fsp.rm(old, { recursive: true, force: true });
    return written;
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

/** Reads and validates a bundle; errors name the file and the key. */
export async function readJdBundle(dir: string): Promise<JdBundle> {
  const manifestPath = join(dir, JD_MANIFEST);
  const manifest = parseManifest(await readJsonFile(manifestPath), manifestPath);
  const weightsPath = join(dir, JD_WEIGHTS);
  const { tensors: raw } = await readSafetensors(weightsPath).catch((err: Error) => {
    throw new Error(err.message.startsWith(weightsPath) ? err.message : `${weightsPath}: ${err.message}`);
  });
  const tensors = new Map<string, F32Tensor>();
  for (const [key, t] of raw) {
    if (t.dtype !== 'F32') throw new Error(`${weightsPath}: tensor ${key} has dtype ${t.dtype}: expected F32`);
    tensors.set(key, t as F32Tensor);
  }
  const bundle = { manifest, tensors };
  validateBundle(bundle, weightsPath);
  return bundle;
}

/** Every tensor the manifest implies exists with the right shape. */
function validateBundle(bundle: JdBundle, where: string): void {
  const { manifest, tensors } = bundle;
  const sigmaShape = (r: number): number[] => (manifest.settings.method === 'jd-full' ? [r, r] : [r]);
  const expect = (key: string, shape: number[]): void => {
    const t = tensors.get(key);
    if (!t) throw new Error(`${where}: missing tensor ${key} (expected F32 ${shapeToString(shape)})`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) throw new Error(`${where}: tensor ${key} is ${shapeToString(t.shape)}: expected ${shapeToString(shape)}`);
  };
  for (const mod of manifest.modules) {
    for (const c of manifest.clusters) {
      expect(basisKey(mod.name, c.id, 'U'), [mod.outFeatures, mod.rank]);
      expect(basisKey(mod.name, c.id, 'V'), [mod.inFeatures, mod.rank]);
    }
    for (const a of manifest.adapters) expect(sigmaKey(mod.name, a.name), sigmaShape(mod.rank));
  }
}

/**
 * The adapter as ordinary LoRA factors, so any engine can load it as PEFT:
 * B̂ = norm·U·Σ_i (U·diag(σ_i) for jd-diag and svd), Â = Vᵀ, with lora_alpha = r so the
 * scaling is 1 and B̂Â = norm·UΣ_iVᵀ exactly.
 */
export function materializeAdapter(bundle: JdBundle, name: string): LoraAdapter {
  const { manifest, tensors } = bundle;
  const entry = manifest.adapters.find((a) => a.name === name);
  if (!entry) throw new Error(`adapter ${JSON.stringify(name)} is not in bundle revision ${manifest.revision.slice(0, 12)}: expected one of ${manifest.adapters.map((a) => a.name).join(', ')}`);
  const full = manifest.settings.method === 'jd-full';
  const modules = new Map<string, LoraModule>();
  for (const mod of manifest.modules) {
    const { outFeatures: m, inFeatures: k, rank: r } = mod;
    const U = (tensors.get(basisKey(mod.name, entry.cluster, 'U')) as F32Tensor).data;
    const V = (tensors.get(basisKey(mod.name, entry.cluster, 'V')) as F32Tensor).data;
    const sigma = (tensors.get(sigmaKey(mod.name, name)) as F32Tensor).data;
    const norm = entry.modules[mod.name]?.norm ?? 0;
    const B = new Float32Array(m * r);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < r; j++) {
        let s = 0;
        if (full) for (let p = 0; p < r; p++) s += (U[i * r + p] as number) * (sigma[p * r + j] as number);
        else s = (U[i * r + j] as number) * (sigma[j] as number);
        B[i * r + j] = norm * s;
      }
    }
    const A = new Float32Array(r * k);
    for (let j = 0; j < r; j++) for (let c = 0; c < k; c++) A[j * k + c] = V[c * r + j] as number;
    modules.set(mod.name, { name: mod.name, A: makeTensor('F32', [r, k], A), B: makeTensor('F32', [m, r], B), rank: r, alpha: r, scaling: 1 });
  }
  const maxRank = Math.max(...manifest.modules.map((m) => m.rank));
  const pattern = Object.fromEntries(manifest.modules.filter((m) => m.rank !== maxRank).map((m) => [m.name, m.rank]));
  const config = loraConfig({ r: maxRank, loraAlpha: maxRank, targetModules: manifest.modules.map((m) => m.name), rankPattern: pattern, alphaPattern: { ...pattern }, baseModelNameOrPath: manifest.baseModel });
  return { config, modules };
}

function parseManifest(raw: unknown, file: string): JdBundleManifest {
  const fail = (key: string, msg: string): never => {
    throw new Error(`${file}: ${key} ${msg}`);
  };
  const obj = (x: unknown, key: string): Record<string, unknown> => (typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : fail(key, `must be an object, got ${JSON.stringify(x)}`));
  const arr = (x: unknown, key: string): unknown[] => (Array.isArray(x) ? x : fail(key, `must be an array, got ${JSON.stringify(x)}`));
  const num = (x: unknown, key: string, integer = false): number => (typeof x === 'number' && Number.isFinite(x) && (!integer || Number.isInteger(x)) ? x : fail(key, `must be a${integer ? 'n integer' : ' finite number'}, got ${JSON.stringify(x)}`));
  const str = (x: unknown, key: string): string => (typeof x === 'string' ? x : fail(key, `must be a string, got ${JSON.stringify(x)}`));
  const m = obj(raw, 'manifest');
  if (m.format !== JD_BUNDLE_FORMAT) fail('format', `is ${JSON.stringify(m.format)}: expected ${JSON.stringify(JD_BUNDLE_FORMAT)}`);
  if (m.formatVersion !== JD_BUNDLE_VERSION) fail('formatVersion', `${JSON.stringify(m.formatVersion)} is not supported: expected ${JD_BUNDLE_VERSION}`);
  const s = obj(m.settings, 'settings');
  if (!(METHODS as readonly unknown[]).includes(s.method)) fail('settings.method', `is ${JSON.stringify(s.method)}: expected one of ${METHODS.join(', ')}`);
  if (s.variant !== 'alternating' && s.variant !== 'eigen') fail('settings.variant', `is ${JSON.stringify(s.variant)}: expected one of alternating, eigen`);
  const settings: JdBundleSettings = {
    method: s.method as JdBundleMethod,
    rank: num(s.rank, 'settings.rank', true),
    clusters: num(s.clusters, 'settings.clusters', true),
    iterations: num(s.iterations, 'settings.iterations', true),
    tolerance: num(s.tolerance, 'settings.tolerance'),
    seed: num(s.seed, 'settings.seed', true),
    variant: s.variant as 'alternating' | 'eigen',
    targetErrorPercent: s.targetErrorPercent === null ? null : num(s.targetErrorPercent, 'settings.targetErrorPercent'),
  };
  const modules = arr(m.modules, 'modules').map((x, i) => {
    const o = obj(x, `modules[${i}]`);
    return { name: str(o.name, `modules[${i}].name`), outFeatures: num(o.outFeatures, `modules[${i}].outFeatures`, true), inFeatures: num(o.inFeatures, `modules[${i}].inFeatures`, true), rank: num(o.rank, `modules[${i}].rank`, true) };
  });
  const clusters = arr(m.clusters, 'clusters').map((x, i) => {
    const o = obj(x, `clusters[${i}]`);
    return { id: num(o.id, `clusters[${i}].id`, true), size: num(o.size, `clusters[${i}].size`, true), meanErrorPercent: num(o.meanErrorPercent, `clusters[${i}].meanErrorPercent`) };
  });
  const ids = new Set(clusters.map((c) => c.id));
  const adapters = arr(m.adapters, 'adapters').map((x, i) => {
    const o = obj(x, `adapters[${i}]`);
    const name = str(o.name, `adapters[${i}].name`);
    const cluster = num(o.cluster, `adapters[${i}].cluster`, true);
    if (!ids.has(cluster)) fail(`adapters[${i}].cluster`, `${cluster} (adapter ${name}) is not a cluster id: expected one of ${[...ids].join(', ')}`);
    const mods = obj(o.modules, `adapters[${i}].modules`);
    const parsed: Record<string, JdBundleAdapterModule> = {};
    for (const mod of modules) {
      const key = `adapters[${i}].modules[${JSON.stringify(mod.name)}]`;
      const e = obj(mods[mod.name], key);
      parsed[mod.name] = { error: num(e.error, `${key}.error`), norm: num(e.norm, `${key}.norm`), scaling: num(e.scaling, `${key}.scaling`), rank: num(e.rank, `${key}.rank`, true) };
    }
    return { name, cluster, sha256: str(o.sha256, `adapters[${i}].sha256`), configSha256: str(o.configSha256, `adapters[${i}].configSha256`), modules: parsed };
  });
  const p = obj(m.parameters, 'parameters');
  const convergence = m.convergence === undefined ? [] : arr(m.convergence, 'convergence').map((x, i) => {
    const o = obj(x, `convergence[${i}]`);
    if (typeof o.converged !== 'boolean') fail(`convergence[${i}].converged`, `must be a boolean, got ${JSON.stringify(o.converged)}`);
    return { module: str(o.module, `convergence[${i}].module`), cluster: num(o.cluster, `convergence[${i}].cluster`, true), iterations: num(o.iterations, `convergence[${i}].iterations`, true), converged: o.converged as boolean, objective: num(o.objective, `convergence[${i}].objective`) };
  });
  const update = m.update === undefined ? { path: 'full' as const, previousRevision: null, projected: [], maxErrorPercent: null, reason: 'written before bundles recorded their update path' } : parseUpdate(obj(m.update, 'update'), fail, str, num);
  return {
    format: JD_BUNDLE_FORMAT,
    formatVersion: JD_BUNDLE_VERSION,
    revision: str(m.revision, 'revision'),
    createdAt: str(m.createdAt, 'createdAt'),
    baseModel: m.baseModel === null ? null : str(m.baseModel, 'baseModel'),
    settings,
    modules,
    clusters,
    adapters,
    parameters: { original: num(p.original, 'parameters.original'), compressed: num(p.compressed, 'parameters.compressed'), savedRatio: num(p.savedRatio, 'parameters.savedRatio'), perAdapterSavedRatio: num(p.perAdapterSavedRatio, 'parameters.perAdapterSavedRatio') },
    convergence,
    update,
  };
}

function parseUpdate(u: Record<string, unknown>, fail: (key: string, msg: string) => never, str: (x: unknown, key: string) => string, num: (x: unknown, key: string) => number): JdBundleUpdate {
  if (!(JD_UPDATE_PATHS as readonly unknown[]).includes(u.path)) fail('update.path', `is ${JSON.stringify(u.path)}: expected one of ${JD_UPDATE_PATHS.join(', ')}`);
  const projected = Array.isArray(u.projected) ? u.projected.map((x, i) => str(x, `update.projected[${i}]`)) : fail('update.projected', `must be an array, got ${JSON.stringify(u.projected)}`);
  return {
    path: u.path as JdBundleUpdate['path'],
    previousRevision: u.previousRevision === null ? null : str(u.previousRevision, 'update.previousRevision'),
    projected,
    maxErrorPercent: u.maxErrorPercent === null ? null : num(u.maxErrorPercent, 'update.maxErrorPercent'),
    reason: str(u.reason, 'update.reason'),
  };
}

