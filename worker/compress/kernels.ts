// The JD compute kernels as ONNX graphs, one per (kind, shape) and cached. Every product of
// size d×r or larger lives here or in the iterations' fused graphs (full-steps.ts,
// diag-steps.ts); the host only does r×r algebra (small.ts).
//
// A module slot holds n adapters stacked as F = [B̃_1ᵀ; …; B̃_nᵀ] (N×m) and G = [Ã_1; …; Ã_n]
// (N×k), N = n·R0 with each adapter padded to R0 rows by zeros, so M_i = F_iᵀ G_i and no
// m×k product is ever formed. A basis is passed lazily as (q, R): the matrix q·R, which
// lets the host apply an r×r correction (a Cholesky-QR factor, a rescale) without a run.
import * as nn from '../onnx/index.js';
import { type Session, SessionCache } from '../onnx/session.js';

/** The basis q·R with q p×r (float32) and R r×r (float64 on the host). */
export interface Basis {
  q: Float32Array;
  R: Float64Array;
}

/** The stacked factors of one module slot (see the file comment). */
export interface Stack {
  n: number;
  r0: number;
  /** N×m: rows of adapter i are B̃_iᵀ. */
  f: Float32Array;
  /** N×k: rows of adapter i are Ã_i. */
  g: Float32Array;
  m: number;
  k: number;
}

type G = nn.Graph;
type V = nn.Value;

export const f32 = (dims: readonly number[], data: Float32Array): nn.Tensor => nn.tensor('float32', dims, data);

export function basisIn(g: G, name: string, p: number, r: number): V {
  return nn.matmul(g.input(name, 'float32', [p, r]), g.input(`${name}R`, 'float32', [r, r]));
}

/**
 * q·R with the product in float64 (R fed as float64): where R is a Cholesky-QR factor from a
 * float64 Gram, the result is orthonormal to float32 rounding in one pass, which in float32
 * takes a second pass and a graph run.
 */
export function basisIn64(g: G, name: string, p: number, r: number): V {
  return nn.cast(nn.matmul(nn.cast(g.input(name, 'float32', [p, r]), 'float64'), g.input(`${name}R`, 'float64', [r, r])), 'float32');
}

/** XᵀX of a float32 matrix, in float64. */
export const gram64 = (x: V): V => {
  const d = nn.cast(x, 'float64');
  return nn.gemm(d, d, undefined, { transA: true });
};

/** Per-adapter blocks: [N, c] → [n, R0, c]. */
export const blocks = (x: V, n: number, r0: number, c: number): V => nn.reshape(x, [n, r0, c]);
export const tr = (x: V): V => nn.transpose(x, [0, 2, 1]);
/** Σ over the last two axes of a⊙b: ⟨a_i, b_i⟩ per adapter. */
const inner = (a: V, b: V): V => nn.reduceSum(nn.mul(a, b), [1, 2]);

/**
 * Multiply-adds per run below which a graph runs on one thread. Measured on 2 cores (bench jd,
 * d = 512): a second intra-op thread pays for its wake-ups from about 2·10⁷ multiply-adds per run
 * (n = 100 adapters of rank 16 at r = 16: 0.042 s vs 0.049 s for 10 JD-Full iterations); at
 * n = 10 one thread was up to 4× faster than two spinning ones.
 */
export const PARALLEL_MIN_WORK = 2e7;

export class JdKernels {
  private readonly sessions = new Map<string, Promise<Session>>();
  private readonly graphs = new Map<string, Promise<{ session: Session; out: Record<string, string> }>>();
  private readonly ownsCache: boolean;
  private readonly cache: SessionCache;
  /** Single-threaded sessions for small runs (see PARALLEL_MIN_WORK), made on first use. */
  private single: SessionCache | undefined;

