// The tiny random checkpoints of test/fixtures/model/llama-tiny.json (written by
// scripts/reference/llama_numpy.py) as model configs and weights, plus small builders.
import { readFileSync } from 'node:fs';
import { parseHfConfig } from '../../../worker/formats/hf-config.js';
import { type LlamaConfig, type WeightTensor } from '../../../worker/model/llama/index.js';
import * as nn from '../../../worker/onnx/index.js';
import { SessionCache } from '../../../worker/onnx/session.js';

interface RawTensor {
  shape: number[];
  data: string;
}

interface RawFixture {
  input_ids: number[][];
  variants: Record<string, { config: Record<string, unknown>; weights: Record<string, RawTensor>; logits: RawTensor }>;
}

export interface Variant {
  name: string;
  config: LlamaConfig;
  weights: Map<string, WeightTensor>;
  /** Reference logits [B, T, vocab] for `inputIds`. */
  logits: WeightTensor;
}

function decode(t: RawTensor): WeightTensor {
  const bytes = Buffer.from(t.data, 'base64');
  const data = new Float32Array(bytes.byteLength / 4);
  new Uint8Array(data.buffer).set(bytes);
  return { shape: t.shape, data };
}

const raw = JSON.parse(readFileSync(new URL('../../fixtures/model/llama-tiny.json', import.meta.url), 'utf8')) as RawFixture;

export const inputIds: number[][] = raw.input_ids;

export const variants: Variant[] = Object.entries(raw.variants).map(([name, v]) => ({
  name,
  // The formats layer's parser, as for a real checkpoint's config.json.
  config: parseHfConfig(v.config, `llama-tiny.json variant ${name}`),
  weights: new Map(Object.entries(v.weights).map(([k, t]) => [k, decode(t)])),
  logits: decode(v.logits),
}));

export function variant(name: string): Variant {
  const v = variants.find((x) => x.name === name);
  if (!v) throw new Error(`no fixture variant ${name}: expected one of ${variants.map((x) => x.name).join(', ')}`);
  return v;
}

export const cache = new SessionCache({ intraOpThreads: 1 });

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

/** Rows [from, to) of position t of a [B, T, V] tensor, as one flat array of B·V values. */
export function positionSlice(t: WeightTensor, pos: number): Float32Array {
  const [b, len, v] = t.shape as [number, number, number];
  const out = new Float32Array(b * v);
  for (let i = 0; i < b; i++) out.set(t.data.subarray((i * len + pos) * v, (i * len + pos + 1) * v), i * v);
  return out;
}

export function f32(t: nn.Tensor | undefined, what: string): Float32Array {
  if (!t || !(t.data instanceof Float32Array)) throw new Error(`${what}: expected a float32 output`);
  return t.data;
}

/** Deterministic values in [-scale, scale). */
export function pseudoRandom(n: number, seed: number, scale = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = (a / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}
