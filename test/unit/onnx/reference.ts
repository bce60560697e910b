// A float64 reference for the ops under test: plain loops over row-major arrays, written for
// clarity, never for speed. Shapes are fully static here.

export interface Nd {
  shape: number[];
  data: Float64Array;
}

export const nd = (shape: readonly number[], data: ArrayLike<number>): Nd => ({ shape: [...shape], data: Float64Array.from(data) });
const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = (s[i + 1] as number) * (shape[i + 1] as number);
  return s;
}

function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let k = shape.length - 1; k >= 0; k--) {
    const d = shape[k] as number;
    idx[k] = i % d;
    i = Math.floor(i / d);
  }
  return idx;
}

/** Element of `a` that broadcasts to output index `idx`. */
function at(a: Nd, idx: readonly number[]): number {
  const lead = idx.length - a.shape.length;
  const st = strides(a.shape);
  let off = 0;
  a.shape.forEach((d, k) => (off += (d === 1 ? 0 : (idx[k + lead] as number)) * (st[k] as number)));
  return a.data[off] as number;
}

export function broadcastShape(...shapes: number[][]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  return Array.from({ length: rank }, (_, i) => Math.max(...shapes.map((s) => s[s.length - rank + i] ?? 1)));
}

export function map(fn: (...xs: number[]) => number, ...args: Nd[]): Nd {
  const shape = broadcastShape(...args.map((a) => a.shape));
  const out = new Float64Array(size(shape));
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, shape);
    out[i] = fn(...args.map((a) => at(a, idx)));
  }
  return { shape, data: out };
}

export function matmul(a: Nd, b: Nd): Nd {
  const a2 = a.shape.length === 1 ? { shape: [1, ...a.shape], data: a.data } : a;
  const b2 = b.shape.length === 1 ? { shape: [...b.shape, 1], data: b.data } : b;
  const [m, k] = a2.shape.slice(-2) as [number, number];
  const n = b2.shape[b2.shape.length - 1] as number;
  const batch = broadcastShape(a2.shape.slice(0, -2), b2.shape.slice(0, -2));
  const out = new Float64Array(size(batch) * m * n);
  for (let bi = 0; bi < size(batch); bi++) {
    const bidx = unravel(bi, batch);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += at(a2, [...bidx, i, p]) * at(b2, [...bidx, p, j]);
        out[(bi * m + i) * n + j] = s;
      }
    }
  }
  const shape = [...batch];
  if (a.shape.length > 1) shape.push(m);
  if (b.shape.length > 1) shape.push(n);
  return { shape, data: out };
}

export function transpose(a: Nd, perm: readonly number[]): Nd {
  const shape = perm.map((p) => a.shape[p] as number);
  const st = strides(a.shape);
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, shape);
    let off = 0;
    perm.forEach((p, k) => (off += (idx[k] as number) * (st[p] as number)));
    out[i] = a.data[off] as number;
  }
  return { shape, data: out };
}

export function reduce(a: Nd, axes: readonly number[], keepdims: boolean, kind: 'sum' | 'mean' | 'max'): Nd {
  const ax = new Set(axes.length ? axes.map((x) => (x < 0 ? x + a.shape.length : x)) : a.shape.map((_, i) => i));
  const kept = a.shape.map((d, i) => (ax.has(i) ? 1 : d));
  const out = new Float64Array(size(kept)).fill(kind === 'max' ? -Infinity : 0);
  const kst = strides(kept);
  for (let i = 0; i < a.data.length; i++) {
    const idx = unravel(i, a.shape);
    let off = 0;
    idx.forEach((v, k) => (off += (ax.has(k) ? 0 : v) * (kst[k] as number)));
    const x = a.data[i] as number;
    out[off] = kind === 'max' ? Math.max(out[off] as number, x) : (out[off] as number) + x;
  }
  if (kind === 'mean') {
    const count = a.data.length / out.length;
    for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) / count;
  }
  return { shape: keepdims ? kept : a.shape.filter((_, i) => !ax.has(i)), data: out };
}

export function softmax(a: Nd, axis: number, log = false): Nd {
  const ax = axis < 0 ? axis + a.shape.length : axis;
  const mx = reduce(a, [ax], true, 'max');
  const e = map((x, m) => Math.exp(x - m), a, mx);
  const s = reduce(e, [ax], true, 'sum');
  return log ? map((x, m, t) => x - m - Math.log(t), a, mx, s) : map((x, t) => x / t, e, s);
}

export function gather(a: Nd, indices: readonly number[], indexShape: readonly number[], axis: number): Nd {
  const shape = [...a.shape.slice(0, axis), ...indexShape, ...a.shape.slice(axis + 1)];
  const out = new Float64Array(size(shape));
  const q = indexShape.length;
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, shape);
    const pos = idx.slice(axis, axis + q).reduce((o, v, k) => o * (indexShape[k] as number) + v, 0);
    const src = [...idx.slice(0, axis), indices[pos] as number, ...idx.slice(axis + q)];
    out[i] = a.data[src.reduce((o, v, k) => o * (a.shape[k] as number) + v, 0)] as number;
  }
  return { shape, data: out };
}

export function concat(parts: readonly Nd[], axis: number): Nd {
  const first = parts[0] as Nd;
  const shape = [...first.shape];
  shape[axis] = parts.reduce((s, p) => s + (p.shape[axis] as number), 0);
  const out = new Float64Array(size(shape));
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, shape);
    let j = idx[axis] as number;
    let p = 0;
    while (j >= ((parts[p] as Nd).shape[axis] as number)) j -= (parts[p++] as Nd).shape[axis] as number;
    const part = parts[p] as Nd;
    idx[axis] = j;
    out[i] = part.data[idx.reduce((o, v, k) => o * (part.shape[k] as number) + v, 0)] as number;
  }
  return { shape, data: out };
}

/** a[start:end:step] along each given axis, with indices already resolved (non-negative, in range). */
export function slice(a: Nd, ranges: Record<number, [number, number, number]>): Nd {
  const picks = a.shape.map((d, k) => {
    const r = ranges[k];
    if (!r) return Array.from({ length: d }, (_, i) => i);
    const [s, e, st] = r;
    const out: number[] = [];
    for (let i = s; st > 0 ? i < e : i > e; i += st) out.push(i);
    return out;
  });
  const shape = picks.map((p) => p.length);
  const out = new Float64Array(size(shape));
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, shape).map((v, k) => (picks[k] as number[])[v] as number);
    out[i] = a.data[idx.reduce((o, v, k) => o * (a.shape[k] as number) + v, 0)] as number;
  }
  return { shape, data: out };
}
