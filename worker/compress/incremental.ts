// Incremental update (the paper's §3.3 "adding new LoRAs"): an earlier revision's bases stay, the
// adapters it already holds keep their cores, and each new adapter gets the core that projects it
// onto the best cluster's bases. That is kept only when every new adapter's mean reconstruction
// error stays within the allowance, and only when the earlier revision was made the same way
// (method, rank, clusters, iterations, seed) from modules of the same shapes; otherwise the
// caller recompresses everything and the manifest records why.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile } from '../formats/atomic-file.js';
import { basisKey, type JdBundle, type JdBundleSettings, JD_MANIFEST, readJdBundle, sigmaKey } from '../formats/jd-bundle.js';
import { type BundleAdapter, type BundleContent } from './bundle-writer.js';
import { type LoadedAdapter, type ModuleShape } from './inputs.js';
import { type JdKernels } from './kernels.js';
import { incrementalDecision, projectAdapters, type ClusterBases } from './project.js';
import { type Slot, subsetSlot } from './slot.js';
import { type JdFullVariant, type JdMethod } from './types.js';

/** The settings a run asks for, before clusters 'auto' has chosen anything. */
export interface RequestedSettings {
  method: JdMethod;
  rank: number;
  clusters: number | 'auto';
  iterations: number;
  tolerance: number;
  seed: number;
  variant: JdFullVariant;
  targetErrorPercent?: number;
}

export type IncrementalOutcome =
  | { path: 'projected'; content: Omit<BundleContent, 'createdAt' | 'baseModel'> }
  | { path: 'recompressed'; previousRevision: string | null; maxErrorPercent: number | null; reason: string };

/**
 * The newest bundle revision under `root` (one folder per revision, as the compress mode writes
 * them), by the manifests' createdAt; dot-folders (pending writes) and unreadable ones are skipped.
 */
export async function latestBundle(root: string): Promise<string | undefined> {
  const entries = await fsp.readdir(root, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  let best: { dir: string; createdAt: string } | undefined;
  for (const e of entries) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue;
    const dir = join(root, e.name);
    const manifest = (await readJsonFile(join(dir, JD_MANIFEST)).catch(() => undefined)) as { createdAt?: unknown } | undefined;
    const createdAt = typeof manifest?.createdAt === 'string' ? manifest.createdAt : undefined;
    if (createdAt === undefined) continue;
    // ISO-8601 UTC strings order as their instants; the folder name breaks ties so the pick is stable.
    if (!best || createdAt > best.createdAt || (createdAt === best.createdAt && dir > best.dir)) best = { dir, createdAt };
  }
  return best?.dir;
}

export interface ExtendOptions {
  kernels: JdKernels;
  /** The earlier revision's bundle directory. */
  previous: string;
  loaded: readonly LoadedAdapter[];
  modules: readonly ModuleShape[];
  /** One slot per module, all of `loaded` in order. */
  slots: readonly Slot[];
  requested: RequestedSettings;
  /** Allowance per new adapter; default targetErrorPercent, else the earlier revision's worst adapter. */
  maxErrorPercent?: number;
}

