// Parameter counts and the paper's "parameter saved ratio" (Table 3, "Para. Saved"): per module
// the original adapters hold Σ_i r0_i(m+k); JD holds C·r(m+k) shared plus r² (Full) or r (Diag)
// per adapter; the per-LoRA SVD holds r(m+k) + r per adapter.
import { type JdMethod } from './types.js';

export interface ModuleShape {
  m: number;
  k: number;
  /** Compressed rank of this module. */
  rank: number;
  /** Original rank of every adapter in this module. */
  ranks: readonly number[];
}

export interface ParameterCount {
  original: number;
  compressed: number;
  /** Held once per cluster: the bases. */
  shared: number;
  /** Held per adapter: the Σ_i (or, for SVD, everything). */
  perAdapter: number;
  /** 1 − compressed/original: the paper's total parameter saved ratio. */
  savedRatio: number;
  /** 1 − perAdapter/original: the first number of the paper's "Para. Saved" column. */
  perAdapterSavedRatio: number;
}

export function countParameters(method: JdMethod, clusters: number, modules: readonly ModuleShape[]): ParameterCount {
  let original = 0;
  let shared = 0;
  let perAdapter = 0;
  for (const { m, k, rank, ranks } of modules) {
    const n = ranks.length;
    original += ranks.reduce((s, r0) => s + r0 * (m + k), 0);
    if (method === 'svd') perAdapter += n * (rank * (m + k) + rank);
    else {
      shared += clusters * rank * (m + k);
      perAdapter += n * (method === 'jd-full' ? rank * rank : rank);
    }
  }
  const compressed = shared + perAdapter;
  const ratio = (x: number): number => (original > 0 ? 1 - x / original : 0);
  return { original, compressed, shared, perAdapter, savedRatio: ratio(compressed), perAdapterSavedRatio: ratio(perAdapter) };
}
