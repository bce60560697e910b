// Helpers for the LORAM tests: logits of a model with or without an adapter, and the original
// model with a structured plan's pruned units silenced (what the sliced model must compute).
import { type LlamaConfig, linearPath } from '../../../../worker/model/llama/config.js';
import { type Feeds, type LoraWeights, loraFeeds, sequentialPositions } from '../../../../worker/model/llama/feeds.js';
import { buildTrainingGraph } from '../../../../worker/model/llama/graph.js';
import { type WeightMap, type WeightTensor } from '../../../../worker/model/llama/weights.js';
import * as nn from '../../../../worker/onnx/index.js';
import { type SessionCache } from '../../../../worker/onnx/session.js';
import { keptIndices, type StructuredPlan } from '../../../../worker/train/sparse/structured.js';

/** Logits [B, T, vocab] of a model (+ an adapter) on fixed windows. */
export async function logitsOf(cache: SessionCache, c: LlamaConfig, weights: WeightMap, windows: readonly (readonly number[])[], lora?: LoraWeights): Promise<Float32Array> {
  const graph = buildTrainingGraph(c, { weights, lora: lora ? [...lora.keys()] : [], wrt: [], logits: true }).graph;
  const session = await cache.forGraph(graph);
  const [b, t] = [windows.length, (windows[0] as number[]).length];
  const ids = BigInt64Array.from(windows.flat(), (x) => BigInt(x));
  const feeds: Feeds = {
    input_ids: nn.tensor('int64', [b, t], ids), position_ids: sequentialPositions(b, t), targets: nn.tensor('int64', [b, t], ids),
    loss_weights: nn.tensor('float32', [b, t], new Float32Array(b * t)), ...(lora ? loraFeeds(lora) : {}),
  };
  return (await session.run(feeds, ['logits'])).logits?.data as Float32Array;
}

export function relativeMaxDiff(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs((a[i] as number) - (b[i] as number)));
    scale = Math.max(scale, Math.abs(a[i] as number));
  }
  return diff / scale;
}

/** The original weights with the pruned units' outputs cut off: o_proj and down_proj columns of removed units zeroed. */
export function silenced(c: LlamaConfig, weights: WeightMap, plan: StructuredPlan): Map<string, WeightTensor> {
  const out = new Map(weights);
  plan.forEach((kept, l) => {
    if (!kept) return;
    for (const m of ['o_proj', 'down_proj'] as const) {
      const name = `${linearPath(l, m)}.weight`;
      const w = weights.get(name) as WeightTensor;
      const [rows, cols] = w.shape as [number, number];
      const keep = new Set(keptIndices(c, kept, m).cols);
      const data = Float32Array.from(w.data);
      for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) if (!keep.has(k)) data[r * cols + k] = 0;
      out.set(name, { shape: w.shape, data });
    }
  });
  return out;
}
