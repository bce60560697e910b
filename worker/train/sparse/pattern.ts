// Where zeros may fall, and the selection of exactly which entries to prune from a score per
// weight (lower score = pruned first). Every selection takes an exact count, never a threshold:
// a threshold prunes every tie with it, so the achieved sparsity would drift from the target.
// Ties go to the lower index, so a selection is deterministic.
//
// Weights are row-major [rows = outputs, cols = inputs], as in a PyTorch nn.Linear.

/**
 * unstructured: a percentage of the entries (per row or per layer, by pruner);
 * n:m: at most n nonzero weights in every run of m consecutive inputs of a row, so m − n of
 *      every group are pruned (the CRD's reading: "2:4" keeps 2 of 4, "1:4" keeps 1).
 */
export type SparsityPattern = { kind: 'unstructured'; percent: number } | { kind: 'n:m'; n: number; m: number };

/** The percentage of weights a pattern prunes. */
export function patternPercent(p: SparsityPattern): number {
  return p.kind === 'unstructured' ? p.percent : (100 * (p.m - p.n)) / p.m;
}

/**
 * ⌊percent·n/100⌋ without a detour through a fraction: 0.7·7680 is 5375.999… in floating point,
 * while 70·7680/100 is exactly 5376 (an integer product divided once rounds to the true quotient).
 */
export function prunedCount(percent: number, n: number): number {
  return Math.floor((percent * n) / 100);
}

/**
 * From the CRD fields: pattern "unstructured" or "N:M" and targetPercent. Throws naming the field;
 * "structured" (whole neurons and heads) belongs to LORAM and is not a pattern these pruners make.
 */
export function parsePattern(pattern: string, targetPercent: number): SparsityPattern {
  if (!(Number.isFinite(targetPercent) && targetPercent >= 0 && targetPercent < 100)) {
    throw new Error(`sparsity.targetPercent must be a number in [0, 100), got ${JSON.stringify(targetPercent)}`);
  }
  if (pattern === 'unstructured') return { kind: 'unstructured', percent: targetPercent };
  const nm = /^([1-9][0-9]?):([1-9][0-9]?)$/.exec(pattern);
  if (nm) {
    const [n, m] = [Number(nm[1]), Number(nm[2])];
    if (n >= m) throw new Error(`sparsity.pattern ${pattern}: an N:M pattern needs N < M (e.g. 2:4)`);
    // The CRD's CEL rule compares in integers (100·(M−N)/M rounded down), so 1:3 goes with 66.
    if (Math.floor((100 * (m - n)) / m) !== targetPercent) {
      throw new Error(`sparsity.pattern ${pattern} fixes the sparsity at ${Math.floor((100 * (m - n)) / m)}%, but targetPercent is ${targetPercent}`);
    }
    return { kind: 'n:m', n, m };
  }
  if (pattern === 'structured') throw new Error('sparsity.pattern structured (whole neurons and heads) is not implemented for these pruners: use unstructured or N:M');
  throw new Error(`invalid sparsity.pattern ${JSON.stringify(pattern)}: expected unstructured, structured or N:M such as 2:4`);
}

/**
 * Prunes (keep[base + stride·i] = 0) exactly k of n entries, those with the lowest scores; ties
 * at the cut go to the lower index. A native sort of a copy finds the cut, so a layer of tens of
 * millions of weights costs one typed-array sort, not a comparator call per comparison.
 */
function pruneLowest(keep: Uint8Array, scores: ArrayLike<number>, base: number, n: number, k: number): void {
  if (k <= 0) return;
  if (k >= n) {
    keep.fill(0, base, base + n);
    return;
  }
  const sorted = new Float64Array(n);
  for (let i = 0; i < n; i++) sorted[i] = scores[base + i] as number;
  sorted.sort();
  const cut = sorted[k - 1] as number;
  let below = 0;
  for (let i = 0; i < n; i++) if ((scores[base + i] as number) < cut) below++;
  let ties = k - below;
  for (let i = 0; i < n; i++) {
    const s = scores[base + i] as number;
    if (s < cut || (s === cut && ties-- > 0)) keep[base + i] = 0;
  }
}

/** Prunes exactly ⌊percent·cols/100⌋ entries of every row. Returns the keep mask (1 keep, 0 prune). */
export function selectPerRow(scores: ArrayLike<number>, rows: number, cols: number, percent: number): Uint8Array {
  const keep = new Uint8Array(rows * cols).fill(1);
  const k = prunedCount(percent, cols);
  for (let r = 0; r < rows; r++) pruneLowest(keep, scores, r * cols, cols, k);
  return keep;
}

