// Ops that move or view data without arithmetic: Reshape, Transpose, Unsqueeze, Squeeze,
// Flatten, Concat, Slice, Expand, Pad, Shape, and Range (index vectors for masks).
import { GraphError, type Value } from '../graph.js';
import { broadcastShapes, type Dim, dimsEqual, divideDim, formatShape, isStatic, normAxes, normAxis, productDim, type Shape } from '../shape.js';
import { expectDType, expectSameDType } from './common.js';

/** Target dims as in ONNX Reshape: 0 copies the input dim at that position, one -1 is inferred. */
export function reshape(x: Value, dims: readonly number[]): Value {
  return x.graph.addNode('Reshape', [x, x.graph.int64s(dims)], {}, (where) => [{ dtype: x.dtype, shape: reshapeShape(x.shape, dims, where) }])[0] as Value;
}

export function reshapeShape(input: Shape, dims: readonly number[], where: string): Dim[] {
  const bad = `${where}: cannot reshape ${formatShape(input)} to ${formatShape(dims)}`;
  if (dims.filter((d) => d === -1).length > 1) throw new GraphError(`${bad}: at most one -1 is allowed`);
  const out: Dim[] = dims.map((d, i) => {
    if (d === 0) {
      const copied = input[i];
      if (copied === undefined) throw new GraphError(`${bad}: 0 at axis ${i} has no input dim to copy`);
      return copied;
    }
    if (!Number.isInteger(d) || d < -1) throw new GraphError(`${bad}: dims must be positive, 0 (copy) or -1 (infer)`);
    return d;
  });
  const total = productDim(input);
  const inferAt = dims.indexOf(-1);
  if (inferAt >= 0) {
    const known = productDim(out.filter((_, i) => i !== inferAt));
    const inferred = divideDim(total, known);
    if (inferred === null) throw new GraphError(`${bad}: ${total} elements do not divide by ${known}`);
    out[inferAt] = inferred;
  } else if (!dimsEqual(total, productDim(out))) {
    throw new GraphError(`${bad}: element counts differ (${total} vs ${productDim(out)})`);
  }
  return out;
}

export function transpose(x: Value, perm?: readonly number[]): Value {
  const p = perm ?? x.shape.map((_, i) => x.rank - 1 - i);
  return x.graph.addNode('Transpose', [x], { perm: { ints: p } }, (where) => {
    const sorted = [...p].sort((a, b) => a - b);
    if (p.length !== x.rank || sorted.some((v, i) => v !== i)) {
      throw new GraphError(`${where}: perm [${p.join(',')}] is not a permutation of 0..${x.rank - 1} for ${x}`);
    }
    return [{ dtype: x.dtype, shape: p.map((i) => x.shape[i] as Dim) }];
  })[0] as Value;
}

export function unsqueeze(x: Value, axes: readonly number[]): Value {
  return x.graph.addNode('Unsqueeze', [x, x.graph.int64s(axes)], {}, (where) => {
    const rank = x.rank + axes.length;
    const at = new Set(normAxes(axes, rank, where));
    const shape: Dim[] = [];
    let j = 0;
    for (let i = 0; i < rank; i++) shape.push(at.has(i) ? 1 : (x.shape[j++] as Dim));
    return [{ dtype: x.dtype, shape }];
  })[0] as Value;
}

export function squeeze(x: Value, axes: readonly number[]): Value {
  return x.graph.addNode('Squeeze', [x, x.graph.int64s(axes)], {}, (where) => {
    const at = new Set(normAxes(axes, x.rank, where));
    for (const a of at) {
      if (x.shape[a] !== 1) throw new GraphError(`${where}: axis ${a} of ${x} has size ${x.shape[a]}, not 1`);
    }
    return [{ dtype: x.dtype, shape: x.shape.filter((_, i) => !at.has(i)) }];
  })[0] as Value;
}

export function concat(values: readonly Value[], axis: number): Value {
  const first = values[0];
  if (!first) throw new GraphError('Concat: needs at least one input');
  return first.graph.addNode('Concat', values, { axis: { i: axis } }, (where) => {
    expectSameDType(where, values);
    const a = normAxis(axis, first.rank, where);
    for (const v of values) {
      const same = v.rank === first.rank && v.shape.every((d, i) => i === a || dimsEqual(d, first.shape[i] as Dim));
      if (!same) throw new GraphError(`${where}: ${v} does not match ${first} outside axis ${a}`);
    }
    const shape = [...first.shape];
    shape[a] = productDimSum(values.map((v) => v.shape[a] as Dim));
    return [{ dtype: first.dtype, shape }];
  })[0] as Value;
}

function productDimSum(dims: readonly Dim[]): Dim {
  if (dims.every((d) => typeof d === 'number')) return (dims as number[]).reduce((s, d) => s + d, 0);
  return dims.join('+');
}

