// Elementwise ops with numpy broadcasting, comparisons, Where and Cast.
import { type DType, ONNX_DTYPE_CODE } from '../dtype.js';
import { type Value } from '../graph.js';
import { broadcastShapes, type Shape } from '../shape.js';
import { expectDType, expectFloat, expectSameDType, type Operand, operands } from './common.js';

const NUMERIC: readonly DType[] = ['float32', 'float16', 'float64', 'int32', 'int64'];

function binary(opType: string, a: Operand, b: Operand): Value {
  const [va, vb] = operands(a, b);
  return va.graph.addNode(opType, [va, vb], {}, (where) => {
    expectDType(where, 'A', va, NUMERIC);
    expectSameDType(where, [va, vb]);
    return [{ dtype: va.dtype, shape: broadcastShapes(va.shape, vb.shape, where) }];
  })[0] as Value;
}

export const add = (a: Operand, b: Operand): Value => binary('Add', a, b);
export const sub = (a: Operand, b: Operand): Value => binary('Sub', a, b);
export const mul = (a: Operand, b: Operand): Value => binary('Mul', a, b);
export const div = (a: Operand, b: Operand): Value => binary('Div', a, b);
/** x ** y; autodiff differentiates only a constant exponent. */
export const pow = (x: Value, y: Operand): Value => binary('Pow', x, y);

function compare(opType: string, a: Operand, b: Operand): Value {
  const [va, vb] = operands(a, b);
  return va.graph.addNode(opType, [va, vb], {}, (where) => {
    expectSameDType(where, [va, vb]);
    return [{ dtype: 'bool', shape: broadcastShapes(va.shape, vb.shape, where) }];
  })[0] as Value;
}

export const equal = (a: Operand, b: Operand): Value => compare('Equal', a, b);
export const less = (a: Operand, b: Operand): Value => compare('Less', a, b);
export const greater = (a: Operand, b: Operand): Value => compare('Greater', a, b);

function unary(opType: string, x: Value, floatOnly: boolean): Value {
  return x.graph.addNode(opType, [x], {}, (where) => {
    if (floatOnly) expectFloat(where, 'input', x);
    else expectDType(where, 'input', x, NUMERIC);
    return [{ dtype: x.dtype, shape: x.shape }];
  })[0] as Value;
}

export const neg = (x: Value): Value => unary('Neg', x, false);
export const sqrt = (x: Value): Value => unary('Sqrt', x, true);
export const exp = (x: Value): Value => unary('Exp', x, true);
export const log = (x: Value): Value => unary('Log', x, true);
export const sigmoid = (x: Value): Value => unary('Sigmoid', x, true);
export const tanh = (x: Value): Value => unary('Tanh', x, true);
export const relu = (x: Value): Value => unary('Relu', x, true);
/** Round half to even (ONNX Round). No gradient rule: autodiff refuses a path through it. */
export const round = (x: Value): Value => unary('Round', x, true);
export const identity = (x: Value): Value => x.graph.addNode('Identity', [x], {}, () => [{ dtype: x.dtype, shape: x.shape }])[0] as Value;

/** SiLU as x·σ(x): ONNX has no SiLU op before opset 22's Swish, and this form differentiates with existing rules. */
export const silu = (x: Value): Value => mul(x, sigmoid(x));

/** cond ? x : y with three-way broadcasting. */
export function where(cond: Value, x: Operand, y: Operand): Value {
  const [vx, vy] = operands(x, y);
  return cond.graph.addNode('Where', [cond, vx, vy], {}, (w) => {
    expectDType(w, 'condition', cond, ['bool']);
    expectSameDType(w, [vx, vy]);
    const shape: Shape = broadcastShapes(broadcastShapes(cond.shape, vx.shape, w), vy.shape, w);
    return [{ dtype: vx.dtype, shape }];
  })[0] as Value;
}

export function cast(x: Value, to: DType): Value {
  return x.graph.addNode('Cast', [x], { to: { i: ONNX_DTYPE_CODE[to] } }, () => [{ dtype: to, shape: x.shape }])[0] as Value;
}
