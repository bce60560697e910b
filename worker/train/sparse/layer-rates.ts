// LoSA's per-layer sparsity (ALGORITHMS.md §2): the rates x that minimise Σ imp_i·x_i with mean S
// and every x_i in [S − δ, S + δ], and the exact zero counts that realise them.
//
// The linear program has a closed form: writing x_i = S + y_i, Σ y_i = 0 and |y_i| ≤ δ, the
// objective Σ imp_i·y_i is least when the ⌊L/2⌋ least important layers take +δ, the ⌊L/2⌋ most
// important take −δ, and the median layer (odd L) keeps S. The reference solves the same program
// with SLSQP. Layers of equal importance share their rates: any split among them is optimal, and
// an even one does not favour a layer for its index (with two blocks CKA is symmetric, so both
// always tie and both get S).
//
// A rate is then a count. The model-wide count is exactly ⌊S·N⌋ for the N prunable weights, so
// the final round's merged model has the sparsity asked for to the weight; each layer gets ⌊x_l·N_l⌋
// or one more (largest remainders), and within a layer each module the same share.

/** Rates (fractions) per layer, in layer order; mean `mean` (to rounding), each within ±`delta`. */
export function allocateLayerRates(importance: readonly number[], mean: number, delta: number): number[] {
  const l = importance.length;
  if (l === 0) return [];
  if (!(delta >= 0)) throw new Error(`layer rates: delta must be ≥ 0, got ${delta}`);
  if (importance.some((x) => !Number.isFinite(x))) throw new Error(`layer rates: importance must be finite, got [${importance.join(', ')}]`);
  // Least important first (ties by index, then averaged below).
  const order = Array.from({ length: l }, (_, i) => i).sort((a, b) => (importance[a] as number) - (importance[b] as number) || a - b);
  const half = Math.floor(l / 2);
  const byRank = order.map((_, k) => (k < half ? mean + delta : k >= l - half ? mean - delta : mean));
  const rates = new Array<number>(l);
  for (let k = 0; k < l; ) {
    let end = k + 1;
    while (end < l && importance[order[end] as number] === importance[order[k] as number]) end++;
    const shared = byRank.slice(k, end).reduce((s, x) => s + x, 0) / (end - k);
    for (let j = k; j < end; j++) rates[order[j] as number] = shared;
    k = end;
  }
  return rates;
}

/**
 * Zero counts per layer: in total exactly `zeros`, each ⌊rates_l·sizes_l⌋ or ⌈ ⌉ (largest remainders
 * first), never beyond [0, sizes_l]. With layers of one size and rates of mean S, `zeros` = ⌊S·ΣN⌋
 * keeps every count within a weight of its rate.
 */
export function layerZeroCounts(rates: readonly number[], sizes: readonly number[], zeros: number): number[] {
  if (rates.length !== sizes.length) throw new Error(`layer counts: ${rates.length} rates for ${sizes.length} layers`);
  const capacity = sizes.reduce((s, n) => s + n, 0);
  if (!(Number.isInteger(zeros) && zeros >= 0 && zeros <= capacity)) throw new Error(`layer counts: ${zeros} zeros do not fit ${capacity} weights`);
  const ideal = rates.map((x, i) => Math.min(Math.max(x, 0), 1) * (sizes[i] as number));
  return apportion(ideal, sizes, zeros);
}

/**
 * Splits a layer's zero count over its modules in proportion to their sizes (one rate for all).
 * `floors` are counts a module cannot go below: a module without an adapter cannot grow back a
 * weight an earlier round zeroed, so a kept zero would stay zero and the count would be short of
 * the truth. Such a module keeps its floor and the others share the rest at one rate; when the
 * floors alone exceed the count they are returned as they are.
 */
export function moduleZeroCounts(zeros: number, sizes: readonly number[], floors?: readonly number[]): number[] {
  const total = sizes.reduce((s, n) => s + n, 0);
  if (!(Number.isInteger(zeros) && zeros >= 0 && zeros <= total)) throw new Error(`module counts: ${zeros} zeros do not fit ${total} weights`);
  const floor = (i: number): number => floors?.[i] ?? 0;
  const pinned = new Set<number>();
  for (;;) {
    const free = sizes.map((_, i) => i).filter((i) => !pinned.has(i));
    const budget = zeros - [...pinned].reduce((s, i) => s + floor(i), 0);
    if (budget < 0) return sizes.map((_, i) => Math.max(floor(i), 0));
    const freeSizes = free.map((i) => sizes[i] as number);
    const freeTotal = freeSizes.reduce((s, n) => s + n, 0);
    if (budget > freeTotal) {
      // The free modules fill up; the pinned ones take the rest above their floors.
      const pins = [...pinned];
      const room = pins.map((i) => (sizes[i] as number) - floor(i));
      const extra = apportion(room.map((r) => ((budget - freeTotal) * r) / room.reduce((a, b) => a + b, 0)), room, budget - freeTotal);
      const out = sizes.map((n) => n);
      pins.forEach((i, k) => (out[i] = floor(i) + (extra[k] as number)));
      return out;
    }
    const counts = apportion(freeSizes.map((n) => (freeTotal > 0 ? (budget * n) / freeTotal : 0)), freeSizes, budget);
    const below = free.filter((i, k) => (counts[k] as number) < floor(i));
    if (below.length === 0) {
      const out = sizes.map((_, i) => floor(i));
      free.forEach((i, k) => (out[i] = counts[k] as number));
      return out;
    }
    for (const i of below) pinned.add(i);
  }
}

/** Integers near `ideal` (floors, then +1 by largest remainder or −1 by smallest) summing to `sum`, each in [0, caps_i]. */
function apportion(ideal: readonly number[], caps: readonly number[], sum: number): number[] {
  const out = ideal.map((x, i) => Math.min(Math.floor(x), caps[i] as number));
  let diff = sum - out.reduce((s, x) => s + x, 0);
  const rest = ideal.map((x, i) => x - (out[i] as number));
  // Float rounding of the ideals can leave the floors a little over as well as under the sum.
  const up = ideal.map((_, i) => i).sort((a, b) => (rest[b] as number) - (rest[a] as number) || a - b);
  const down = [...up].reverse();
  while (diff !== 0) {
    const before = diff;
    for (const i of diff > 0 ? up : down) {
      if (diff === 0) break;
      if (diff > 0 && (out[i] as number) < (caps[i] as number)) {
        out[i] = (out[i] as number) + 1;
        diff--;
      } else if (diff < 0 && (out[i] as number) > 0) {
        out[i] = (out[i] as number) - 1;
        diff++;
      }
    }
    if (diff === before) throw new Error(`cannot apportion ${sum} over capacities [${caps.join(', ')}]`);
  }
  return out;
}
