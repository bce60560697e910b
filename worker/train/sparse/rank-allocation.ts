// LoSA's sparsity-aware rank allocation (ALGORITHMS.md §2, the reference's allocate_ranks): a layer
// whose pruning moved its output further from the dense model's gets a larger share of the rank
// budget L·r̄:
//   e_l = (1/d) Σ_{n,t,c} ((Yd − Ys)_{n,t,c} / σ_c)²,  σ_c = ‖Yd[:, :, c]‖₂
//   r_l = clip(round(e_l / mean(e) · r̄), 1, r_max)
// then the clipped, rounded ranks are brought back to Σ r_l = L·r̄ by ±1 steps: an excess is taken
// from layers above 1 in ascending-e order, a deficit given to layers below r_max in descending-e
// order. The reference makes one such pass; when clipping leaves more than L to move (one layer
// with nearly all the error) a single pass falls short, so passes repeat until the sum holds — in
// every other case that is the reference's single pass.

/** Per-channel-normalised squared error of a block's output: e_l above, from [n·T, d] outputs. */
export function reconstructionError(dense: Float32Array, sparse: Float32Array, channelNorms: Float64Array): number {
  const d = channelNorms.length;
  if (dense.length !== sparse.length || dense.length % d !== 0) throw new Error(`reconstruction error: outputs of ${dense.length} and ${sparse.length} values over ${d} channels`);
  let sum = 0;
  for (let i = 0; i < dense.length; i++) {
    const sigma = channelNorms[i % d] as number;
    if (sigma === 0) continue; // a channel the dense block never uses: nothing to reconstruct
    sum += (((dense[i] as number) - (sparse[i] as number)) / sigma) ** 2;
  }
  return sum / d;
}

/** σ_c = ‖Y[:, :, c]‖₂ over every token of a [n·T, d] output, float64. */
export function channelNorms(output: Float32Array, d: number): Float64Array {
  const out = new Float64Array(d);
  for (let i = 0; i < output.length; i++) out[i % d] = (out[i % d] as number) + (output[i] as number) ** 2;
  return out.map(Math.sqrt);
}

/**
 * Ranks per layer with Σ r_l = L·meanRank exactly, each in [1, maxRank]. All-zero errors (nothing
 * pruned) give every layer meanRank.
 */
export function allocateRanks(errors: readonly number[], meanRank: number, maxRank: number): number[] {
  const l = errors.length;
  if (!(Number.isInteger(meanRank) && Number.isInteger(maxRank) && meanRank >= 1 && meanRank <= maxRank)) {
    throw new Error(`rank allocation: the mean rank ${meanRank} must be an integer in [1, maxRank ${maxRank}]`);
  }
  if (errors.some((e) => !(Number.isFinite(e) && e >= 0))) throw new Error(`rank allocation: errors must be finite and ≥ 0, got [${errors.join(', ')}]`);
  const total = errors.reduce((s, e) => s + e, 0);
  if (total === 0) return errors.map(() => meanRank);
  const budget = l * meanRank;
  const ranks = errors.map((e) => Math.min(maxRank, Math.max(1, roundHalfEven((e / total) * budget))));
  const ascending = errors.map((_, i) => i).sort((a, b) => (errors[a] as number) - (errors[b] as number) || a - b);
  const descending = errors.map((_, i) => i).sort((a, b) => (errors[b] as number) - (errors[a] as number) || a - b);
  let diff = ranks.reduce((s, r) => s + r, 0) - budget;
  while (diff !== 0) {
    for (const i of diff > 0 ? ascending : descending) {
      if (diff > 0 && (ranks[i] as number) > 1) {
        ranks[i] = (ranks[i] as number) - 1;
        diff--;
      } else if (diff < 0 && (ranks[i] as number) < maxRank) {
        ranks[i] = (ranks[i] as number) + 1;
        diff++;
      }
      if (diff === 0) break;
    }
  }
  return ranks;
}

/** numpy's round: halves go to the even neighbour (2.5 → 2), as the reference's np.round does. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const frac = x - f;
  if (frac !== 0.5) return Math.round(x);
  return f % 2 === 0 ? f : f + 1;
}
