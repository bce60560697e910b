// Clustering (§3.2, Appendix A.3): JD on all adapters, k-means on features of their Σ_i
// (concatenated over module slots, unit-normalized: a cosine similarity; see `features`), then
// alternate a per-cluster JD fit with reassigning every adapter to the cluster whose bases
// (with its optimal Σ) give the lowest summed squared error, until no assignment changes.
import { compressSlot } from './compress-slot.js';
import { diagSigma } from './jd-diag.js';
import { type Basis, type JdKernels } from './kernels.js';
import { uniform } from './random.js';
import { type Slot, subsetSlot } from './slot.js';
import { identity } from './small.js';
import { type JdOptions, type SlotResult } from './types.js';

/** Bounds on the initial JD that only feeds k-means: its rank and how many slots it looks at. */
const FEATURE_RANK = 64;
const FEATURE_SLOTS = 4;

export interface ClusterOptions extends JdOptions {
  method: 'jd-full' | 'jd-diag';
  clusters: number;
  /** Cap on fit/reassign rounds. Default 10. */
  rounds?: number;
  onRound?: (round: number, changed: number) => void;
}

export interface ClusterFit {
  /** Adapter indices in this cluster, ascending. */
  members: number[];
  /** One result per slot, in slot order; its adapters are `members` in order. */
  slots: SlotResult[];
}

export interface ClusteringResult {
  /** Cluster id per adapter. */
  assignment: number[];
  clusters: ClusterFit[];
  rounds: number;
  /** True when the last reassignment changed nothing. */
  stable: boolean;
}

export async function clusterAdapters(kernels: JdKernels, slots: readonly Slot[], opts: ClusterOptions): Promise<ClusteringResult> {
  const n = slots[0]?.n ?? 0;
  const C = Math.min(opts.clusters, n);
  if (!Number.isInteger(opts.clusters) || opts.clusters < 1) throw new Error(`clusters ${opts.clusters} is invalid: expected a positive integer or 'auto'`);
  const fitAll = async (members: number[], warm?: ClusterFit): Promise<ClusterFit> => {
    const results: SlotResult[] = [];
    for (const [s, slot] of slots.entries()) {
      const prev = warm?.slots[s];
      const init = prev ? { U: { q: prev.U, R: identity(prev.rank) }, V: { q: prev.V, R: identity(prev.rank) } } : undefined;
      results.push(await compressSlot(kernels, subsetSlot(slot, members), opts.method, { ...opts, seed: opts.seed + 7919 * s, ...(init ? { init } : {}) }));
    }
    return { members, slots: results };
  };
  const everyone = Array.from({ length: n }, (_, i) => i);
  if (C <= 1) return { assignment: everyone.map(() => 0), clusters: [await fitAll(everyone)], rounds: 0, stable: true };

  // The initial JD runs at rank C·r (capped): C clusters of rank r span up to C·r directions, and
  // at rank r alone the cores of adapters outside the dominant cluster are mostly noise. Its
  // cores approximate the adapters' pairwise cosine similarities ⟨Σ_i, Σ_j⟩ ≈ ⟨M̃_i, M̃_j⟩.
  const probe = slots.filter((_, s) => s % Math.ceil(slots.length / FEATURE_SLOTS) === 0);
  const initRank = Math.max(opts.rank, Math.min(C * opts.rank, FEATURE_RANK));
  const global: SlotResult[] = [];
  for (const [s, slot] of probe.entries()) global.push(await compressSlot(kernels, slot, opts.method, { ...opts, rank: initRank, seed: opts.seed + 104729 * s }));
  let assignment = fillEmpty(kmeans(features(global, n), C, opts.seed), C);
  let fits: ClusterFit[] = [];
  const cap = opts.rounds ?? 10;
  let rounds = 0;
  let stable = false;
  for (;;) {
    const previous = fits;
    fits = [];
    for (let c = 0; c < C; c++) fits.push(await fitAll(members(assignment, c), previous[c]));
    rounds++;
    if (rounds >= cap) break;
    const next = await reassign(kernels, slots, fits, opts.method);
    const changed = next.reduce((acc, c, i) => acc + (c === assignment[i] ? 0 : 1), 0);
    opts.onRound?.(rounds, changed);
    if (changed === 0) {
      stable = true;
      break;
    }
    assignment = next;
  }
  return { assignment, clusters: fits, rounds, stable };
}

