// Static shapes with symbolic dimensions. A symbolic dim is a product of names with an
// optional integer coefficient ('B', 'B*T', '4*B'), so Reshape([B,T,D] → [-1,D]) can still
// say 'B*T' instead of giving up on the shape.

export type Dim = number | string;
export type Shape = readonly Dim[];

export class ShapeError extends Error {
  override name = 'ShapeError';
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(',')}]`;
}

export function isStatic(shape: Shape): shape is readonly number[] {
  return shape.every((d) => typeof d === 'number');
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Number of elements, or null when a dim is symbolic. */
export function numElements(shape: Shape): number | null {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number') return null;
    n *= d;
  }
  return n;
}

export function checkDims(dims: readonly number[], what: string): void {
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${what}: invalid dimension ${d} in ${formatShape(dims)}: expected non-negative integers`);
  }
}

/** A dim as coefficient × product of symbol names. */
interface Monomial {
  coef: number;
  syms: string[];
}

function toMonomial(d: Dim): Monomial {
  if (typeof d === 'number') return { coef: d, syms: [] };
  let coef = 1;
  const syms: string[] = [];
  for (const part of d.split('*')) {
    const p = part.trim();
    if (/^\d+$/.test(p)) coef *= Number(p);
    else syms.push(p);
  }
  return { coef, syms: syms.sort() };
}

function fromMonomial(m: Monomial): Dim {
  if (m.syms.length === 0) return m.coef;
  const sym = m.syms.join('*');
  return m.coef === 1 ? sym : `${m.coef}*${sym}`;
}

export function productDim(dims: readonly Dim[]): Dim {
  const out: Monomial = { coef: 1, syms: [] };
  for (const d of dims) {
    const m = toMonomial(d);
    out.coef *= m.coef;
    out.syms.push(...m.syms);
  }
  out.syms.sort();
  return fromMonomial(out);
}

/** num / den, or null when it does not divide (symbolically or numerically). */
export function divideDim(num: Dim, den: Dim): Dim | null {
  const a = toMonomial(num);
  const b = toMonomial(den);
  if (b.coef === 0 || a.coef % b.coef !== 0) return null;
  const syms = [...a.syms];
  for (const s of b.syms) {
    const i = syms.indexOf(s);
    if (i < 0) return null;
    syms.splice(i, 1);
  }
  return fromMonomial({ coef: a.coef / b.coef, syms });
}

export function dimsEqual(a: Dim, b: Dim): boolean {
  return fromMonomial(toMonomial(a)) === fromMonomial(toMonomial(b));
}

/** Numpy broadcasting of two shapes; `where` names the op and node for the error. */
export function broadcastShapes(a: Shape, b: Shape, where: string): Dim[] {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da === 1) out.push(db);
    else if (db === 1 || dimsEqual(da, db)) out.push(da);
    else if (typeof da === 'number' && typeof db === 'number') {
      throw new ShapeError(`${where}: shapes ${formatShape(a)} and ${formatShape(b)} do not broadcast (axis ${i}: ${da} vs ${db})`);
    } else {
      // A symbol against a different size: at run time the symbol must be 1 or equal it;
      // we cannot tell which, so refuse rather than guess a shape.
      throw new ShapeError(`${where}: shapes ${formatShape(a)} and ${formatShape(b)} cannot be broadcast statically (axis ${i}: ${da} vs ${db})`);
    }
  }
  return out;
}

/** Normalizes a possibly negative axis; `where` names the op and node for the error. */
export function normAxis(axis: number, rank: number, where: string): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new ShapeError(`${where}: axis ${axis} out of range for rank ${rank}: expected ${-rank}..${rank - 1}`);
  }
  return axis < 0 ? axis + rank : axis;
}

export function normAxes(axes: readonly number[], rank: number, where: string): number[] {
  const out = axes.map((a) => normAxis(a, rank, where));
  if (new Set(out).size !== out.length) throw new ShapeError(`${where}: repeated axis in [${axes.join(',')}]`);
  return out;
}
