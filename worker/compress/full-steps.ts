// The graphs of one alternating JD-Full half-step (ALGORITHMS.md §6): `inner` subspace-step
// runs and one Cholesky-QR run, whatever n is.
//
// Updating side X (F for U, G for V) against the other side's factors Y and basis O, the
// shifted subspace step is Z = (Σ_i M_i O Oᵀ M_iᵀ + μI)·z = Xᵀ·blocks(H_i·W_i) + μz with
// W = X·z and H_i = P_iP_iᵀ, P = Y·O. What keeps the work down:
//  - H_i is r₀×r₀ and fixed for the whole half-step: grouping (P_iP_iᵀ)W_i instead of
//    P_i(P_iᵀW_i) never forms the n r×r cores (writing n·r² floats per step was slower than the
//    two big products at n = 500, r = 64).
//  - The first W = X·cur is the P the previous half-step computed (its Y·O, its O being the
//    basis this half-step starts from), and this half-step's P is the next one's first W, so an
//    iteration costs 8 products of N×d×r instead of 12.
//  - Bases travel lazily as q·R (R an r×r correction from the host) only until a run
//    materializes them; the materialized O is returned and is the next half-step's `cur`.
import * as nn from '../onnx/index.js';
import { type Basis, basisIn, blocks, data, f32, JdKernels, type Stack, tr } from './kernels.js';

/** One side's view of a slot: `x` (N×p, and its transpose) is updated against `y` (N×q). */
export interface Side {
  x: Float32Array;
  xT: Float32Array;
  y: Float32Array;
  p: number;
  q: number;
}

export interface StepOut {
  /** Z (p×r) before any normalization, and ZᵀZ. */
  z: Float32Array;
  gram: Float64Array;
}

/** Graph runs of the alternating half-steps of one slot at rank r, with buffers reused across runs. */
export class FullSteps {
  private readonly n: number;
  private readonly r0: number;
  /** H_i of the current half-step, written by first() and read by next(). */
  private readonly h: Float32Array;

  private constructor(
    private readonly kernels: JdKernels,
    stack: Stack,
    private readonly r: number,
    readonly u: Side,
    readonly v: Side,
  ) {
    this.n = stack.n;
    this.r0 = stack.r0;
    this.h = new Float32Array(stack.n * stack.r0 * stack.r0);
  }

  static async create(kernels: JdKernels, s: Stack, r: number): Promise<FullSteps> {
    const { fT, gT } = await kernels.transposes(s);
    return new FullSteps(kernels, s, r, { x: s.f, xT: fT, y: s.g, p: s.m, q: s.k }, { x: s.g, xT: gT, y: s.f, p: s.k, q: s.m });
  }

  /**
   * The half-step's first subspace step from `cur` (p×r, orthonormal). `xCur` is X·cur when the
   * previous half-step computed it (else it is computed here); Y·O is written into `yOther`.
   * Also returns O materialized and the captured energy Σ_i‖Oᵀ M_iᵀ cur‖².
   */
  async first(side: Side, cur: Float32Array, xCur: Float32Array | undefined, other: Basis, mu: number, yOther: Float32Array): Promise<StepOut & { energy: number; other: Float32Array }> {
    const { n, r0, r } = this;
    const N = n * r0;
    const { p, q } = side;
    const reuse = xCur !== undefined;
    const session = await this.kernels.session(`full-first:${n},${r0},${p},${q},${r},${reuse ? 'w' : 'xz'}`, (g) => {
      const X = g.input('x', 'float32', [N, p]);
      const z = g.input('cur', 'float32', [p, r]);
      const O = basisIn(g, 'o', q, r);
      const P = nn.matmul(g.input('y', 'float32', [N, q]), O);
      const Pb = blocks(P, n, r0, r);
      const H = nn.matmul(Pb, tr(Pb));
      const W = blocks(reuse ? g.input('w', 'float32', [N, r]) : nn.matmul(X, z), n, r0, r);
      const HW = nn.matmul(H, W);
      const Z = nn.add(nn.matmul(g.input('xT', 'float32', [p, N]), nn.reshape(HW, [N, r])), nn.mul(z, g.input('mu', 'float32', [1])));
      g.output(Z, 'z');
      g.output(nn.gemm(Z, Z, undefined, { transA: true }), 'gram');
      // Σ_i ‖P_iᵀW_i‖² = Σ_i ⟨H_iW_i, W_i⟩
      g.output(nn.reduceSum(nn.mul(HW, W)), 'energy');
      g.output(P, 'p');
      g.output(H, 'h');
      g.output(O, 'oOut');
    });
    const feeds: Record<string, nn.Tensor> = {
      x: f32([N, p], side.x),
      xT: f32([p, N], side.xT),
      y: f32([N, q], side.y),
      cur: f32([p, r], cur),
      ...JdKernels.basisFeeds('o', other, q, r),
      mu: f32([1], Float32Array.of(mu)),
    };
    if (xCur) feeds.w = f32([N, r], xCur);
    const res = await session.run(feeds, undefined, { p: f32([N, r], yOther), h: nn.tensor('float32', [n, r0, r0], this.h) });
    return { z: data(res.z), gram: Float64Array.from(data(res.gram)), energy: Number(data(res.energy)[0]), other: data(res.oOut) };
  }

  /** A further subspace step from z (with the H_i of the last first()). */
  async next(side: Side, z: Basis, mu: number): Promise<StepOut> {
    const { n, r0, r } = this;
    const N = n * r0;
    const { p } = side;
    const session = await this.kernels.session(`full-next:${n},${r0},${p},${r}`, (g) => {
      const zm = basisIn(g, 'zin', p, r);
      const HW = nn.matmul(g.input('h', 'float32', [n, r0, r0]), blocks(nn.matmul(g.input('x', 'float32', [N, p]), zm), n, r0, r));
      const Z = nn.add(nn.matmul(g.input('xT', 'float32', [p, N]), nn.reshape(HW, [N, r])), nn.mul(zm, g.input('mu', 'float32', [1])));
      g.output(Z, 'z');
      g.output(nn.gemm(Z, Z, undefined, { transA: true }), 'gram');
    });
    const res = await session.run({ x: f32([N, p], side.x), xT: f32([p, N], side.xT), h: nn.tensor('float32', [n, r0, r0], this.h), ...JdKernels.basisFeeds('zin', z, p, r), mu: f32([1], Float32Array.of(mu)) });
    return { z: data(res.z), gram: Float64Array.from(data(res.gram)) };
  }
}
