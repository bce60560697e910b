// Gradient rules for MatMul (with numpy's 1-D promotion and batch broadcasting) and Gemm.
import { type Value } from '../../onnx/graph.js';
import { gemm, matmul } from '../../onnx/ops/matmul.js';
import { mul } from '../../onnx/ops/elementwise.js';
import { flatten, reshapeLike, transpose, unsqueeze } from '../../onnx/ops/layout.js';
import { attrFloat, attrInt, type GradRule, input, unbroadcast } from '../context.js';

function swapLast2(x: Value): Value {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 2] = x.rank - 1;
  perm[x.rank - 1] = x.rank - 2;
  return transpose(x, perm);
}

export const linearRules: Record<string, GradRule> = {
  MatMul: (ctx) => {
    const [a, b] = [input(ctx, 0), input(ctx, 1)];
    // Promote 1-D operands to matrices as MatMul does, so one batched formula covers all cases.
    const a2 = a.rank === 1 ? unsqueeze(a, [0]) : a;
    const b2 = b.rank === 1 ? unsqueeze(b, [1]) : b;
    let g = ctx.grad;
    if (b.rank === 1) g = unsqueeze(g, [g.rank]);
    if (a.rank === 1) g = unsqueeze(g, [g.rank - 1]);
    let da: Value | null = null;
    let db: Value | null = null;
    if (ctx.needs[0]) {
      da = unbroadcast(matmul(g, swapLast2(b2)), a2);
      if (a.rank === 1) da = reshapeLike(da, a);
    }
    if (ctx.needs[1]) {
      if (b.rank === 2 && a.rank >= 3) {
        // A matrix shared by every leading index (x·Wᵀ over [B, T, K] activations, LoRA factors
        // of symbolic rank too): one product over the flattened rows, [K, B·T]·[B·T, N], where
        // the batched formula would run B thin products of T rows each and ReduceSum B partial
        // [K, N] results (measured: most of a training step's backward time at B=8, T=128).
        db = gemm(flatten(a, a.rank - 1), flatten(g, g.rank - 1), undefined, { transA: true });
      } else {
        db = unbroadcast(matmul(swapLast2(a2), g), b2);
        if (b.rank === 1) db = reshapeLike(db, b);
      }
    }
    return [da, db];
  },
  Gemm: (ctx) => {
    const [a, b, c] = [input(ctx, 0), input(ctx, 1), ctx.node.inputs[2]];
    const alpha = attrFloat(ctx.node, 'alpha', 1);
    const beta = attrFloat(ctx.node, 'beta', 1);
    const transA = attrInt(ctx.node, 'transA', 0) === 1;
    const transB = attrInt(ctx.node, 'transB', 0) === 1;
    const g = ctx.grad;
    // Y = alpha·op(A)·op(B) + beta·C; each gradient is one more Gemm with the transposes folded in.
    const da = !ctx.needs[0] ? null : transA ? gemm(b, g, undefined, { transA: transB, transB: true, alpha }) : gemm(g, b, undefined, { transB: !transB, alpha });
    const db = !ctx.needs[1] ? null : transB ? gemm(g, a, undefined, { transA: true, transB: transA, alpha }) : gemm(a, g, undefined, { transA: !transA, alpha });
    const dc = c && ctx.needs[2] ? unbroadcast(beta === 1 ? g : mul(g, beta), c) : null;
    return c ? [da, db, dc] : [da, db];
  },
};
