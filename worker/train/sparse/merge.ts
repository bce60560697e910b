// Merging a LoRA adapter into its base: W' = W + s·(B·A), or with a mask (SparsePEFT, LoSA)
// W' = W + s·(B·A) ⊙ M, which keeps every zero of a pruned W where M = 1[W ≠ 0]. B·A is an
// out×in product, so it runs as a graph; its dims are symbolic, so one session merges every module.
// The masked form computes exactly what the masked training graph (model/llama/lora.ts) computes,
// in the same order, so the merged model's logits are those of base + masked adapter.
import { type LoraWeights } from '../../model/llama/feeds.js';
import { type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import * as nn from '../../onnx/index.js';
import { type Session, type SessionCache } from '../../onnx/session.js';

function mergeGraph(masked: boolean): nn.Graph {
  const g = new nn.Graph(masked ? 'lora_merge_masked' : 'lora_merge');
  const w = g.input('W', 'float32', ['O', 'I']);
  const a = g.input('A', 'float32', ['R', 'I']);
  const b = g.input('B', 'float32', ['O', 'R']);
  const s = g.input('scaling', 'float32', []);
  let delta = nn.matmul(b, a);
  if (masked) delta = nn.mul(delta, g.input('M', 'float32', ['O', 'I']));
  g.output(nn.add(w, nn.mul(delta, s)), 'merged');
  return g;
}

/** 1 where the weight is nonzero: the mask that keeps a pruned weight's zeros through a merge. */
export function nonzeroMask(w: Float32Array): Float32Array {
  return Float32Array.from(w, (x) => (x === 0 ? 0 : 1));
}

/**
 * Returns a new weight map with the adapter merged into the weights `${path}.weight` of its modules.
 * `masks` (module path → [out, in] 0/1), when given, must cover every module of the adapter.
 */
export async function mergeLora(weights: WeightMap, lora: LoraWeights, cache: SessionCache, masks?: ReadonlyMap<string, Float32Array>): Promise<Map<string, WeightTensor>> {
  const out = new Map(weights);
  let session: Session | undefined;
  for (const [path, m] of lora) {
    const name = `${path}.weight`;
    const w = weights.get(name);
    if (!w) throw new Error(`merge: the adapter has module ${path}, but the model has no weight ${name}`);
    const mask = masks?.get(path);
    if (masks && !mask) throw new Error(`merge: no mask for module ${path}`);
    session ??= await cache.forGraph(mergeGraph(masks !== undefined));
    const [o, i] = w.shape as [number, number];
    const r = m.A.shape[0] as number;
    const feeds: Record<string, nn.Tensor> = {
      W: nn.tensor('float32', [o, i], w.data),
      A: nn.tensor('float32', [r, i], m.A.data),
      B: nn.tensor('float32', [o, r], m.B.data),
      scaling: nn.tensor('float32', [], [m.scaling]),
    };
    if (mask) feeds.M = nn.tensor('float32', [o, i], mask);
    const merged = (await session.run(feeds, ['merged'])).merged?.data as Float32Array;
    out.set(name, { shape: w.shape, data: Float32Array.from(merged) });
  }
  return out;
}