/** Python-style x[starts:ends:steps] along `axes`; ends beyond the dim clamp, as in ONNX. */
export function slice(x: Value, starts: readonly number[], ends: readonly number[], axes?: readonly number[], steps?: readonly number[]): Value {
  const ax = axes ?? starts.map((_, i) => i);
  const st = steps ?? starts.map(() => 1);
  const g = x.graph;
  return g.addNode('Slice', [x, g.int64s(starts), g.int64s(ends), g.int64s(ax), g.int64s(st)], {}, (where) => {
    if (ends.length !== starts.length || ax.length !== starts.length || st.length !== starts.length) {
      throw new GraphError(`${where}: starts, ends, axes and steps must have equal lengths, got ${starts.length}, ${ends.length}, ${ax.length}, ${st.length}`);
    }
    const shape: Dim[] = [...x.shape];
    normAxes(ax, x.rank, where).forEach((a, i) => {
      const dim = x.shape[a] as Dim;
      const [s, e, step] = [starts[i] as number, ends[i] as number, st[i] as number];
      if (step === 0) throw new GraphError(`${where}: step 0 on axis ${a}`);
      if (typeof dim !== 'number') {
        if (s === 0 && e >= 2 ** 31 - 1 && step === 1) return; // the whole symbolic axis
        throw new GraphError(`${where}: cannot slice symbolic axis ${a} (${dim}) of ${x} statically; only [0:] is allowed`);
      }
      shape[a] = sliceLength(dim, s, e, step);
    });
    return [{ dtype: x.dtype, shape }];
  })[0] as Value;
}

/** Resolved [start, end) and length of a slice on an axis of size `dim` (ONNX clamping rules). */
export function sliceRange(dim: number, start: number, end: number, step: number): { start: number; end: number; length: number } {
  const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), hi);
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = clamp(s, 0, dim);
    e = clamp(e, 0, dim);
    return { start: s, end: e, length: Math.max(0, Math.ceil((e - s) / step)) };
  }
  s = clamp(s, 0, dim - 1);
  e = clamp(e, -1, dim - 1);
  return { start: s, end: e, length: Math.max(0, Math.ceil((e - s) / step)) };
}

function sliceLength(dim: number, s: number, e: number, step: number): number {
  return sliceRange(dim, s, e, step).length;
}

/** Broadcasts x to a static shape (ONNX Expand is bidirectional, like numpy broadcasting). */
export function expand(x: Value, dims: readonly number[]): Value {
  return x.graph.addNode('Expand', [x, x.graph.int64s(dims)], {}, (where) => [{ dtype: x.dtype, shape: broadcastShapes(x.shape, dims, where) }])[0] as Value;
}

/** Broadcasts x to the shape of `like`, read at run time so symbolic dims work. */
export function expandLike(x: Value, like: Value): Value {
  const target = isStatic(like.shape) ? x.graph.int64s(like.shape) : shapeOf(like);
  return x.graph.addNode('Expand', [x, target], {}, (where) => [{ dtype: x.dtype, shape: broadcastShapes(x.shape, like.shape, where) }])[0] as Value;
}

/** Reshapes x to the shape of `like` (static dims as a constant, otherwise Shape(like)). */
export function reshapeLike(x: Value, like: Value): Value {
  const target = isStatic(like.shape) ? x.graph.int64s(like.shape) : shapeOf(like);
  return x.graph.addNode('Reshape', [x, target], {}, (where) => {
    if (!dimsEqual(productDim(x.shape), productDim(like.shape))) throw new GraphError(`${where}: cannot reshape ${x} like ${like}: element counts differ`);
    return [{ dtype: x.dtype, shape: like.shape }];
  })[0] as Value;
}

/** Number of elements of x as an int64 scalar, read at run time. */
export function sizeOf(x: Value): Value {
  return x.graph.addNode('Size', [x], {}, () => [{ dtype: 'int64', shape: [] }])[0] as Value;
}

/** 2-D view [d0·…·d(axis−1), d(axis)·…]: works with symbolic dims, where a Reshape would need them static. */
export function flatten(x: Value, axis: number): Value {
  return x.graph.addNode('Flatten', [x], { axis: { i: axis } }, (where) => {
    if (!Number.isInteger(axis) || axis < 0 || axis > x.rank) throw new GraphError(`${where}: axis ${axis} must be in [0, ${x.rank}] for ${x}`);
    return [{ dtype: x.dtype, shape: [productDim(x.shape.slice(0, axis)), productDim(x.shape.slice(axis))] }];
  })[0] as Value;
}

/**
 * [0, 1, …, n − 1] for an int64 scalar n known only at run time (ONNX Range); `length` is the
 * output's dim, usually the symbol of the axis n was read from, so the result broadcasts with it.
 */
export function arange(n: Value, length: Dim): Value {
  const g = n.graph;
  return g.addNode('Range', [g.scalar(0, 'int64'), n, g.scalar(1, 'int64')], {}, (where) => {
    expectDType(where, 'limit', n, ['int64']);
    if (n.rank !== 0) throw new GraphError(`${where}: limit ${n} must be a scalar`);
    return [{ dtype: 'int64', shape: [length] }];
  })[0] as Value;
}

export function shapeOf(x: Value): Value {
  return x.graph.addNode('Shape', [x], {}, () => [{ dtype: 'int64', shape: [x.rank] }])[0] as Value;
}

/** Constant zero padding; `pads` is [begin_0, …, begin_n, end_0, …, end_n] as in ONNX. */
export function pad(x: Value, pads: readonly number[]): Value {
  const g = x.graph;
  return g.addNode('Pad', [x, g.int64s(pads)], { mode: { s: 'constant' } }, (where) => {
    if (pads.length !== 2 * x.rank) throw new GraphError(`${where}: pads has ${pads.length} entries for ${x}: expected ${2 * x.rank}`);
    expectDType(where, 'input', x, ['float32', 'float16', 'float64', 'int32', 'int64']);
    const shape = x.shape.map((d, i) => {
      const extra = (pads[i] as number) + (pads[i + x.rank] as number);
      if (extra === 0) return d;
      if (typeof d !== 'number') throw new GraphError(`${where}: cannot pad symbolic axis ${i} (${d})`);
      return d + extra;
    });
    return [{ dtype: x.dtype, shape }];
  })[0] as Value;
}
