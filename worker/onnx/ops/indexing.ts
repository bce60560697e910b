// Gather (embedding lookup), ScatterND (its gradient), one-hot encoding and zero tensors.
import { type DType } from '../dtype.js';
import { GraphError, type Value } from '../graph.js';
import { type Dim, dimsEqual, formatShape, isStatic, normAxis } from '../shape.js';
import { tensor } from '../tensor.js';
import { expectDType, expectSameDType } from './common.js';
import { cast, equal } from './elementwise.js';
import { shapeOf, unsqueeze } from './layout.js';

const INDEX_TYPES: readonly DType[] = ['int64', 'int32'];

/** data[..., indices, ...] along `axis`: output shape is data[:axis] + indices + data[axis+1:]. */
export function gather(data: Value, indices: Value, axis = 0): Value {
  return data.graph.addNode('Gather', [data, indices], { axis: { i: axis } }, (where) => {
    expectDType(where, 'indices', indices, INDEX_TYPES);
    const a = normAxis(axis, data.rank, where);
    return [{ dtype: data.dtype, shape: [...data.shape.slice(0, a), ...indices.shape, ...data.shape.slice(a + 1)] }];
  })[0] as Value;
}

export type ScatterReduction = 'none' | 'add' | 'mul' | 'max' | 'min';

/** Writes (or with reduction 'add', accumulates) `updates` into a copy of `data` at `indices`. */
export function scatterND(data: Value, indices: Value, updates: Value, reduction: ScatterReduction = 'none'): Value {
  return data.graph.addNode('ScatterND', [data, indices, updates], { reduction: { s: reduction } }, (where) => {
    expectDType(where, 'indices', indices, ['int64']);
    expectSameDType(where, [data, updates]);
    const k = indices.shape[indices.rank - 1];
    if (typeof k !== 'number' || k > data.rank) throw new GraphError(`${where}: last dim of indices${formatShape(indices.shape)} must be a number ≤ rank ${data.rank} of ${data}`);
    const expected = [...indices.shape.slice(0, -1), ...data.shape.slice(k)];
    const ok = expected.length === updates.rank && expected.every((d, i) => dimsEqual(d, updates.shape[i] as Dim));
    if (!ok) throw new GraphError(`${where}: updates${formatShape(updates.shape)} must have shape ${formatShape(expected)}`);
    return [{ dtype: data.dtype, shape: data.shape }];
  })[0] as Value;
}

/** one_hot(indices)[..., c] = (indices == c), as `dtype`; built from Equal so any float dtype works. */
export function oneHot(indices: Value, depth: number, dtype: DType): Value {
  const classes = indices.graph.constant(indices.dtype, [depth], Array.from({ length: depth }, (_, i) => i));
  return cast(equal(unsqueeze(indices, [-1]), classes), dtype);
}

/** A tensor of `fill` with x's shape and dtype (Shape(x) at run time when x has symbolic dims). */
export function fullLike(x: Value, fill: number): Value {
  const g = x.graph;
  const target = isStatic(x.shape) ? g.int64s(x.shape) : shapeOf(x);
  const value = { t: tensor(x.dtype, [1], [fill]) };
  return g.addNode('ConstantOfShape', [target], { value }, () => [{ dtype: x.dtype, shape: x.shape }])[0] as Value;
}
