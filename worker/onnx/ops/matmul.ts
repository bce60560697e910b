// MatMul (numpy semantics: 1-D promotion, broadcast batch dims) and Gemm.
import { GraphError, type Value } from '../graph.js';
import { broadcastShapes, dimsEqual, type Dim, formatShape } from '../shape.js';
import { expectDType, expectRank, expectSameDType } from './common.js';

const MATMUL_TYPES = ['float32', 'float16', 'float64', 'int32', 'int64'] as const;

export function matmulShape(a: readonly Dim[], b: readonly Dim[], where: string): Dim[] {
  if (a.length === 0 || b.length === 0) throw new GraphError(`${where}: operands must have rank ≥ 1, got ${formatShape(a)} and ${formatShape(b)}`);
  const a2 = a.length === 1 ? [1, ...a] : a;
  const b2 = b.length === 1 ? [...b, 1] : b;
  const k1 = a2[a2.length - 1] as Dim;
  const k2 = b2[b2.length - 2] as Dim;
  if (!dimsEqual(k1, k2)) {
    throw new GraphError(`${where}: inner dimensions differ: A${formatShape(a)} × B${formatShape(b)} (${k1} vs ${k2})`);
  }
  const batch = broadcastShapes(a2.slice(0, -2), b2.slice(0, -2), where);
  const out = [...batch];
  if (a.length > 1) out.push(a2[a2.length - 2] as Dim);
  if (b.length > 1) out.push(b2[b2.length - 1] as Dim);
  return out;
}

export function matmul(a: Value, b: Value): Value {
  return a.graph.addNode('MatMul', [a, b], {}, (where) => {
    expectDType(where, 'A', a, MATMUL_TYPES);
    expectSameDType(where, [a, b]);
    return [{ dtype: a.dtype, shape: matmulShape(a.shape, b.shape, where) }];
  })[0] as Value;
}

export interface GemmOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
}

/** alpha·op(A)·op(B) + beta·C for 2-D A and B; C broadcasts to [M, N]. */
export function gemm(a: Value, b: Value, c?: Value, opts: GemmOptions = {}): Value {
  const attrs = {
    alpha: { f: opts.alpha ?? 1 },
    beta: { f: opts.beta ?? 1 },
    transA: { i: opts.transA ? 1 : 0 },
    transB: { i: opts.transB ? 1 : 0 },
  };
  const inputs = c ? [a, b, c] : [a, b];
  return a.graph.addNode('Gemm', inputs, attrs, (where) => {
    expectDType(where, 'A', a, ['float32', 'float16', 'float64']);
    expectSameDType(where, inputs);
    expectRank(where, 'A', a, [2]);
    expectRank(where, 'B', b, [2]);
    const [m, k1] = (opts.transA ? [a.shape[1], a.shape[0]] : a.shape) as Dim[];
    const [k2, n] = (opts.transB ? [b.shape[1], b.shape[0]] : b.shape) as Dim[];
    if (!dimsEqual(k1 as Dim, k2 as Dim)) {
      throw new GraphError(`${where}: inner dimensions differ: op(A) is [${m},${k1}], op(B) is [${k2},${n}] (transA=${attrs.transA.i}, transB=${attrs.transB.i})`);
    }
    const shape = [m as Dim, n as Dim];
    if (c) {
      const bc = broadcastShapes(c.shape, shape, where);
      if (bc.length !== 2 || !dimsEqual(bc[0] as Dim, shape[0] as Dim) || !dimsEqual(bc[1] as Dim, shape[1] as Dim)) {
        throw new GraphError(`${where}: C${formatShape(c.shape)} does not broadcast to [${m},${n}]`);
      }
    }
    return [{ dtype: a.dtype, shape }];
  })[0] as Value;
}
