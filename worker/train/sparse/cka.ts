// Layer importance by representation mutual information (LoSA, ALGORITHMS.md §2), estimated with
// linear CKA (Kornblith et al., 2019) between the hidden states entering each block:
//   F_l  the input of block l on the calibration set, one row per sequence: n × (T·d)
//   K̃_l = H F_l F_lᵀ H, H = I − 11ᵀ/n
//   CKA(i, j) = ⟨K̃_i, K̃_j⟩_F / (‖K̃_i‖_F ‖K̃_j‖_F)
//   m_i = Σ_{j≠i} CKA(i, j),  imp_i = exp(−m_i / Σ_k m_k)
// A block whose input resembles every other block's carries little of its own: it is redundant,
// so less important, and may be pruned harder.
//
// The n × (T·d) by (T·d) × n product is the heavy part and runs as a graph; it centres the
// features first, since H F Fᵀ H = (H F)(H F)ᵀ, and a Gram of centred features keeps the digits
// that centring an uncentred float32 Gram would cancel away (hidden states share a large common
// component). The n × n inner products run on the host in float64.
import * as nn from '../../onnx/index.js';
import { type Session, type SessionCache } from '../../onnx/session.js';

/** Centred Gram matrices H F Fᵀ H of feature rows, computed by one cached session. */
export class CenteredGram {
  private session: Promise<Session> | undefined;

  constructor(private readonly cache: SessionCache) {}

  /** `features` holds n rows of `width` values (a [n, T, d] hidden state is n rows of T·d). Returns n × n, float64. */
  async of(features: Float32Array, n: number): Promise<Float64Array> {
    if (!(Number.isInteger(n) && n >= 1) || features.length % n !== 0) throw new Error(`CKA features: ${features.length} values do not make ${n} equal rows`);
    this.session ??= this.cache.forGraph(gramGraph());
    const out = await (await this.session).run({ features: nn.tensor('float32', [n, features.length / n], features) }, ['gram']);
    return Float64Array.from(out.gram?.data as Float32Array);
  }
}

function gramGraph(): nn.Graph {
  const g = new nn.Graph('cka_centered_gram');
  const f = g.input('features', 'float32', ['N', 'K']);
  const centred = nn.sub(f, nn.reduceMean(f, [0], { keepdims: true }));
  g.output(nn.matmul(centred, nn.transpose(centred, [1, 0])), 'gram');
  return g;
}

/** H K H for a symmetric n × n Gram K, on the host: subtract row and column means, add back the grand mean. */
export function centerGram(gram: ArrayLike<number>, n: number): Float64Array {
  if (gram.length !== n * n) throw new Error(`centerGram: ${gram.length} values are not ${n}×${n}`);
  const rowMean = new Float64Array(n);
  let grand = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += gram[i * n + j] as number;
    rowMean[i] = s / n;
    grand += s;
  }
  grand /= n * n;
  const out = new Float64Array(n * n);
  // K symmetric: column means equal row means.
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] = (gram[i * n + j] as number) - (rowMean[i] as number) - (rowMean[j] as number) + grand;
  return out;
}

/**
 * Linear CKA of two representations from their centred Grams. A representation with no spread
 * across the samples (a zero centred Gram) shares nothing measurable with any other: 0.
 */
export function cka(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`cka: Grams of ${a.length} and ${b.length} values`);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/** The L × L CKA matrix of L centred Grams (row-major, symmetric by construction, ones on the diagonal). */
export function ckaMatrix(grams: readonly ArrayLike<number>[]): Float64Array {
  const l = grams.length;
  const out = new Float64Array(l * l);
  for (let i = 0; i < l; i++) {
    out[i * l + i] = cka(grams[i] as ArrayLike<number>, grams[i] as ArrayLike<number>);
    for (let j = i + 1; j < l; j++) {
      const v = cka(grams[i] as ArrayLike<number>, grams[j] as ArrayLike<number>);
      out[i * l + j] = v;
      out[j * l + i] = v;
    }
  }
  return out;
}

export interface LayerImportance {
  /** m_i = Σ_{j≠i} CKA(i, j): how much block i's input shares with the others. */
  redundancy: number[];
  /** imp_i = exp(−m_i / Σ_k m_k), in (0, 1]. */
  importance: number[];
}

/**
 * LoSA's layer importance from an L × L CKA matrix. When nothing is shared at all (Σ m = 0, e.g.
 * a single block) every block is equally important.
 */
export function rmiImportance(matrix: ArrayLike<number>, layers: number): LayerImportance {
  if (matrix.length !== layers * layers) throw new Error(`rmiImportance: a CKA matrix of ${matrix.length} values is not ${layers}×${layers}`);
  const redundancy = Array.from({ length: layers }, (_, i) => {
    let m = 0;
    for (let j = 0; j < layers; j++) if (j !== i) m += matrix[i * layers + j] as number;
    return m;
  });
  const total = redundancy.reduce((s, m) => s + m, 0);
  return { redundancy, importance: redundancy.map((m) => (total > 0 ? Math.exp(-m / total) : 1)) };
}
