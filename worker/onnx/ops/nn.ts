// Composite helpers built from primitive ops, so autodiff needs no rules of their own.
import { type FloatDType } from '../dtype.js';
import { GraphError, type Value } from '../graph.js';
import { expectDType, expectFloat } from './common.js';
import { mul, neg } from './elementwise.js';
import { oneHot } from './indexing.js';
import { reduceMean, reduceSum, logSoftmax } from './reduce.js';

/**
 * Additive causal mask [T, T]: 0 where key ≤ query, a large negative number above the
 * diagonal. Finite rather than -Infinity so a float16 graph and its gradient stay NaN-free.
 */
export function causalMask(x: Value, t: number, dtype: FloatDType = 'float32'): Value {
  const big = dtype === 'float16' ? -65504 : -1e9;
  const values = new Array<number>(t * t);
  for (let q = 0; q < t; q++) for (let k = 0; k < t; k++) values[q * t + k] = k <= q ? 0 : big;
  return x.graph.constant(dtype, [t, t], values);
}

/**
 * Mean cross-entropy of `logits` [..., V] against integer `targets` [...]: the log-softmax
 * picked by a one-hot product, which differentiates with the Mul/ReduceSum rules.
 */
export function crossEntropy(logits: Value, targets: Value): Value {
  const where = 'crossEntropy';
  expectFloat(where, 'logits', logits);
  expectDType(where, 'targets', targets, ['int64', 'int32']);
  const v = logits.shape[logits.rank - 1];
  if (typeof v !== 'number') throw new GraphError(`${where}: the class axis of ${logits} must be static, got ${v}`);
  if (targets.rank !== logits.rank - 1) throw new GraphError(`${where}: targets ${targets} must have rank ${logits.rank - 1} to match logits ${logits}`);
  const picked = reduceSum(mul(logSoftmax(logits, -1), oneHot(targets, v, logits.dtype)), [-1]);
  return neg(reduceMean(picked));
}
