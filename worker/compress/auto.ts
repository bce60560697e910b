// Automatic rank and cluster count: the cheapest (rank, clusters) pair, by parameter count,
// whose mean reconstruction error on a few probe module slots meets the target — the paper's
// procedure (Appendix F: settings chosen on a single module, then used for all).
import { clusterAdapters, type ClusteringResult } from './cluster.js';
import { type JdKernels } from './kernels.js';
import { countParameters, type ParameterCount } from './params.js';
import { type Slot } from './slot.js';

export interface AutoOptions {
  method: 'jd-full' | 'jd-diag';
  targetErrorPercent: number;
  /** Largest rank to consider. */
  maxRank: number;
  iterations: number;
  tolerance: number;
  seed: number;
  ranks?: readonly number[];
  clusterCounts?: readonly number[];
  /** Module slots the search runs on (evenly spaced). Default 2. */
  probeSlots?: number;
}

export interface AutoCandidate {
  rank: number;
  clusters: number;
  /** Mean of ‖M − UΣVᵀ‖_F/‖M‖_F over adapters × probe slots. */
  meanError: number;
  parameters: ParameterCount;
}

export interface AutoChoice extends AutoCandidate {
  /** False when no candidate met the target: the lowest-error one is returned. */
  metTarget: boolean;
  evaluated: AutoCandidate[];
}

export async function chooseRankAndClusters(kernels: JdKernels, slots: readonly Slot[], opts: AutoOptions): Promise<AutoChoice> {
  if (!(opts.targetErrorPercent > 0)) throw new Error(`targetErrorPercent ${opts.targetErrorPercent} is invalid: clusters 'auto' needs a target above 0`);
  const n = slots[0]?.n ?? 0;
  const ranks = (opts.ranks ?? [4, 8, 16, 32, 64, 128, 256]).filter((r) => r <= opts.maxRank);
  if (!ranks.includes(opts.maxRank)) ranks.push(opts.maxRank);
  const counts = (opts.clusterCounts ?? [1, 2, 3, 5, 7, 10, 15, 25]).filter((c) => c <= Math.max(1, Math.floor(n / 2)) || c === 1);
  const shapes = (rank: number): Array<{ m: number; k: number; rank: number; ranks: number[] }> => slots.map((s) => ({ m: s.m, k: s.k, rank: Math.min(rank, s.m, s.k), ranks: s.ranks }));
  const candidates = ranks
    .flatMap((rank) => counts.map((clusters) => ({ rank, clusters, parameters: countParameters(opts.method, clusters, shapes(rank)) })))
    .sort((a, b) => a.parameters.compressed - b.parameters.compressed);
  const probe = pickProbe(slots, opts.probeSlots ?? 2);
  const evaluated: AutoCandidate[] = [];
  for (const c of candidates) {
    // A candidate dominated by an evaluated one (fewer or equal clusters and rank, already failing) cannot pass.
    if (evaluated.some((e) => e.rank >= c.rank && e.clusters >= c.clusters && e.meanError * 100 > opts.targetErrorPercent)) continue;
    const res = await clusterAdapters(kernels, probe, { method: opts.method, clusters: c.clusters, rank: c.rank, iterations: opts.iterations, tolerance: opts.tolerance, seed: opts.seed, rounds: 5 });
    const meanError = meanOf(res);
    evaluated.push({ ...c, meanError });
    if (meanError * 100 <= opts.targetErrorPercent) return { ...c, meanError, metTarget: true, evaluated };
  }
  const best = evaluated.reduce((a, b) => (b.meanError < a.meanError ? b : a));
  return { ...best, metTarget: false, evaluated };
}

function pickProbe(slots: readonly Slot[], count: number): Slot[] {
  if (slots.length <= count) return [...slots];
  return Array.from({ length: count }, (_, i) => slots[Math.floor(((i + 0.5) * slots.length) / count)] as Slot);
}

export function meanOf(res: ClusteringResult): number {
  let sum = 0;
  let count = 0;
  for (const fit of res.clusters) for (const s of fit.slots) for (const e of s.errors) {
    sum += e;
    count++;
  }
  return count > 0 ? sum / count : 0;
}
