// The bundle writer: one neutral description of a compressed collection (bases per cluster and
// module, a core per adapter and module, errors and norms) becomes the JD bundle's manifest and
// tensors, whichever path produced it — a fresh fit, or an earlier revision extended by projection.
import { basisKey, bundleRevision, type JdBundle, type JdBundleAdapterModule, type JdBundleManifest, type JdBundleSettings, type JdBundleSlotConvergence, type JdBundleUpdate, JD_BUNDLE_FORMAT, JD_BUNDLE_VERSION, sigmaKey } from '../formats/jd-bundle.js';
import { makeTensor, type F32Tensor } from '../formats/tensor.js';
import { countParameters, type ParameterCount } from './params.js';

export interface BundleAdapter {
  name: string;
  sha256: string;
  configSha256: string;
  cluster: number;
  /** In module order: relative error, norm, scaling and source rank. */
  modules: JdBundleAdapterModule[];
  /** In module order: r×r (jd-full) or r (jd-diag, svd), for the unit-norm update. */
  sigma: Float32Array[];
}

export interface BundleContent {
  settings: JdBundleSettings;
  modules: ReadonlyArray<{ name: string; m: number; k: number; rank: number }>;
  /** bases[cluster][module]: U m×r and V k×r, row-major. */
  bases: ReadonlyArray<ReadonlyArray<{ U: Float32Array; V: Float32Array }>>;
  adapters: readonly BundleAdapter[];
  convergence: JdBundleSlotConvergence[];
  update: JdBundleUpdate;
  baseModel: string | null;
  createdAt: string;
}

export interface BuiltBundle {
  bundle: JdBundle;
  parameters: ParameterCount;
  /** Mean relative error over modules, per adapter (fractions, in adapter order). */
  adapterMeans: number[];
  clusters: Array<{ id: number; size: number; rank: number; meanErrorPercent: number }>;
}

const mean = (xs: readonly number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

export function buildBundle(content: BundleContent): BuiltBundle {
  const { settings, modules, bases, adapters } = content;
  const tensors = new Map<string, F32Tensor>();
  bases.forEach((perModule, c) => {
    modules.forEach((mod, s) => {
      const b = perModule[s];
      if (!b) throw new Error(`cluster ${c} has no bases for module ${mod.name}`);
      tensors.set(basisKey(mod.name, c, 'U'), makeTensor('F32', [mod.m, mod.rank], b.U));
      tensors.set(basisKey(mod.name, c, 'V'), makeTensor('F32', [mod.k, mod.rank], b.V));
    });
  });
  for (const a of adapters) {
    modules.forEach((mod, s) => {
      const sigma = a.sigma[s] as Float32Array;
      tensors.set(sigmaKey(mod.name, a.name), makeTensor('F32', settings.method === 'jd-full' ? [mod.rank, mod.rank] : [mod.rank], sigma));
    });
  }
  const adapterMeans = adapters.map((a) => mean(a.modules.map((m) => m.error)));
  const clusters = bases.map((_, id) => {
    const members = adapters.flatMap((a, i) => (a.cluster === id ? [adapterMeans[i] as number] : []));
    return { id, size: members.length, rank: settings.rank, meanErrorPercent: 100 * mean(members) };
  });
  const parameters = countParameters(settings.method, bases.length, modules.map((mod, s) => ({ m: mod.m, k: mod.k, rank: mod.rank, ranks: adapters.map((a) => (a.modules[s] as JdBundleAdapterModule).rank) })));
  const previous = content.update.path === 'projected' ? (content.update.previousRevision ?? undefined) : undefined;
  const manifest: JdBundleManifest = {
    format: JD_BUNDLE_FORMAT,
    formatVersion: JD_BUNDLE_VERSION,
    revision: bundleRevision(adapters, settings, previous),
    createdAt: content.createdAt,
    baseModel: content.baseModel,
    settings,
    modules: modules.map((mod) => ({ name: mod.name, outFeatures: mod.m, inFeatures: mod.k, rank: mod.rank })),
    clusters: clusters.map(({ id, size, meanErrorPercent }) => ({ id, size, meanErrorPercent })),
    adapters: adapters.map((a) => ({ name: a.name, cluster: a.cluster, sha256: a.sha256, configSha256: a.configSha256, modules: Object.fromEntries(modules.map((mod, s) => [mod.name, a.modules[s] as JdBundleAdapterModule])) })),
    parameters: { original: parameters.original, compressed: parameters.compressed, savedRatio: parameters.savedRatio, perAdapterSavedRatio: parameters.perAdapterSavedRatio },
    // Histories stay out of the manifest: slots × clusters × iterations numbers nobody serves from.
    convergence: content.convergence.map(({ module, cluster, iterations, converged, objective }) => ({ module, cluster, iterations, converged, objective })),
    update: content.update,
  };
  return { bundle: { manifest, tensors }, parameters, adapterMeans, clusters };
}
