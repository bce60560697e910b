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
import { type Basis, basisIn, basisIn64, data, data64, f32, gram64, JdKernels, type Stack, tr } from './kernels.js';

/**
 * One side's view of a slot: `x` (N×p, and its transpose) is updated against `y` (N×q). The
 * buffers take this side's step outputs, so an iteration allocates nothing of size d×r: Z
 * alternates between two (a step reads the last Z while writing the next), and the other side's
 * basis is materialized into `otherOut`.
 */
export interface Side {
  x: Float32Array;
  xT: Float32Array;
  y: Float32Array;
  p: number;
  q: number;
  z: [Float32Array, Float32Array];
  otherOut: Float32Array;
}

export interface StepOut {
  /** Z (p×r) before any normalization, and ZᵀZ (in float64 when asked: see basisIn64). */
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
    const { fT, gT } = kernels.transposes(s);
    const buffers = (p: number, q: number): Pick<Side, 'z' | 'otherOut'> => ({ z: [new Float32Array(p * r), new Float32Array(p * r)], otherOut: new Float32Array(q * r) });
    return new FullSteps(kernels, s, r, { x: s.f, xT: fT, y: s.g, p: s.m, q: s.k, ...buffers(s.m, s.k) }, { x: s.g, xT: gT, y: s.f, p: s.k, q: s.m, ...buffers(s.k, s.m) });
  }

  /**
   * The half-step's first subspace step from `cur` (p×r orthonormal, plain or as q·R). `xCur` is
   * X·cur when the previous half-step computed it (else it is computed here); Y·O is written into
   * `yOther`. Also returns O materialized and the captured energy Σ_i‖Oᵀ M_iᵀ cur‖². Z goes to
   * side.z[0] and O to side.otherOut.
   */
  async first(side: Side, cur: Float32Array | Basis, xCur: Float32Array | undefined, other: Basis, mu: number, yOther: Float32Array, exactGram: boolean): Promise<StepOut & { energy: number; other: Float32Array }> {
    const { n, r0, r } = this;
    const N = n * r0;
    const { p, q } = side;
    const reuse = xCur !== undefined;
    const lazy = !(cur instanceof Float32Array);
    // X, Y and the N×r products go in as [n, R0, ·] views of the same buffers: the per-adapter
    // blocks need no Reshape nodes.
    const { session, out } = await this.kernels.graph(`full-first:${n},${r0},${p},${q},${r},${reuse ? 'w' : 'xz'},${lazy ? 'lazy' : 'plain'},${exactGram ? 64 : 32}`, (g) => {
      const z = lazy ? basisIn64(g, 'cur', p, r) : g.input('cur', 'float32', [p, r]);
      const O = basisIn64(g, 'o', q, r);
      const P = nn.matmul(g.input('y', 'float32', [n, r0, q]), O);
      const H = nn.matmul(P, tr(P));
      const W = reuse ? g.input('w', 'float32', [n, r0, r]) : nn.matmul(g.input('x', 'float32', [n, r0, p]), z);
      const HW = nn.matmul(H, W);
      const Z = nn.add(nn.matmul(g.input('xT', 'float32', [p, N]), nn.reshape(HW, [N, r])), nn.mul(z, g.input('mu', 'float32', [1])));
      // Σ_i ‖P_iᵀW_i‖² = Σ_i ⟨H_iW_i, W_i⟩
      return { z: Z, gram: exactGram ? gram64(Z) : nn.gemm(Z, Z, undefined, { transA: true }), energy: nn.reduceSum(nn.mul(HW, W)), p: P, h: H, o: O };
    }, N * r * (q + p + (reuse ? 0 : p)));
    const feeds: Record<string, nn.Tensor> = {
      xT: f32([p, N], side.xT),
      y: f32([n, r0, q], side.y),
      ...(lazy ? JdKernels.basisFeeds64('cur', cur, p, r) : { cur: f32([p, r], cur) }),
      ...JdKernels.basisFeeds64('o', other, q, r),
      mu: f32([1], Float32Array.of(mu)),
    };
    if (xCur) feeds.w = f32([n, r0, r], xCur);
    else feeds.x = f32([n, r0, p], side.x);
    const into = { [out.p]: f32([n, r0, r], yOther), [out.h]: f32([n, r0, r0], this.h), [out.z]: f32([p, r], side.z[0]), [out.o]: f32([q, r], side.otherOut) };
    const res = await session.run(feeds, undefined, into);
    return { z: side.z[0], gram: gramOf(res[out.gram]), energy: Number(data(res[out.energy])[0]), other: side.otherOut };
  }

  /** Subspace step `step` ≥ 1 from z (with the H_i of the last first()); Z goes to side.z[step % 2]. */
  async next(side: Side, step: number, z: Basis, mu: number, exactGram: boolean): Promise<StepOut> {
    const { n, r0, r } = this;
    const N = n * r0;
    const { p } = side;
    const { session, out } = await this.kernels.graph(`full-next:${n},${r0},${p},${r},${exactGram ? 64 : 32}`, (g) => {
      const zm = basisIn(g, 'zin', p, r);
      const HW = nn.matmul(g.input('h', 'float32', [n, r0, r0]), nn.matmul(g.input('x', 'float32', [n, r0, p]), zm));
      const Z = nn.add(nn.matmul(g.input('xT', 'float32', [p, N]), nn.reshape(HW, [N, r])), nn.mul(zm, g.input('mu', 'float32', [1])));
      return { z: Z, gram: exactGram ? gram64(Z) : nn.gemm(Z, Z, undefined, { transA: true }) };
    }, 2 * N * p * r);
    const zOut = side.z[step % 2] as Float32Array;
    const res = await session.run({ x: f32([n, r0, p], side.x), xT: f32([p, N], side.xT), h: f32([n, r0, r0], this.h), ...JdKernels.basisFeeds('zin', z, p, r), mu: f32([1], Float32Array.of(mu)) }, undefined, { [out.z]: f32([p, r], zOut) });
    return { z: zOut, gram: gramOf(res[out.gram]) };
  }
}

function gramOf(t: nn.Tensor | undefined): Float64Array {
  return t?.dtype === 'float64' ? data64(t) : Float64Array.from(data(t));
}