/** Squared error of every adapter under every cluster's bases (optimal Σ), summed over slots: [C][n]. */
export async function clusterErrors(kernels: JdKernels, slots: readonly Slot[], fits: readonly ClusterFit[], method: 'jd-full' | 'jd-diag'): Promise<Float64Array[]> {
  const out = fits.map(() => new Float64Array(slots[0]?.n ?? 0));
  for (const [s, slot] of slots.entries()) {
    for (const [c, fit] of fits.entries()) {
      const res = fit.slots[s] as SlotResult;
      const U: Basis = { q: res.U, R: identity(res.rank) };
      const V: Basis = { q: res.V, R: identity(res.rank) };
      const acc = out[c] as Float64Array;
      if (method === 'jd-full') {
        const { energy } = await kernels.project(slot, res.rank, U, V, ['energy']);
        for (let i = 0; i < slot.n; i++) acc[i] = (acc[i] as number) + (slot.norms[i] ? 1 : 0) - (energy as Float64Array)[i]!;
      } else {
        // ‖M̃ − U diag(σ) Vᵀ‖² at the optimal σ = G⁻¹d is ‖M̃‖² − σᵀd.
        const { sigma, d } = await diagSigma(kernels, slot, res.rank, U, V);
        for (let i = 0; i < slot.n; i++) {
          let sd = 0;
          for (let j = 0; j < res.rank; j++) sd += sigma[i * res.rank + j]! * d[i * res.rank + j]!;
          acc[i] = (acc[i] as number) + (slot.norms[i] ? 1 : 0) - sd;
        }
      }
    }
  }
  return out;
}

async function reassign(kernels: JdKernels, slots: readonly Slot[], fits: readonly ClusterFit[], method: 'jd-full' | 'jd-diag'): Promise<number[]> {
  const errs = await clusterErrors(kernels, slots, fits, method);
  const n = slots[0]?.n ?? 0;
  const next = Array.from({ length: n }, (_, i) => {
    let best = 0;
    for (let c = 1; c < errs.length; c++) if (errs[c]![i]! < errs[best]![i]!) best = c;
    return best;
  });
  // A cluster left empty takes the adapter that fits its own cluster worst (from a cluster of ≥ 2).
  for (let c = 0; c < errs.length; c++) {
    if (next.includes(c)) continue;
    const sizes = errs.map((_, cc) => next.filter((x) => x === cc).length);
    let worst = -1;
    for (let i = 0; i < n; i++) if (sizes[next[i]!]! > 1 && (worst < 0 || errs[next[i]!]![i]! > errs[next[worst]!]![worst]!)) worst = i;
    if (worst >= 0) next[worst] = c;
  }
  return next;
}

/** Moves one adapter from the largest cluster into each empty one, so every cluster can be fitted. */
function fillEmpty(assignment: number[], C: number): number[] {
  const out = [...assignment];
  for (let c = 0; c < C; c++) {
    if (out.includes(c)) continue;
    const sizes = Array.from({ length: C }, (_, cc) => out.filter((x) => x === cc).length);
    const largest = sizes.indexOf(Math.max(...sizes));
    out[out.lastIndexOf(largest)] = c;
  }
  return out;
}

function members(assignment: readonly number[], c: number): number[] {
  return assignment.flatMap((x, i) => (x === c ? [i] : []));
}

/**
 * Per adapter, over the probe slots: Σ_iΣ_iᵀ and Σ_iᵀΣ_i (σ_i² for a diagonal Σ), concatenated and
 * scaled to unit length. These say which shared directions an adapter uses, on either side,
 * independent of its core's sign and rotation: two random cores in one subspace are nearly
 * orthogonal as vectors, but their Grams are not.
 */
function features(results: readonly SlotResult[], n: number): Float64Array[] {
  return Array.from({ length: n }, (_, i) => {
    const parts: number[] = [];
    for (const res of results) {
      const r = res.rank;
      const size = res.sigma.length / n;
      const s = res.sigma.subarray(i * size, (i + 1) * size);
      if (size === r) {
        for (const x of s) parts.push(x * x);
        continue;
      }
      for (let a = 0; a < r; a++) for (let b = 0; b < r; b++) {
        let left = 0;
        let right = 0;
        for (let c = 0; c < r; c++) {
          left += s[a * r + c]! * s[b * r + c]!;
          right += s[c * r + a]! * s[c * r + b]!;
        }
        parts.push(left, right);
      }
    }
    const norm = Math.hypot(...parts) || 1;
    return Float64Array.from(parts, (x) => x / norm);
  });
}

