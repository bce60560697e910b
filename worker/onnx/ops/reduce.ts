// Reductions (opset 18 form: axes are an int64 input) and the softmax family.
import { GraphError, type Value } from '../graph.js';
import { type Dim, normAxes, normAxis } from '../shape.js';
import { expectDType, expectFloat } from './common.js';

export interface ReduceOptions {
  keepdims?: boolean;
}

function reduce(opType: string, x: Value, axes: readonly number[], opts: ReduceOptions): Value {
  const keep = opts.keepdims ?? false;
  const g = x.graph;
  // An empty axes list means "reduce everything" only with noop_with_empty_axes=0 (the default).
  const inputs = axes.length > 0 ? [x, g.int64s(axes)] : [x];
  return g.addNode(opType, inputs, { keepdims: { i: keep ? 1 : 0 } }, (where) => {
    expectDType(where, 'input', x, ['float32', 'float16', 'float64', 'int32', 'int64']);
    const at = new Set(axes.length > 0 ? normAxes(axes, x.rank, where) : x.shape.map((_, i) => i));
    const shape: Dim[] = [];
    x.shape.forEach((d, i) => {
      if (!at.has(i)) shape.push(d);
      else if (keep) shape.push(1);
    });
    return [{ dtype: x.dtype, shape }];
  })[0] as Value;
}

/** Sum over `axes` (all axes when empty). */
export const reduceSum = (x: Value, axes: readonly number[] = [], opts: ReduceOptions = {}): Value => reduce('ReduceSum', x, axes, opts);
export const reduceMean = (x: Value, axes: readonly number[] = [], opts: ReduceOptions = {}): Value => reduce('ReduceMean', x, axes, opts);
export const reduceMax = (x: Value, axes: readonly number[] = [], opts: ReduceOptions = {}): Value => reduce('ReduceMax', x, axes, opts);

function softmaxLike(opType: string, x: Value, axis: number): Value {
  return x.graph.addNode(opType, [x], { axis: { i: axis } }, (where) => {
    expectFloat(where, 'input', x);
    if (x.rank === 0) throw new GraphError(`${where}: input ${x} must have rank ≥ 1`);
    normAxis(axis, x.rank, where);
    return [{ dtype: x.dtype, shape: x.shape }];
  })[0] as Value;
}

export const softmax = (x: Value, axis = -1): Value => softmaxLike('Softmax', x, axis);
export const logSoftmax = (x: Value, axis = -1): Value => softmaxLike('LogSoftmax', x, axis);