  /**
   * Without a cache, sessions get ORT's thread count with sleeping rather than spinning waits: an
   * iteration alternates graph runs with host algebra, and threads spinning through the host part
   * took a core from it (up to 2× slower per iteration on 2 cores).
   */
  constructor(cache?: SessionCache) {
    this.ownsCache = cache === undefined;
    this.cache = cache ?? new SessionCache({ spinning: false });
  }

  async dispose(): Promise<void> {
    this.sessions.clear();
    this.graphs.clear();
    if (this.ownsCache) await this.cache.dispose();
    await this.single?.dispose();
    this.single = undefined;
  }

  private cacheFor(work: number | undefined): SessionCache {
    if (work === undefined || work >= PARALLEL_MIN_WORK) return this.cache;
    return (this.single ??= new SessionCache({ intraOpThreads: 1 }));
  }

  /** The session of the graph `build` makes, built once per key (the key must name every shape). */
  session(key: string, build: (g: G) => void): Promise<Session> {
    let s = this.sessions.get(key);
    if (!s) {
      const g = new nn.Graph(`jd-${key}`);
      build(g);
      s = this.cache.forGraph(g);
      this.sessions.set(key, s);
    }
    return s;
  }

  /**
   * Like session(), but `build` returns the outputs as values and gets back the names ORT knows
   * them by, instead of naming each through an Identity node: that is a copy and a few µs per
   * output per run, which adds up over the many small runs of an iteration.
   */
  graph<K extends string>(key: string, build: (g: G) => Record<K, V>, work?: number): Promise<{ session: Session; out: Record<K, string> }> {
    let s = this.graphs.get(key) as Promise<{ session: Session; out: Record<K, string> }> | undefined;
    if (!s) {
      const g = new nn.Graph(`jd-${key}`);
      const values = build(g);
      const out = {} as Record<K, string>;
      for (const [alias, v] of Object.entries(values) as Array<[K, V]>) out[alias] = g.output(v).name;
      // 'all' even with float64 parts (the cache's float64 default is 'basic', for QuickGelu):
      // these graphs have no x·σ(x), and 'basic' would lose the fused transposes of H = P·Pᵀ.
      s = this.cacheFor(work).forGraph(g, { optimization: 'all' }).then((session) => ({ session, out }));
      this.graphs.set(key, s);
    }
    return s;
  }

  static basisFeeds(name: string, b: Basis, p: number, r: number): Record<string, nn.Tensor> {
    return { [name]: f32([p, r], b.q), [`${name}R`]: f32([r, r], Float32Array.from(b.R)) };
  }

  /** Feeds for basisIn64. */
  static basisFeeds64(name: string, b: Basis, p: number, r: number): Record<string, nn.Tensor> {
    return { [name]: f32([p, r], b.q), [`${name}R`]: nn.tensor('float64', [r, r], b.R) };
  }

  /** ‖F_iᵀG_i‖²_F per adapter, through the R0×R0 Grams. */
  async normsSq(s: Stack): Promise<Float64Array> {
    const { n, r0, m, k } = s;
    const { session, out } = await this.graph(`norms:${n},${r0},${m},${k}`, (g) => {
      const f = g.input('f', 'float32', [n, r0, m]);
      const a = g.input('g', 'float32', [n, r0, k]);
      return { normsq: inner(nn.matmul(f, tr(f)), nn.matmul(a, tr(a))) };
    }, n * r0 * r0 * (m + k));
    const res = await session.run({ f: f32([n, r0, m], s.f), g: f32([n, r0, k], s.g) });
    return Float64Array.from(data(res[out.normsq]));
  }

  /**
   * Fᵀ (m×N) and Gᵀ (k×N), for the iterations' Xᵀ·(N×r) products: MLAS's Gemm with transA
   * transposes A's panels on every call, so MatMul on a transpose made once per compression ran
   * 1.2–2.7× faster at these shapes. They are the callers' to keep (per call, not per slot, so a
   * slot's stacks are not held twice while many slots wait). In TypeScript: ORT's Transpose took
   * 1.5–3 ns an element here, this loop about 1.
   */
  transposes(s: Stack): { fT: Float32Array; gT: Float32Array } {
    const N = s.n * s.r0;
    return { fT: transpose(s.f, N, s.m), gT: transpose(s.g, N, s.k) };
  }

