// Checks shared by the op families. Every message starts with "Op node name" (`where`).
import { type DType, isFloat } from '../dtype.js';
import { GraphError, type Value } from '../graph.js';

export type Operand = Value | number;

export function expectDType(where: string, label: string, v: Value, allowed: readonly DType[]): void {
  if (!allowed.includes(v.dtype)) {
    throw new GraphError(`${where}: ${label} ${v.name} has dtype ${v.dtype}: expected one of ${allowed.join(', ')}`);
  }
}

export function expectFloat(where: string, label: string, v: Value): void {
  if (!isFloat(v.dtype)) throw new GraphError(`${where}: ${label} ${v.name} has dtype ${v.dtype}: expected one of float32, float16, float64`);
}

export function expectSameDType(where: string, values: readonly Value[]): void {
  const first = values[0];
  for (const v of values) {
    if (first && v.dtype !== first.dtype) {
      throw new GraphError(`${where}: dtypes differ: ${values.map((x) => `${x.name} is ${x.dtype}`).join(', ')}`);
    }
  }
}

export function expectRank(where: string, label: string, v: Value, ranks: readonly number[]): void {
  if (!ranks.includes(v.rank)) {
    throw new GraphError(`${where}: ${label} ${v.name} has rank ${v.rank} (shape [${v.shape.join(',')}]): expected rank ${ranks.join(' or ')}`);
  }
}

/** Turns a JS number operand into a scalar constant of the other operand's dtype. */
export function operands(a: Operand, b: Operand): [Value, Value] {
  if (typeof a === 'number' && typeof b === 'number') throw new GraphError('at least one operand must be a graph value, got two numbers');
  const va = typeof a === 'number' ? (b as Value).graph.scalar(a, (b as Value).dtype) : a;
  const vb = typeof b === 'number' ? va.graph.scalar(b, va.dtype) : b;
  return [va, vb];
}