/**
 * Lloyd's k-means with k-means++ seeding, restarted `restarts` times from different seeds and the
 * lowest within-cluster sum of squares kept (as scikit-learn's n_init does): one k-means++ draw
 * can put two centres in one group, and Lloyd's iterations never leave that local minimum — the
 * clustering rounds after it then start from a wrong grouping they cannot repair either. Seeded,
 * so runs are reproducible.
 *
 * The features are long (2r² per probe slot: 32,768 numbers at rank 64 over 4 slots), so every
 * distance goes through the n×n Gram matrix of the points, computed once: a point's squared
 * distance to a cluster mean is G_ii − 2·mean_q G_iq + mean_{q,q'} G_qq', which makes an
 * iteration O(n²) whatever the feature length, and restarts nearly free.
 */
export function kmeans(points: readonly Float64Array[], k: number, seed: number, iterations = 50, restarts = 10): number[] {
  const G = gram(points);
  let best: { labels: number[]; inertia: number } | undefined;
  for (let t = 0; t < restarts; t++) {
    const run = lloyd(G, points.length, k, seed + 7919 * t, iterations);
    if (!best || run.inertia < best.inertia - 1e-12) best = run;
  }
  return best?.labels ?? [];
}

function gram(points: readonly Float64Array[]): Float64Array {
  const n = points.length;
  const G = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const a = points[i] as Float64Array;
    for (let j = i; j < n; j++) {
      const b = points[j] as Float64Array;
      let s = 0;
      for (let x = 0; x < a.length; x++) s += a[x]! * b[x]!;
      G[i * n + j] = s;
      G[j * n + i] = s;
    }
  }
  return G;
}

function lloyd(G: Float64Array, n: number, k: number, seed: number, iterations: number): { labels: number[]; inertia: number } {
  const rand = uniform(seed);
  const between = (i: number, j: number): number => G[i * n + i]! - 2 * G[i * n + j]! + G[j * n + j]!;
  // k-means++: each next seed drawn with probability proportional to its squared distance to the nearest seed so far.
  const seeds = [Math.floor(rand() * n)];
  const nearestSeed = Float64Array.from({ length: n }, (_, i) => between(i, seeds[0]!));
  while (seeds.length < k) {
    const total = nearestSeed.reduce((a, b) => a + b, 0);
    let pick = rand() * total;
    let idx = 0;
    while (idx < n - 1 && pick > nearestSeed[idx]!) pick -= nearestSeed[idx++]!;
    seeds.push(idx);
    for (let i = 0; i < n; i++) nearestSeed[i] = Math.min(nearestSeed[i]!, between(i, idx));
  }
  const argmin = (score: (c: number) => number): number => {
    let best = 0;
    let bestScore = Infinity;
    for (let c = 0; c < k; c++) {
      const v = score(c);
      if (v < bestScore) [best, bestScore] = [c, v];
    }
    return best;
  };
  let labels = Array.from({ length: n }, (_, i) => argmin((c) => between(i, seeds[c]!)));
  // Squared distances of every point to every cluster mean, from the Gram matrix; Infinity for an empty cluster.
  const toMeans = (assign: readonly number[]): Float64Array => {
    const size = new Float64Array(k);
    for (const c of assign) size[c] = size[c]! + 1;
    const cross = new Float64Array(n * k);
    for (let i = 0; i < n; i++) for (let q = 0; q < n; q++) cross[i * k + assign[q]!] = cross[i * k + assign[q]!]! + G[i * n + q]!;
    const self = new Float64Array(k);
    for (let q = 0; q < n; q++) self[assign[q]!] = self[assign[q]!]! + cross[q * k + assign[q]!]!;
    const d = new Float64Array(n * k);
    for (let i = 0; i < n; i++) for (let c = 0; c < k; c++) d[i * k + c] = size[c] ? G[i * n + i]! - (2 * cross[i * k + c]!) / size[c]! + self[c]! / size[c]! ** 2 : Infinity;
    return d;
  };
  let d = toMeans(labels);
  for (let it = 1; it < iterations; it++) {
    const next = labels.map((_, i) => argmin((c) => d[i * k + c]!));
    if (next.every((x, i) => x === labels[i])) break;
    labels = next;
    d = toMeans(labels);
  }
  return { labels, inertia: labels.reduce((s, c, i) => s + d[i * k + c]!, 0) };
}