  /** The eigen-iteration variant: both sides from the same (U, V) in one run (Appendix A.2). */
  async eigenStep(s: Stack, r: number, u: Basis, v: Basis, mu: number): Promise<{ zu: Float32Array; zv: Float32Array; gu: Float64Array; gv: Float64Array; energy: number }> {
    const { n, r0, m, k } = s;
    const session = await this.session(`eigen:${n},${r0},${m},${k},${r}`, (g) => {
      const F = g.input('f', 'float32', [n * r0, m]);
      const Gm = g.input('g', 'float32', [n * r0, k]);
      const U = basisIn(g, 'u', m, r);
      const Vb = basisIn(g, 'v', k, r);
      const muIn = g.input('mu', 'float32', [1]);
      const W = blocks(nn.matmul(F, U), n, r0, r);
      const P = blocks(nn.matmul(Gm, Vb), n, r0, r);
      const C = nn.matmul(tr(W), P); // Uᵀ M_i V
      const zu = nn.add(nn.gemm(F, nn.reshape(nn.matmul(P, tr(C)), [n * r0, r]), undefined, { transA: true }), nn.mul(U, muIn));
      const zv = nn.add(nn.gemm(Gm, nn.reshape(nn.matmul(W, C), [n * r0, r]), undefined, { transA: true }), nn.mul(Vb, muIn));
      g.output(zu, 'zu');
      g.output(zv, 'zv');
      g.output(nn.gemm(zu, zu, undefined, { transA: true }), 'gu');
      g.output(nn.gemm(zv, zv, undefined, { transA: true }), 'gv');
      g.output(nn.reduceSum(nn.mul(C, C)), 'energy');
    });
    const res = await session.run({ f: f32([n * r0, m], s.f), g: f32([n * r0, k], s.g), ...JdKernels.basisFeeds('u', u, m, r), ...JdKernels.basisFeeds('v', v, k, r), mu: f32([1], Float32Array.of(mu)) });
    return { zu: data(res.zu), zv: data(res.zv), gu: Float64Array.from(data(res.gu)), gv: Float64Array.from(data(res.gv)), energy: Number(data(res.energy)[0]) };
  }

  /**
   * Materializes Q = z·R and returns QᵀQ (for a second Cholesky-QR pass) and, given the previous
   * basis P (as q·R or a plain p×r matrix), ‖Q − P PᵀQ‖²_F, the subspace-change criterion (NaN
   * without P: two p×r×r products saved where nothing checks it).
   */
  async orth(z: Basis, prev: Basis | Float32Array | undefined, p: number, r: number): Promise<{ q: Float32Array; gram: Float64Array; change: number }> {
    const kind = prev === undefined ? 'none' : prev instanceof Float32Array ? 'plain' : 'lazy';
    const session = await this.session(`orth:${p},${r},${kind}`, (g) => {
      const Q = basisIn(g, 'z', p, r);
      g.output(Q, 'q');
      g.output(nn.gemm(Q, Q, undefined, { transA: true }), 'gram');
      if (kind === 'none') return;
      const P = kind === 'plain' ? g.input('p', 'float32', [p, r]) : basisIn(g, 'p', p, r);
      const D = nn.sub(Q, nn.matmul(P, nn.gemm(P, Q, undefined, { transA: true })));
      g.output(nn.reduceSum(nn.mul(D, D)), 'change');
    });
    const feeds = JdKernels.basisFeeds('z', z, p, r);
    if (prev instanceof Float32Array) feeds.p = f32([p, r], prev);
    else if (prev) Object.assign(feeds, JdKernels.basisFeeds('p', prev, p, r));
    const res = await session.run(feeds);
    return { q: data(res.q), gram: Float64Array.from(data(res.gram)), change: res.change ? Number(data(res.change)[0]) : Number.NaN };
  }

