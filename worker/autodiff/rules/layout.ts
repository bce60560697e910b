// Gradient rules for data movement: the gradient goes back through the inverse movement.
import { GraphError, type Value } from '../../onnx/graph.js';
import { cast } from '../../onnx/ops/elementwise.js';
import { fullLike, scatterND } from '../../onnx/ops/indexing.js';
import { pad, reshapeLike, slice, sliceRange, transpose, unsqueeze } from '../../onnx/ops/layout.js';
import { normAxis, normAxes } from '../../onnx/shape.js';
import { attrInt, attrInts, constInts, type GradContext, type GradRule, input, unbroadcast } from '../context.js';

const where = (ctx: GradContext): string => `${ctx.node.opType} node ${ctx.node.name}`;

function staticDim(ctx: GradContext, x: Value, axis: number): number {
  const d = x.shape[axis];
  if (typeof d !== 'number') throw new GraphError(`${where(ctx)}: gradient needs axis ${axis} of ${x} to be static, got ${d}`);
  return d;
}

export const layoutRules: Record<string, GradRule> = {
  Reshape: (ctx) => [reshapeLike(ctx.grad, input(ctx, 0)), null],
  Unsqueeze: (ctx) => [reshapeLike(ctx.grad, input(ctx, 0)), null],
  Squeeze: (ctx) => [reshapeLike(ctx.grad, input(ctx, 0)), null],
  Flatten: (ctx) => [reshapeLike(ctx.grad, input(ctx, 0))],
  Expand: (ctx) => [unbroadcast(ctx.grad, input(ctx, 0)), null],
  Transpose: (ctx) => {
    const x = input(ctx, 0);
    const perm = attrInts(ctx.node, 'perm') ?? x.shape.map((_, i) => x.rank - 1 - i);
    const inverse = new Array<number>(perm.length);
    perm.forEach((p, i) => (inverse[p] = i));
    return [transpose(ctx.grad, inverse)];
  },
  Concat: (ctx) => {
    const first = input(ctx, 0);
    const axis = normAxis(attrInt(ctx.node, 'axis', 0), first.rank, where(ctx));
    let offset = 0;
    return ctx.node.inputs.map((x, i) => {
      const size = staticDim(ctx, x, axis);
      const part = ctx.needs[i] ? slice(ctx.grad, [offset], [offset + size], [axis]) : null;
      offset += size;
      return part;
    });
  },
  Slice: (ctx) => {
    const x = input(ctx, 0);
    const starts = constInts(ctx, 1);
    const ends = constInts(ctx, 2);
    const axes = ctx.node.inputs.length > 3 ? normAxes(constInts(ctx, 3), x.rank, where(ctx)) : starts.map((_, i) => i);
    const steps = ctx.node.inputs.length > 4 ? constInts(ctx, 4) : starts.map(() => 1);
    // Zero-pad the gradient back to the input's extent; strided slices would need a scatter.
    const pads = new Array<number>(2 * x.rank).fill(0);
    axes.forEach((a, i) => {
      if (steps[i] !== 1) throw new GraphError(`${where(ctx)}: gradient supports step 1 only, got step ${steps[i]} on axis ${a}`);
      const dim = staticDim(ctx, x, a);
      const r = sliceRange(dim, starts[i] as number, ends[i] as number, 1);
      pads[a] = r.start;
      pads[a + x.rank] = dim - r.start - r.length;
    });
    return [pad(ctx.grad, pads), null, null, null, null];
  },
  // Indices must be non-negative here: ScatterND does not wrap them the way Gather does.
  Gather: (ctx) => {
    const [data, indices] = [input(ctx, 0), input(ctx, 1)];
    const axis = normAxis(attrInt(ctx.node, 'axis', 0), data.rank, where(ctx));
    const idx = unsqueeze(indices.dtype === 'int64' ? indices : cast(indices, 'int64'), [-1]);
    const q = indices.rank;
    if (axis === 0) return [scatterND(fullLike(data, 0), idx, ctx.grad, 'add'), null];
    // Move the gathered axis to the front, scatter-add rows (repeated indices accumulate), move back.
    const gPerm = [...range(axis, axis + q), ...range(0, axis), ...range(axis + q, ctx.grad.rank)];
    const dPerm = [axis, ...range(0, axis), ...range(axis + 1, data.rank)];
    const dataT = transpose(data, dPerm);
    const scattered = scatterND(fullLike(dataT, 0), idx, transpose(ctx.grad, gPerm), 'add');
    const back = dPerm.map((_, i) => dPerm.indexOf(i));
    return [transpose(scattered, back), null];
  },
};

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
}
