// The graphs of JD-Diag's alternating least squares (ALGORITHMS.md §6), three runs an iteration:
//   side(F): U = Fᵀ·(blocks(G·V) ∘ σ)·K_U and F·U;
//   side(G): V = Gᵀ·(blocks(F·U) ∘ σ)·K_V, G·V and d_i = diag(Uᵀ M_i V);
//   sigma:   σ_i = G⁻¹d_i and Σ_i σ_iσ_iᵀ in float64.
// Each side's product with its own data (F·U, G·V) is the input of the next update, so an
// iteration costs 4 products of N×d×r, where updating from the bases alone would cost 6. The
// K matrices (r×r inverses) come from the host between runs; everything n×r×r is in the graphs.
import * as nn from '../onnx/index.js';
import { type Basis, basisIn64, data, data64, f32, gram64, JdKernels, type Stack } from './kernels.js';

export class DiagSteps {
  private readonly n: number;
  private readonly r0: number;
  /** F·U (N×r) of the latest U update. */
  readonly fu: Float32Array;
  /** G·V (N×r) of the latest V update (or the start). */
  readonly gv: Float32Array;

  private constructor(
    private readonly kernels: JdKernels,
    private readonly stack: Stack,
    private readonly r: number,
    private readonly t: { fT: Float32Array; gT: Float32Array },
  ) {
    this.n = stack.n;
    this.r0 = stack.r0;
    this.fu = new Float32Array(stack.n * stack.r0 * r);
    this.gv = new Float32Array(stack.n * stack.r0 * r);
  }

  static async create(kernels: JdKernels, s: Stack, r: number): Promise<DiagSteps> {
    return new DiagSteps(kernels, s, r, kernels.transposes(s));
  }

  /** U and V as plain matrices, their Grams and d_i for the start; fills F·U and G·V. */
  async start(u: Basis, v: Basis): Promise<{ u: Float32Array; v: Float32Array; gu: Float64Array; gv: Float64Array; d: Float32Array }> {
    const { n, r0, r } = this;
    const { m, k } = this.stack;
    const { session, out } = await this.kernels.graph(`diag-start:${n},${r0},${m},${k},${r}`, (g) => {
      const U = basisIn64(g, 'u', m, r);
      const V = basisIn64(g, 'v', k, r);
      const FU = nn.matmul(g.input('f', 'float32', [n, r0, m]), U);
      const GV = nn.matmul(g.input('g', 'float32', [n, r0, k]), V);
      return { u: U, v: V, gu: gram64(U), gv: gram64(V), d: nn.reduceSum(nn.mul(FU, GV), [1]), fu: FU, gvOut: GV };
    }, n * r0 * (m + k) * r);
    const res = await session.run(
      { f: f32([n, r0, m], this.stack.f), g: f32([n, r0, k], this.stack.g), ...JdKernels.basisFeeds64('u', u, m, r), ...JdKernels.basisFeeds64('v', v, k, r) },
      undefined,
      { [out.fu]: f32([n, r0, r], this.fu), [out.gvOut]: f32([n, r0, r], this.gv) },
    );
    return { u: data(res[out.u]), v: data(res[out.v]), gu: data64(res[out.gu]), gv: data64(res[out.gv]), d: data(res[out.d]) };
  }

  /** U = Fᵀ(blocks(G·V) ∘ σ)·kinv (G·V from the last V update), its Gram, and F·U. */
  async updateU(sigma: Float32Array, kinv: Float64Array): Promise<{ u: Float32Array; gram: Float64Array }> {
    const res = await this.side('u', sigma, kinv);
    return { u: res.x, gram: res.gram };
  }

  /** V = Gᵀ(blocks(F·U) ∘ σ)·kinv, its Gram, G·V and d_i = colsum(F_iU ∘ G_iV). */
  async updateV(sigma: Float32Array, kinv: Float64Array): Promise<{ v: Float32Array; gram: Float64Array; d: Float32Array }> {
    const res = await this.side('v', sigma, kinv);
    return { v: res.x, gram: res.gram, d: res.d as Float32Array };
  }

  /** The Grams come out in float64: they scale into the ones diagErrors orthonormalizes with. */
  private async side(which: 'u' | 'v', sigma: Float32Array, kinv: Float64Array): Promise<{ x: Float32Array; gram: Float64Array; d?: Float32Array }> {
    const { n, r0, r } = this;
    const N = n * r0;
    const p = which === 'u' ? this.stack.m : this.stack.k;
    const { session, out } = await this.kernels.graph(`diag-side:${n},${r0},${p},${r},${which === 'v' ? 'd' : ''}`, (g) => {
      const O = g.input('other', 'float32', [n, r0, r]);
      const scaled = nn.reshape(nn.mul(O, nn.unsqueeze(g.input('sigma', 'float32', [n, r]), [1])), [N, r]);
      const X = nn.matmul(nn.matmul(g.input('xT', 'float32', [p, N]), scaled), g.input('kinv', 'float32', [r, r]));
      const XO = nn.matmul(g.input('x', 'float32', [n, r0, p]), X);
      return { x: X, gram: gram64(X), prod: XO, ...(which === 'v' ? { d: nn.reduceSum(nn.mul(O, XO), [1]) } : {}) } as Record<'x' | 'gram' | 'prod' | 'd', nn.Value>;
    }, 2 * N * p * r);
    const [x, xT, other, prod] = which === 'u' ? [this.stack.f, this.t.fT, this.gv, this.fu] : [this.stack.g, this.t.gT, this.fu, this.gv];
    const res = await session.run(
      { x: f32([n, r0, p], x), xT: f32([p, N], xT), other: f32([n, r0, r], other), sigma: f32([n, r], sigma), kinv: f32([r, r], Float32Array.from(kinv)) },
      undefined,
      { [out.prod]: f32([n, r0, r], prod) },
    );
    return { x: data(res[out.x]), gram: data64(res[out.gram]), ...(which === 'v' ? { d: data(res[out.d]) } : {}) };
  }

  /** σ_i = ginv·d_i for every adapter and S = Σ_i σ_iσ_iᵀ, in float64 (G is often ill-conditioned). */
  async sigma(d: Float32Array, ginv: Float64Array): Promise<{ sigma: Float64Array; sigma32: Float32Array; S: Float64Array }> {
    const { n, r } = this;
    const { session, out } = await this.kernels.graph(`diag-sigma:${n},${r}`, (g) => {
      const s = nn.matmul(nn.cast(g.input('d', 'float32', [n, r]), 'float64'), g.input('ginv', 'float64', [r, r]));
      return { sigma: s, sigma32: nn.cast(s, 'float32'), S: nn.gemm(s, s, undefined, { transA: true }) };
    }, n * r * r);
    const res = await session.run({ d: f32([n, r], d), ginv: nn.tensor('float64', [r, r], ginv) });
    return { sigma: data64(res[out.sigma]), sigma32: data(res[out.sigma32]), S: data64(res[out.S]) };
  }
}
