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

/** Per-adapter blocks: [N, c] → [n, R0, c]. */
export const blocks = (x: V, n: number, r0: number, c: number): V => nn.reshape(x, [n, r0, c]);
export const tr = (x: V): V => nn.transpose(x, [0, 2, 1]);
/** Σ over the last two axes of a⊙b: ⟨a_i, b_i⟩ per adapter. */
const inner = (a: V, b: V): V => nn.reduceSum(nn.mul(a, b), [1, 2]);

export class JdKernels {
  private readonly sessions = new Map<string, Promise<Session>>();
  private readonly ownsCache: boolean;
  private readonly cache: SessionCache;

  constructor(cache?: SessionCache) {
    this.ownsCache = cache === undefined;
    this.cache = cache ?? new SessionCache();
  }

  async dispose(): Promise<void> {
    this.sessions.clear();
    if (this.ownsCache) await this.cache.dispose();
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

  static basisFeeds(name: string, b: Basis, p: number, r: number): Record<string, nn.Tensor> {
    return { [name]: f32([p, r], b.q), [`${name}R`]: f32([r, r], Float32Array.from(b.R)) };
  }

  /**
   * Stacks and normalizes one slot in one run (strided copies and scaling are slow in JS): from
   * b [n, m, R0] (each adapter's B, columns zero-padded to R0) and a [n, R0, k] (its A, rows
   * padded), writes F (rows c_i·B_iᵀ) and G (rows c_i·A_i) into `into` with c_i = ‖B_iA_i‖^(-1/2)
   * (0 for a zero update), so M̃_i = F_iᵀG_i has unit norm. Returns ‖B_iA_i‖² per adapter.
   */
  async pack(b: Float32Array, a: Float32Array, s: Omit<Stack, 'f' | 'g'>, into: { f: Float32Array; g: Float32Array }): Promise<Float32Array> {
    const { n, r0, m, k } = s;
    const session = await this.session(`pack:${n},${r0},${m},${k}`, (g) => {
      const B = g.input('b', 'float32', [n, m, r0]);
      const A = g.input('a', 'float32', [n, r0, k]);
      const normsq = inner(nn.matmul(tr(B), B), nn.matmul(A, tr(A)));
      const c = nn.reshape(nn.where(nn.greater(normsq, 0), nn.pow(normsq, -0.25), 0), [n, 1, 1]);
      g.output(normsq, 'normsq');
      g.output(nn.reshape(nn.mul(tr(B), c), [n * r0, m]), 'f');
      g.output(nn.reshape(nn.mul(A, c), [n * r0, k]), 'g');
    });
    const res = await session.run({ b: nn.tensor('float32', [n, m, r0], b), a: nn.tensor('float32', [n, r0, k], a) }, undefined, { f: f32([n * r0, m], into.f), g: f32([n * r0, k], into.g) });
    return data(res.normsq);
  }

  /**
   * Fᵀ (m×N) and Gᵀ (k×N), for the iterations' Xᵀ·(N×r) products: ORT's MatMul on a stored
   * transpose ran 1.2–2.4× faster than Gemm with transA at these shapes, which pays for the
   * transposes within one iteration. They are the callers' to keep (per call, not per slot, so a
   * slot's stacks are not held twice while many slots wait).
   */
  async transposes(s: Stack): Promise<{ fT: Float32Array; gT: Float32Array }> {
    const { n, r0, m, k } = s;
    const N = n * r0;
    const session = await this.session(`transposes:${N},${m},${k}`, (g) => {
      g.output(nn.transpose(g.input('f', 'float32', [N, m])), 'fT');
      g.output(nn.transpose(g.input('g', 'float32', [N, k])), 'gT');
    });
    const out = { fT: new Float32Array(m * N), gT: new Float32Array(k * N) };
    await session.run({ f: f32([N, m], s.f), g: f32([N, k], s.g) }, undefined, { fT: f32([m, N], out.fT), gT: f32([k, N], out.gT) });
    return out;
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

  /** Cores C_i = Uᵀ M_i V (n×r×r), their energies ‖C_i‖² and diagonals (n×r), and the Grams UᵀU, VᵀV. */
  async project(s: Stack, r: number, u: Basis, v: Basis, fetch: ReadonlyArray<'core' | 'energy' | 'diag' | 'gu' | 'gv'>): Promise<{ core?: Float32Array; energy?: Float64Array; diag?: Float64Array; gu?: Float64Array; gv?: Float64Array }> {
    const { n, r0, m, k } = s;
    const session = await this.session(`project:${n},${r0},${m},${k},${r}`, (g) => {
      const U = basisIn(g, 'u', m, r);
      const Vb = basisIn(g, 'v', k, r);
      const W = blocks(nn.matmul(g.input('f', 'float32', [n * r0, m]), U), n, r0, r);
      const P = blocks(nn.matmul(g.input('g', 'float32', [n * r0, k]), Vb), n, r0, r);
      const C = nn.matmul(tr(W), P);
      g.output(C, 'core');
      g.output(nn.reduceSum(nn.mul(C, C), [1, 2]), 'energy');
      g.output(nn.reduceSum(nn.mul(W, P), [1]), 'diag');
      g.output(nn.gemm(U, U, undefined, { transA: true }), 'gu');
      g.output(nn.gemm(Vb, Vb, undefined, { transA: true }), 'gv');
    });
    const res = await session.run({ f: f32([n * r0, m], s.f), g: f32([n * r0, k], s.g), ...JdKernels.basisFeeds('u', u, m, r), ...JdKernels.basisFeeds('v', v, k, r) }, fetch);
    return {
      ...(res.core ? { core: data(res.core) } : {}),
      ...(res.energy ? { energy: Float64Array.from(data(res.energy)) } : {}),
      ...(res.diag ? { diag: Float64Array.from(data(res.diag)) } : {}),
      ...(res.gu ? { gu: Float64Array.from(data(res.gu)) } : {}),
      ...(res.gv ? { gv: Float64Array.from(data(res.gv)) } : {}),
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
    const session = await this.session(`errors:${diag ? 'diag' : 'core'}:${n},${r0},${m},${k},${r}`, (g) => {
      const F = g.input('f', 'float32', [n * r0, m]);
      const Gm = g.input('g', 'float32', [n * r0, k]);
      const U = basisIn(g, 'u', m, r);
      const Vb = basisIn(g, 'v', k, r);
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
      g.output(total, 'err2');
      g.output(C, 'core');
      g.output(U, 'uOut');
      g.output(Vb, 'vOut');
    });
    const feeds: Record<string, nn.Tensor> = { f: f32([n * r0, m], s.f), g: f32([n * r0, k], s.g), ...JdKernels.basisFeeds('u', qu, m, r), ...JdKernels.basisFeeds('v', qv, k, r) };
    if (diag) {
      feeds.sigma = f32([n, r], diag.sigma);
      feeds.ru = f32([r, r], Float32Array.from(diag.ru));
      feeds.rv = f32([r, r], Float32Array.from(diag.rv));
    }
    const res = await session.run(feeds);
    return { err2: Float64Array.from(data(res.err2), (x) => Math.max(x, 0)), core: data(res.core), u: data(res.uOut), v: data(res.vOut) };
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

export function data(t: nn.Tensor | undefined): Float32Array {
  if (!t || !(t.data instanceof Float32Array)) throw new Error(`JD kernel returned ${t ? t.dtype : 'nothing'}: expected a float32 tensor`);
  return t.data;
}
