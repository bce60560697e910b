// Gradient rules for reductions and the softmax family.
import { type Value } from '../../onnx/graph.js';
import { cast, div, equal, exp, mul, sub } from '../../onnx/ops/elementwise.js';
import { expandLike, sizeOf, unsqueeze } from '../../onnx/ops/layout.js';
import { reduceSum } from '../../onnx/ops/reduce.js';
import { normAxis } from '../../onnx/shape.js';
import { attrInt, type GradContext, type GradRule, input, output, reduceAxes } from '../context.js';

/** The gradient (or output) of a reduction with its reduced axes restored as size 1. */
function keepDims(ctx: GradContext, v: Value, axes: readonly number[]): Value {
  const kept = attrInt(ctx.node, 'keepdims', 1) === 1;
  return kept || axes.length === 0 ? v : unsqueeze(v, [...axes].sort((a, b) => a - b));
}

/** Elements per reduced group: a constant when the reduced axes are static, else Size(x)/Size(y). */
function reducedCount(ctx: GradContext, axes: readonly number[]): Value | number {
  const x = input(ctx, 0);
  const dims = axes.map((a) => x.shape[a]);
  if (dims.every((d) => typeof d === 'number')) return (dims as number[]).reduce((n, d) => n * d, 1);
  return div(cast(sizeOf(x), x.dtype), cast(sizeOf(output(ctx)), x.dtype));
}

function softmaxAxis(ctx: GradContext): number {
  const x = input(ctx, 0);
  return normAxis(attrInt(ctx.node, 'axis', -1), x.rank, `${ctx.node.opType} node ${ctx.node.name}`);
}

export const reduceRules: Record<string, GradRule> = {
  ReduceSum: (ctx) => {
    const axes = reduceAxes(ctx);
    return [expandLike(keepDims(ctx, ctx.grad, axes), input(ctx, 0)), null];
  },
  ReduceMean: (ctx) => {
    const axes = reduceAxes(ctx);
    const g = div(keepDims(ctx, ctx.grad, axes), reducedCount(ctx, axes));
    return [expandLike(g, input(ctx, 0)), null];
  },
  // The gradient is shared equally among tied maxima, like PyTorch's amax.
  ReduceMax: (ctx) => {
    const x = input(ctx, 0);
    const axes = reduceAxes(ctx);
    const mask = cast(equal(x, keepDims(ctx, output(ctx), axes)), x.dtype);
    const count = reduceSum(mask, axes, { keepdims: true });
    return [mul(mask, div(keepDims(ctx, ctx.grad, axes), count)), null];
  },
  Softmax: (ctx) => {
    const y = output(ctx);
    const dot = reduceSum(mul(ctx.grad, y), [softmaxAxis(ctx)], { keepdims: true });
    return [mul(y, sub(ctx.grad, dot))];
  },
  LogSoftmax: (ctx) => {
    const y = output(ctx);
    const total = reduceSum(ctx.grad, [softmaxAxis(ctx)], { keepdims: true });
    return [sub(ctx.grad, mul(exp(y), total))];
  },
};