/** Prunes exactly ⌊percent·rows·cols/100⌋ entries of the whole matrix. */
export function selectPerLayer(scores: ArrayLike<number>, rows: number, cols: number, percent: number): Uint8Array {
  const n = rows * cols;
  const keep = new Uint8Array(n).fill(1);
  pruneLowest(keep, scores, 0, n, prunedCount(percent, n));
  return keep;
}

/** Prunes exactly `zeros` entries of the whole matrix (a count, for callers that set layer rates themselves). */
export function selectLayerCount(scores: ArrayLike<number>, n: number, zeros: number): Uint8Array {
  checkCount(zeros, n);
  const keep = new Uint8Array(n).fill(1);
  pruneLowest(keep, scores, 0, n, zeros);
  return keep;
}

/**
 * Prunes exactly `zeros` entries, as evenly over the rows as a count allows: every row loses
 * ⌊zeros/rows⌋, and the zeros mod rows left over go to the rows whose next-lowest score is lowest
 * (ties: lower row), so the odd extra weight is taken where it costs least.
 */
export function selectRowsCount(scores: ArrayLike<number>, rows: number, cols: number, zeros: number): Uint8Array {
  checkCount(zeros, rows * cols);
  const keep = new Uint8Array(rows * cols).fill(1);
  const per = Math.floor(zeros / rows);
  const extra = zeros - per * rows;
  const next = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    pruneLowest(keep, scores, r * cols, cols, per);
    if (extra > 0 && per < cols) {
      let lowest = Infinity;
      for (let j = 0; j < cols; j++) if (keep[r * cols + j] === 1) lowest = Math.min(lowest, scores[r * cols + j] as number);
      next[r] = lowest;
    }
  }
  const order = Array.from({ length: rows }, (_, r) => r).sort((a, b) => (next[a] as number) - (next[b] as number) || a - b);
  for (const r of order.slice(0, extra)) {
    // The row's lowest kept entry, lower index on ties: what pruneLowest would take next.
    let best = -1;
    for (let j = 0; j < cols; j++) {
      if (keep[r * cols + j] === 0) continue;
      if (best < 0 || (scores[r * cols + j] as number) < (scores[r * cols + best] as number)) best = j;
    }
    keep[r * cols + best] = 0;
  }
  return keep;
}

function checkCount(zeros: number, n: number): void {
  if (!(Number.isInteger(zeros) && zeros >= 0 && zeros <= n)) throw new Error(`a layer of ${n} weights cannot have ${zeros} of them pruned: expected an integer in [0, ${n}]`);
}

/** In one group of m entries from `base`, prunes the `count` lowest (repeated argmin: m is small). */
export function pruneGroup(keep: Uint8Array, scores: ArrayLike<number>, base: number, m: number, count: number): void {
  for (let c = 0; c < count; c++) {
    let best = -1;
    for (let j = 0; j < m; j++) {
      if (keep[base + j] === 0) continue;
      if (best < 0 || (scores[base + j] as number) < (scores[base + best] as number)) best = j;
    }
    keep[base + best] = 0;
  }
}

/** Checks that an n:m pattern tiles the rows of a layer with `cols` inputs. */
export function checkGroups(p: SparsityPattern, cols: number, what: string): void {
  if (p.kind === 'n:m' && cols % p.m !== 0) throw new Error(`${what} has ${cols} inputs, which ${p.n}:${p.m} sparsity cannot tile: the input count must be a multiple of ${p.m}`);
}

/** In every group of m consecutive inputs of every row, prunes the m − n lowest. */
export function selectNM(scores: ArrayLike<number>, rows: number, cols: number, n: number, m: number): Uint8Array {
  checkGroups({ kind: 'n:m', n, m }, cols, 'a layer');
  const keep = new Uint8Array(rows * cols).fill(1);
  for (let i = 0; i < rows * cols; i += m) pruneGroup(keep, scores, i, m, m - n);
  return keep;
}

/** Entries that are exactly zero (−0 included). */
export function countZeros(data: ArrayLike<number>): number {
  let z = 0;
  for (let i = 0; i < data.length; i++) if (data[i] === 0) z++;
  return z;
}