  /** XᵀX of a p×r matrix, in float64. */
  async gram64(x: Float32Array, p: number, r: number): Promise<Float64Array> {
    const { session, out } = await this.graph(`gram64:${p},${r}`, (g) => ({ gram: gram64(g.input('x', 'float32', [p, r])) }), p * r * r);
    return data64((await session.run({ x: f32([p, r], x) }))[out.gram]);
  }

  /** ‖Q − P PᵀQ‖²_F for Q = z·R applied in float64 (basisIn64) against the previous basis P (plain or q·R). */
  async orth64(z: Basis, prev: Basis | Float32Array, p: number, r: number): Promise<{ change: number }> {
    const plain = prev instanceof Float32Array;
    const { session, out } = await this.graph(`orth64:${p},${r},${plain ? 'plain' : 'lazy'}`, (g) => {
      const Q = basisIn64(g, 'z', p, r);
      const P = plain ? g.input('p', 'float32', [p, r]) : basisIn(g, 'p', p, r);
      const D = nn.sub(Q, nn.matmul(P, nn.gemm(P, Q, undefined, { transA: true })));
      return { change: nn.reduceSum(nn.mul(D, D)) };
    }, 4 * p * r * r);
    const res = await session.run({ ...JdKernels.basisFeeds64('z', z, p, r), ...(plain ? { p: f32([p, r], prev) } : JdKernels.basisFeeds('p', prev, p, r)) });
    return { change: Number(data(res[out.change])[0]) };
  }

  /** Cores C_i = Uᵀ M_i V (n×r×r), their energies ‖C_i‖² and diagonals (n×r), and the Grams UᵀU, VᵀV. */
  async project(s: Stack, r: number, u: Basis, v: Basis, fetch: ReadonlyArray<'core' | 'energy' | 'diag' | 'gu' | 'gv'>): Promise<{ core?: Float32Array; energy?: Float64Array; diag?: Float64Array; gu?: Float64Array; gv?: Float64Array }> {
    const { n, r0, m, k } = s;
    // Bases as errors() materializes them, and float64 Grams: diagErrors orthonormalizes with them.
    const { session, out } = await this.graph(`project:${n},${r0},${m},${k},${r}`, (g) => {
      const U = basisIn64(g, 'u', m, r);
      const Vb = basisIn64(g, 'v', k, r);
      const W = nn.matmul(g.input('f', 'float32', [n, r0, m]), U);
      const P = nn.matmul(g.input('g', 'float32', [n, r0, k]), Vb);
      const C = nn.matmul(tr(W), P);
      return { core: C, energy: nn.reduceSum(nn.mul(C, C), [1, 2]), diag: nn.reduceSum(nn.mul(W, P), [1]), gu: gram64(U), gv: gram64(Vb) };
    }, n * r0 * (m + k) * r);
    const res = await session.run({ f: f32([n, r0, m], s.f), g: f32([n, r0, k], s.g), ...JdKernels.basisFeeds64('u', u, m, r), ...JdKernels.basisFeeds64('v', v, k, r) }, fetch.map((name) => out[name]));
    const got = (name: 'core' | 'energy' | 'diag' | 'gu' | 'gv'): nn.Tensor | undefined => res[out[name]];
    return {
      ...(got('core') ? { core: data(got('core')) } : {}),
      ...(got('energy') ? { energy: Float64Array.from(data(got('energy'))) } : {}),
      ...(got('diag') ? { diag: Float64Array.from(data(got('diag'))) } : {}),
      ...(got('gu') ? { gu: data64(got('gu')) } : {}),
      ...(got('gv') ? { gv: data64(got('gv')) } : {}),
    };
  }

