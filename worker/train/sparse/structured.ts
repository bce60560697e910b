// Structured pruning for LORAM (ALGORITHMS.md §1, §4): whole units leave the model, so the pruned
// model is smaller, not sparser. Two kinds of unit per block:
//   MLP neuron i     — row i of gate_proj and up_proj, column i of down_proj;
//   KV head h        — rows [h·hd, (h+1)·hd) of k_proj and v_proj, and the g = heads/kvHeads query
//                      heads that read it: rows [h·g·hd, (h+1)·g·hd) of q_proj, the same columns of o_proj.
// Importance is first-order Taylor, Σ |W ⊙ ∇W| over every weight of the unit, with ∇W the gradient
// of the mean calibration loss (LLM-Pruner's element-wise score, which LORAM uses), or random
// (LORAM-Rand). Every pruned block loses the same share of its neurons and of its KV heads, the
// lowest-scoring ones; blocks kept whole and the rest keep their own sizes (config.layerSizes).
import { LINEAR_MODULES, type LinearModule } from '../../formats/hf-checkpoint.js';
import { blockSizes, linearHasBias, type LlamaConfig, linearPath, linearShape } from '../../model/llama/config.js';
import { sequentialPositions } from '../../model/llama/feeds.js';
import { buildTrainingGraph, gradName } from '../../model/llama/graph.js';
import { type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import * as nn from '../../onnx/index.js';
import { type SessionCache } from '../../onnx/session.js';
import { batchFromWindows } from '../data.js';
import { Rng } from '../rng.js';
import { prunedCount } from './pattern.js';

/** The units a pruned block keeps, ascending indices into the ORIGINAL block. */
export interface KeptUnits {
  neurons: number[];
  kvHeads: number[];
}

/** Per block: what it keeps, or null for a block kept whole (keepFirstLayers / keepLastLayers). */
export type StructuredPlan = readonly (KeptUnits | null)[];

export interface UnitImportance {
  neurons: Float64Array;
  kvHeads: Float64Array;
}

/** Blocks that may be pruned: all but the first `keepFirst` and the last `keepLast`. */
export function prunableLayers(layers: number, keepFirst: number, keepLast: number): number[] {
  return Array.from({ length: layers }, (_, l) => l).filter((l) => l >= keepFirst && l < layers - keepLast);
}

/**
 * Original rows (outputs) and columns (inputs) of module `m` that a block keeping `kept` retains,
 * ascending; null where the dimension is not pruned (the hidden size never is). The same map
 * slices the weights and scatters a trained adapter back (recover.ts).
 */
export function keptIndices(c: LlamaConfig, kept: KeptUnits, m: LinearModule): { rows: Int32Array | null; cols: Int32Array | null } {
  const hd = c.headDim;
  const group = c.numAttentionHeads / c.numKeyValueHeads;
  const spans = (units: readonly number[], width: number): Int32Array => {
    const out = new Int32Array(units.length * width);
    units.forEach((u, i) => {
      for (let j = 0; j < width; j++) out[i * width + j] = u * width + j;
    });
    return out;
  };
  switch (m) {
    case 'q_proj': return { rows: spans(kept.kvHeads, group * hd), cols: null };
    case 'k_proj':
    case 'v_proj': return { rows: spans(kept.kvHeads, hd), cols: null };
    case 'o_proj': return { rows: null, cols: spans(kept.kvHeads, group * hd) };
    case 'gate_proj':
    case 'up_proj': return { rows: Int32Array.from(kept.neurons), cols: null };
    case 'down_proj': return { rows: null, cols: Int32Array.from(kept.neurons) };
  }
}

/** The pruned model's config: the original with each pruned block's own sizes. */
export function prunedConfig(c: LlamaConfig, plan: StructuredPlan): LlamaConfig {
  checkPlan(c, plan);
  return {
    ...c,
    layerSizes: plan.map((kept, l) => (kept ? { intermediateSize: kept.neurons.length, numKeyValueHeads: kept.kvHeads.length } : { intermediateSize: blockSizes(c, l).intermediateSize, numKeyValueHeads: blockSizes(c, l).numKeyValueHeads })),
  };
}

/** The pruned model's weights: kept rows and columns of every pruned block; the rest shared. */
export function sliceModel(c: LlamaConfig, weights: WeightMap, plan: StructuredPlan): Map<string, WeightTensor> {
  checkPlan(c, plan);
  const out = new Map(weights);
  plan.forEach((kept, l) => {
    if (!kept) return;
    for (const m of LINEAR_MODULES) {
      const path = linearPath(l, m);
      const [rows, cols] = linearShape(c, m);
      const { rows: r, cols: k } = keptIndices(c, kept, m);
      const w = weights.get(`${path}.weight`);
      if (!w) throw new Error(`structured pruning: missing weight ${path}.weight`);
      out.set(`${path}.weight`, sliceMatrix(w.data, rows, cols, r, k));
      const bias = linearHasBias(c, m) ? weights.get(`${path}.bias`) : undefined;
      if (bias) out.set(`${path}.bias`, sliceMatrix(bias.data, rows, 1, r, null));
    }
  });
  return out;
}

function sliceMatrix(data: Float32Array, rows: number, cols: number, keepRows: Int32Array | null, keepCols: Int32Array | null): WeightTensor {
  const rs = keepRows ?? Int32Array.from({ length: rows }, (_, i) => i);
  const cs = keepCols ?? Int32Array.from({ length: cols }, (_, i) => i);
  const out = new Float32Array(rs.length * cs.length);
  rs.forEach((r, i) => {
    for (let j = 0; j < cs.length; j++) out[i * cs.length + j] = data[r * cols + (cs[j] as number)] as number;
  });
  return { shape: cols === 1 && !keepCols ? [rs.length] : [rs.length, cs.length], data: out };
}

function checkPlan(c: LlamaConfig, plan: StructuredPlan): void {
  if (c.layerSizes) throw new Error('structured pruning: the model is already pruned (config.layerSizes is set); prune the original');
  if (plan.length !== c.numHiddenLayers) throw new Error(`structured plan has ${plan.length} blocks, the model ${c.numHiddenLayers}`);
  plan.forEach((kept, l) => {
    if (!kept) return;
    const check = (what: string, units: readonly number[], n: number): void => {
      if (units.length === 0) throw new Error(`structured plan: block ${l} keeps no ${what}: a block needs at least one`);
      units.forEach((u, i) => {
        if (!Number.isInteger(u) || u < 0 || u >= n || (i > 0 && u <= (units[i - 1] as number))) throw new Error(`structured plan: block ${l} ${what} must be ascending indices in [0, ${n}), got ${JSON.stringify(units.slice(0, 8))}`);
      });
    };
    check('neurons', kept.neurons, c.intermediateSize);
    check('kvHeads', kept.kvHeads, c.numKeyValueHeads);
  });
}

export interface TaylorOptions {
  config: LlamaConfig;
  weights: WeightMap;
  /** Calibration windows, all of one length (≥ 2): each predicts its own next tokens. */
  calibration: readonly (readonly number[])[];
  /** Blocks to score. */
  layers: readonly number[];
  cache: SessionCache;
  /** Windows per session run; the gradient is of the mean loss over all of them either way. Default 8. */
  batch?: number;
}

/**
 * Σ |W ⊙ ∇W| per unit of each listed block, ∇W the gradient of the mean next-token loss over all
 * calibration tokens: one training-graph run per batch, gradients summed in float64 with each
 * batch's loss weighted by 1/(all tokens).
 */
export async function taylorImportance(opts: TaylorOptions): Promise<Map<number, UnitImportance>> {
  const c = opts.config;
  const names = opts.layers.flatMap((l) => LINEAR_MODULES.map((m) => `${linearPath(l, m)}.weight`));
  const windows = opts.calibration;
  if (windows.length === 0) throw new Error('Taylor importance needs calibration windows');
  const batch = opts.batch ?? 8;
  const graph = buildTrainingGraph(c, { weights: opts.weights, feed: names, wrt: names }).graph;
  const session = await opts.cache.forGraph(graph);
  const batches = [];
  for (let i = 0; i < windows.length; i += batch) batches.push(batchFromWindows(windows.slice(i, i + batch)));
  const tokens = batches.reduce((n, b) => n + b.mask.reduce((s, x) => s + x, 0), 0);
  const weightFeeds: Record<string, nn.Tensor> = {};
  for (const name of names) {
    const w = opts.weights.get(name);
    if (!w) throw new Error(`Taylor importance: missing weight ${name}`);
    weightFeeds[name] = nn.tensor('float32', w.shape, w.data);
  }
  const grads = new Map(names.map((n) => [n, new Float64Array((opts.weights.get(n) as WeightTensor).data.length)]));
  for (const b of batches) {
    const out = await session.run({
      ...weightFeeds,
      input_ids: nn.tensor('int64', [b.batch, b.seqLen], b.inputIds),
      position_ids: sequentialPositions(b.batch, b.seqLen),
      targets: nn.tensor('int64', [b.batch, b.seqLen], b.targets),
      loss_weights: nn.tensor('float32', [b.batch, b.seqLen], b.mask.map((x) => x / tokens)),
    }, names.map(gradName));
    for (const name of names) {
      const g = out[gradName(name)]?.data as Float32Array;
      const acc = grads.get(name) as Float64Array;
      for (let i = 0; i < g.length; i++) acc[i] = (acc[i] as number) + (g[i] as number);
    }
  }

  const result = new Map<number, UnitImportance>();
  const headWidth = (c.numAttentionHeads / c.numKeyValueHeads) * c.headDim;
  const UNIT_OF: Record<LinearModule, (row: number, col: number) => number> = {
    q_proj: (r) => Math.floor(r / headWidth),
    k_proj: (r) => Math.floor(r / c.headDim),
    v_proj: (r) => Math.floor(r / c.headDim),
    o_proj: (_r, k) => Math.floor(k / headWidth),
    gate_proj: (r) => r,
    up_proj: (r) => r,
    down_proj: (_r, k) => k,
  };
  for (const l of opts.layers) {
    const neurons = new Float64Array(c.intermediateSize);
    const kvHeads = new Float64Array(c.numKeyValueHeads);
    for (const m of LINEAR_MODULES) {
      const name = `${linearPath(l, m)}.weight`;
      const w = (opts.weights.get(name) as WeightTensor).data;
      const g = grads.get(name) as Float64Array;
      const [, cols] = linearShape(c, m);
      // The unit an entry belongs to: its row for output-pruned modules, its column for input-pruned ones.
      const unitOf = UNIT_OF[m];
      const into = m === 'gate_proj' || m === 'up_proj' || m === 'down_proj' ? neurons : kvHeads;
      for (let i = 0; i < w.length; i++) {
        const u = unitOf(Math.floor(i / cols), i % cols);
        into[u] = (into[u] as number) + Math.abs((w[i] as number) * (g[i] as number));
      }
    }
    result.set(l, { neurons, kvHeads });
  }
  return result;
}

/** Seeded uniform scores: LORAM-Rand keeps a random subset of the same units. */
export function randomImportance(c: LlamaConfig, layers: readonly number[], seed: number): Map<number, UnitImportance> {
  const rng = new Rng(seed);
  return new Map(layers.map((l) => [l, { neurons: Float64Array.from({ length: c.intermediateSize }, () => rng.next()), kvHeads: Float64Array.from({ length: c.numKeyValueHeads }, () => rng.next()) }]));
}

/**
 * Keeps, in every scored block, all but ⌊percent·n/100⌋ of its neurons and of its KV heads (at
 * least one of each): the highest-scoring ones, ties going to the lower index.
 */
export function planFromImportance(c: LlamaConfig, importance: ReadonlyMap<number, UnitImportance>, percent: number): (KeptUnits | null)[] {
  if (!(percent >= 0 && percent < 100)) throw new Error(`structured pruning percent must be in [0, 100), got ${percent}`);
  const keep = (scores: Float64Array): number[] => {
    const n = scores.length;
    const drop = Math.min(prunedCount(percent, n), n - 1);
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (scores[a] as number) - (scores[b] as number) || a - b);
    return order.slice(drop).sort((a, b) => a - b);
  };
  return Array.from({ length: c.numHiddenLayers }, (_, l) => {
    const s = importance.get(l);
    return s ? { neurons: keep(s.neurons), kvHeads: keep(s.kvHeads) } : null;
  });
}
