// Builders for the tensors the graphs take: token batches with their positions and masks,
// weights and LoRA adapters as feeds. Kept apart from graph.ts so callers (the training loop,
// the serving engine) need no graph types to run a session.
import * as nn from '../../onnx/index.js';
import { loraInputNames, loraMaskName, weightMaskName } from './params.js';
import { type WeightMap, type WeightTensor } from './weights.js';

/** One LoRA module: A [r, in], B [out, r]; the branch adds scaling·x·Aᵀ·Bᵀ. */
export interface LoraModuleWeights {
  A: WeightTensor;
  B: WeightTensor;
  scaling: number;
}

/** Module path (model.layers.0.self_attn.q_proj) → its LoRA factors. */
export type LoraWeights = ReadonlyMap<string, LoraModuleWeights>;

export type Feeds = Record<string, nn.Tensor>;

export function weightFeeds(weights: WeightMap, names: Iterable<string>): Feeds {
  const out: Feeds = {};
  for (const name of names) {
    const w = weights.get(name);
    if (!w) throw new Error(`no weight ${name} to feed: expected one of ${[...weights.keys()].slice(0, 8).join(', ')}, …`);
    out[name] = nn.tensor('float32', w.shape, w.data);
  }
  return out;
}

export function loraFeeds(lora: LoraWeights): Feeds {
  const out: Feeds = {};
  for (const [path, m] of lora) {
    const names = loraInputNames(path);
    out[names.A] = nn.tensor('float32', m.A.shape, m.A.data);
    out[names.B] = nn.tensor('float32', m.B.shape, m.B.data);
    out[names.scaling] = nn.tensor('float32', [], [m.scaling]);
  }
  return out;
}

/** Module path → mask of the base weight ([out, in], 0/1) or of the LoRA delta. */
export function maskFeeds(masks: ReadonlyMap<string, WeightTensor>, which: 'weight' | 'lora'): Feeds {
  const out: Feeds = {};
  for (const [path, m] of masks) out[which === 'weight' ? weightMaskName(path) : loraMaskName(path)] = nn.tensor('float32', m.shape, m.data);
  return out;
}

function checkRows(rows: readonly (readonly number[])[], what: string): number {
  const t = rows[0]?.length ?? 0;
  if (rows.length === 0 || t === 0) throw new Error(`${what}: expected at least one non-empty row`);
  rows.forEach((r, i) => {
    if (r.length !== t) throw new Error(`${what}: row ${i} has ${r.length} tokens, row 0 has ${t}: pad rows to one length`);
  });
  return t;
}

/** [B, T] int64 from equal-length rows. */
export function int64Rows(rows: readonly (readonly number[])[], what = 'tokens'): nn.Tensor {
  const t = checkRows(rows, what);
  return nn.tensor('int64', [rows.length, t], BigInt64Array.from(rows.flat(), (x) => BigInt(x)));
}

/**
 * Feeds for prefill: rows of possibly different lengths, left-padded with `padId` to the
 * longest; positions count from 0 at each row's first real token (padding gets 0, masked).
 */
export function prefillFeeds(rows: readonly (readonly number[])[], padId = 0): { feeds: Feeds; lengths: number[] } {
  const t = Math.max(...rows.map((r) => r.length));
  if (!(t > 0)) throw new Error('prefill: expected at least one non-empty prompt');
  const ids: number[][] = [];
  const pos: number[][] = [];
  const mask: number[][] = [];
  for (const r of rows) {
    const pad = t - r.length;
    ids.push([...new Array<number>(pad).fill(padId), ...r]);
    pos.push(Array.from({ length: t }, (_, i) => Math.max(0, i - pad)));
    mask.push(Array.from({ length: t }, (_, i) => (i < pad ? 0 : 1)));
  }
  return {
    feeds: { input_ids: int64Rows(ids), position_ids: int64Rows(pos), attention_mask: int64Rows(mask) },
    lengths: rows.map((r) => r.length),
  };
}

/** position_ids [B, T] counting from 0 in every row (training on unpadded windows). */
export function sequentialPositions(batch: number, t: number): nn.Tensor {
  const data = new BigInt64Array(batch * t);
  for (let b = 0; b < batch; b++) for (let i = 0; i < t; i++) data[b * t + i] = BigInt(i);
  return nn.tensor('int64', [batch, t], data);
}