  /**
   * Squared reconstruction errors ‖M_i − Q_U S_i Q_Vᵀ‖²_F per adapter with orthonormal Q_U, Q_V,
   * as three non-negative parts so nothing cancels: ‖(I−Q_UQ_Uᵀ)M_i‖² + ‖Q_UᵀM_i(I−Q_VQ_Vᵀ)‖²
   * + ‖Q_UᵀM_iQ_V − S_i‖². With `sigma` absent S_i is the optimal core Q_UᵀM_iQ_V (returned);
   * otherwise S_i = Ru·diag(σ_i)·Rvᵀ, the diagonal model re-expressed in the orthonormal bases.
   */
  async errors(s: Stack, r: number, qu: Basis, qv: Basis, diag?: { sigma: Float32Array; ru: Float64Array; rv: Float64Array }): Promise<{ err2: Float64Array; core: Float32Array; u: Float32Array; v: Float32Array }> {
    const { n, r0, m, k } = s;
    // The bases are materialized in float64 (basisIn64), so that Cholesky-QR factors from float64
    // Grams give orthonormal Q_U, Q_V, which the three-part split below assumes.
    const { session, out } = await this.graph(`errors:${diag ? 'diag' : 'core'}:${n},${r0},${m},${k},${r}`, (g) => {
      const F = g.input('f', 'float32', [n * r0, m]);
      const Gm = g.input('g', 'float32', [n * r0, k]);
      const U = basisIn64(g, 'u', m, r);
      const Vb = basisIn64(g, 'v', k, r);
      const W2 = nn.matmul(F, U);
      const P2 = nn.matmul(Gm, Vb);
      const Fp = blocks(nn.sub(F, nn.gemm(W2, U, undefined, { transB: true })), n, r0, m);
      const Gp = blocks(nn.sub(Gm, nn.gemm(P2, Vb, undefined, { transB: true })), n, r0, k);
      const G3 = blocks(Gm, n, r0, k);
      const W = blocks(W2, n, r0, r);
      const P = blocks(P2, n, r0, r);
      const t1 = inner(nn.matmul(Fp, tr(Fp)), nn.matmul(G3, tr(G3)));
      const t2 = inner(nn.matmul(W, tr(W)), nn.matmul(Gp, tr(Gp)));
      const C = nn.matmul(tr(W), P);
      let total = nn.add(t1, t2);
      if (diag) {
        const S = nn.matmul(nn.mul(g.input('ru', 'float32', [r, r]), nn.unsqueeze(g.input('sigma', 'float32', [n, r]), [1])), nn.transpose(g.input('rv', 'float32', [r, r])));
        const D = nn.sub(C, S);
        total = nn.add(total, inner(D, D));
      }
      return { err2: total, core: C, u: U, v: Vb };
    }, 2 * n * r0 * (m + k) * r);
    const feeds: Record<string, nn.Tensor> = { f: f32([n * r0, m], s.f), g: f32([n * r0, k], s.g), ...JdKernels.basisFeeds64('u', qu, m, r), ...JdKernels.basisFeeds64('v', qv, k, r) };
    if (diag) {
      feeds.sigma = f32([n, r], diag.sigma);
      feeds.ru = f32([r, r], Float32Array.from(diag.ru));
      feeds.rv = f32([r, r], Float32Array.from(diag.rv));
    }
    const res = await session.run(feeds);
    const err2 = data(res[out.err2]);
    const clamped = new Float64Array(err2.length);
    for (let i = 0; i < err2.length; i++) clamped[i] = Math.max(err2[i] as number, 0);
    return { err2: clamped, core: data(res[out.core]), u: data(res[out.u]), v: data(res[out.v]) };
  }