export async function extendBundle(opts: ExtendOptions): Promise<IncrementalOutcome> {
  let prev: JdBundle;
  try {
    prev = await readJdBundle(opts.previous);
  } catch (err) {
    return { path: 'recompressed', previousRevision: null, maxErrorPercent: null, reason: `the previous bundle ${opts.previous} is unreadable (${(err as Error).message})` };
  }
  const { manifest } = prev;
  const previousRevision = manifest.revision;
  const recompress = (reason: string, maxErrorPercent: number | null = null): IncrementalOutcome => ({ path: 'recompressed', previousRevision, maxErrorPercent, reason });
  const mismatch = settingsMismatch(manifest.settings, opts.requested);
  if (mismatch) return recompress(mismatch);
  const method = manifest.settings.method as 'jd-full' | 'jd-diag';
  const prevModules = new Map(manifest.modules.map((m) => [m.name, m]));
  const sameModules = manifest.modules.length === opts.modules.length && opts.modules.every((m) => prevModules.get(m.name)?.outFeatures === m.out && prevModules.get(m.name)?.inFeatures === m.in);
  if (!sameModules) return recompress(`the adapters' modules or shapes differ from revision ${previousRevision.slice(0, 12)}'s`);

  const prevAdapters = new Map(manifest.adapters.map((a) => [a.name, a]));
  const kept = opts.loaded.map((a) => {
    const p = prevAdapters.get(a.name);
    return p !== undefined && p.sha256 === a.sha256 && p.configSha256 === a.configSha256;
  });
  if (!kept.some(Boolean)) return recompress(`no adapter of revision ${previousRevision.slice(0, 12)} is among the inputs unchanged`);
  const added = kept.flatMap((k, i) => (k ? [] : [i]));
  const worstPrevious = Math.max(...manifest.adapters.map((a) => 100 * meanOf(Object.values(a.modules).map((m) => m.error))));
  const allowance = opts.maxErrorPercent ?? opts.requested.targetErrorPercent ?? worstPrevious;

  const modules = opts.modules.map((m) => ({ name: m.name, m: m.out, k: m.in, rank: prevModules.get(m.name)?.rank as number }));
  const tensor = (key: string): Float32Array => {
    const t = prev.tensors.get(key);
    if (!t) throw new Error(`unreachable: bundle ${previousRevision} was validated but lacks ${key}`);
    return t.data;
  };
  const bases = manifest.clusters.map((c) => modules.map((mod) => ({ U: tensor(basisKey(mod.name, c.id, 'U')), V: tensor(basisKey(mod.name, c.id, 'V')) })));
  const clusterBases: ClusterBases[] = bases.map((perModule) => ({ slots: perModule.map((b, s) => ({ ...b, rank: (modules[s] as { rank: number }).rank })) }));
  const projections = added.length > 0 ? await projectAdapters(opts.kernels, opts.slots.map((slot) => subsetSlot(slot, added)), clusterBases, method) : [];
  const decision = incrementalDecision(projections, allowance);
  if (decision.action === 'recompress' && decision.worst) {
    const name = opts.loaded[added[decision.worst.index] as number]?.name;
    return recompress(`adapter ${name} projects onto revision ${previousRevision.slice(0, 12)}'s bases with ${(100 * decision.worst.meanError).toFixed(2)}% mean reconstruction error, above the ${allowance.toFixed(2)}% allowed`, allowance);
  }

  const adapters: BundleAdapter[] = opts.loaded.map((a, i) => {
    const j = added.indexOf(i);
    const source = (s: number): { scaling: number; rank: number } => {
      const lm = a.adapter.modules.get((modules[s] as { name: string }).name);
      return { scaling: lm?.scaling ?? 0, rank: lm?.rank ?? 0 };
    };
    if (j < 0) {
      const p = prevAdapters.get(a.name) as (typeof manifest.adapters)[number];
      return { name: a.name, sha256: a.sha256, configSha256: a.configSha256, cluster: p.cluster, modules: modules.map((mod) => p.modules[mod.name] as BundleAdapter['modules'][number]), sigma: modules.map((mod) => tensor(sigmaKey(mod.name, a.name))) };
    }
    const proj = projections[j] as (typeof projections)[number];
    return {
      name: a.name, sha256: a.sha256, configSha256: a.configSha256, cluster: proj.cluster,
      modules: modules.map((_, s) => ({ error: proj.errors[s] as number, norm: (opts.slots[s] as Slot).norms[i] as number, ...source(s) })),
      sigma: proj.sigma,
    };
  });
  const worstNew = projections.length ? Math.max(...projections.map((p) => 100 * p.meanError)) : 0;
  const projected = added.map((i) => (opts.loaded[i] as LoadedAdapter).name);
  const dropped = manifest.adapters.filter((a) => !opts.loaded.some((l) => l.name === a.name)).length;
  return {
    path: 'projected',
    content: {
      settings: manifest.settings,
      modules,
      bases,
      adapters,
      convergence: manifest.convergence,
      update: {
        path: 'projected', previousRevision, projected, maxErrorPercent: allowance,
        reason: `${projected.length} adapter(s) projected onto revision ${previousRevision.slice(0, 12)}'s bases with at most ${worstNew.toFixed(2)}% mean reconstruction error (${allowance.toFixed(2)}% allowed)${dropped ? `; ${dropped} adapter(s) no longer in the inputs dropped` : ''}`,
      },
    },
  };
}

/** Why an earlier revision made with `prev` cannot be extended under `req`, or undefined if it can. */
function settingsMismatch(prev: JdBundleSettings, req: RequestedSettings): string | undefined {
  if (req.method === 'svd' || prev.method === 'svd') return 'per-adapter svd has no shared bases to project onto';
  if (prev.method !== req.method) return `the method changed from ${prev.method} to ${req.method}`;
  const changed: string[] = [];
  for (const key of ['iterations', 'tolerance', 'seed', 'variant'] as const) if (prev[key] !== req[key]) changed.push(`${key} ${prev[key]} → ${req[key]}`);
  if (req.clusters === 'auto') {
    // The earlier choice of rank and clusters stands if it was made for the same target.
    if (prev.targetErrorPercent !== (req.targetErrorPercent ?? null)) changed.push(`clusters auto for targetErrorPercent ${prev.targetErrorPercent} → ${req.targetErrorPercent}`);
    if (prev.rank > req.rank) changed.push(`rank ${prev.rank} is above the new maximum ${req.rank}`);
  } else {
    if (prev.rank !== req.rank) changed.push(`rank ${prev.rank} → ${req.rank}`);
    if (prev.clusters !== req.clusters) changed.push(`clusters ${prev.clusters} → ${req.clusters}`);
  }
  return changed.length ? `the settings changed (${changed.join(', ')})` : undefined;
}

function meanOf(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}
