// Shared test fixtures: a seeded RNG, tensor builders and one session cache for the suite.
import { type DType, type Graph, type Tensor, tensor } from '../../../worker/onnx/index.js';
import { SessionCache } from '../../../worker/onnx/session.js';

/** mulberry32: a tiny deterministic PRNG so every run sees the same numbers. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller). */
export function randn(random: () => number, n: number): number[] {
  return Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random()));
}

export function randomTensor(random: () => number, dtype: DType, dims: readonly number[]): Tensor {
  return tensor(dtype, dims, randn(random, dims.reduce((a, b) => a * b, 1)));
}

export const cache = new SessionCache({ intraOpThreads: 1 });

export async function runGraph(g: Graph, feeds: Record<string, Tensor> = {}): Promise<Record<string, Tensor>> {
  const session = await cache.forGraph(g);
  return session.run(feeds);
}

export function toNumbers(t: Tensor): number[] {
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

/** Max |a-b| / (atol + rtol·|b|) ≤ 1 elementwise, with the worst element in the message. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, opts: { atol: number; rtol: number; what: string }): void {
  if (actual.length !== expected.length) throw new Error(`${opts.what}: ${actual.length} values, expected ${expected.length}`);
  let worst = -1;
  let ratio = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    const r = Math.abs(a - e) / (opts.atol + opts.rtol * Math.abs(e));
    if (!(r <= ratio)) {
      ratio = Number.isNaN(r) ? Infinity : r;
      worst = i;
    }
  }
  if (ratio > 1) {
    throw new Error(`${opts.what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (atol ${opts.atol}, rtol ${opts.rtol})`);
  }
}