  /**
   * Cores C_i = Uᵀ M̃_i V (n×r×r) and their energies ‖C_i‖² (summed in float64), from W = F·U as
   * the iterations left it and V, materialized here as errors() does.
   */
  async cores(s: Stack, r: number, w: Float32Array, v: Basis): Promise<{ core: Float32Array; energy: Float64Array; v: Float32Array }> {
    const { n, r0, k } = s;
    const { session, out } = await this.graph(`cores:${n},${r0},${k},${r}`, (g) => {
      const V = basisIn64(g, 'v', k, r);
      const C = nn.matmul(tr(g.input('w', 'float32', [n, r0, r])), nn.matmul(g.input('g', 'float32', [n, r0, k]), V));
      const C64 = nn.cast(C, 'float64');
      return { core: C, energy: nn.reduceSum(nn.mul(C64, C64), [1, 2]), v: V };
    }, n * r0 * k * r);
    const res = await session.run({ w: f32([n, r0, r], w), g: f32([n, r0, k], s.g), ...JdKernels.basisFeeds64('v', v, k, r) });
    return { core: data(res[out.core]), energy: data64(res[out.energy]), v: data(res[out.v]) };
  }

  /** Per-adapter products X_i·T_i for the SVD baseline: x [N, p] as blocks, t [n, R0, r] → [n, p, r]. */
  async blockProducts(x: Float32Array, n: number, r0: number, p: number, t: Float32Array, r: number): Promise<Float32Array> {
    const session = await this.session(`blockprod:${n},${r0},${p},${r}`, (g) => {
      const X = blocks(g.input('x', 'float32', [n * r0, p]), n, r0, p);
      g.output(nn.matmul(tr(X), g.input('t', 'float32', [n, r0, r])), 'y');
    });
    const res = await session.run({ x: f32([n * r0, p], x), t: f32([n, r0, r], t) });
    return data(res.y);
  }

  /** Per-adapter Grams F_iF_iᵀ and G_iG_iᵀ (n×R0×R0 each). */
  async grams(s: Stack): Promise<{ gf: Float32Array; gg: Float32Array }> {
    const { n, r0, m, k } = s;
    const session = await this.session(`grams:${n},${r0},${m},${k}`, (g) => {
      const F = blocks(g.input('f', 'float32', [n * r0, m]), n, r0, m);
      const Gm = blocks(g.input('g', 'float32', [n * r0, k]), n, r0, k);
      g.output(nn.matmul(F, tr(F)), 'gf');
      g.output(nn.matmul(Gm, tr(Gm)), 'gg');
    });
    const res = await session.run({ f: f32([n * r0, m], s.f), g: f32([n * r0, k], s.g) });
    return { gf: data(res.gf), gg: data(res.gg) };
  }
}

export function data64(t: nn.Tensor | undefined): Float64Array {
  if (!t || !(t.data instanceof Float64Array)) throw new Error(`JD kernel returned ${t ? t.dtype : 'nothing'}: expected a float64 tensor`);
  return t.data;
}

export function data(t: nn.Tensor | undefined): Float32Array {
  if (!t || !(t.data instanceof Float32Array)) throw new Error(`JD kernel returned ${t ? t.dtype : 'nothing'}: expected a float32 tensor`);
  return t.data;
}

/** xᵀ (cols×rows) of a row-major rows×cols matrix, eight source rows at a time so each write run is contiguous. */
function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const y = new Float32Array(rows * cols);
  let i = 0;
  for (; i + 8 <= rows; i += 8) {
    for (let j = 0; j < cols; j++) {
      const o = j * rows + i;
      const q = i * cols + j;
      y[o] = x[q] as number;
      y[o + 1] = x[q + cols] as number;
      y[o + 2] = x[q + 2 * cols] as number;
      y[o + 3] = x[q + 3 * cols] as number;
      y[o + 4] = x[q + 4 * cols] as number;
      y[o + 5] = x[q + 5 * cols] as number;
      y[o + 6] = x[q + 6 * cols] as number;
      y[o + 7] = x[q + 7 * cols] as number;
    }
  }
  for (; i < rows; i++) for (let j = 0; j < cols; j++) y[j * rows + i] = x[i * cols + j] as number;
  return y;
}
