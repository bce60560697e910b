// Model weights as plain float32 arrays keyed by Hugging Face tensor names, so the graphs do
// not depend on how a checkpoint was loaded (safetensors, a test fixture, a fresh init).
import { blockSizes, type LlamaConfig, LINEAR_MODULES, linearHasBias, linearPath, linearShape } from './config.js';

export interface WeightTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** HF tensor name → tensor, e.g. model.layers.0.self_attn.q_proj.weight. */
export type WeightMap = ReadonlyMap<string, WeightTensor>;

export interface WeightSpec {
  name: string;
  shape: number[];
  /** What initWeights fills it with. */
  init: 'normal' | 'ones' | 'zeros';
}

export const EMBED = 'model.embed_tokens.weight';
export const LM_HEAD = 'lm_head.weight';
export const FINAL_NORM = 'model.norm.weight';

/** Every tensor the model reads, in transformers' order. */
export function weightSpecs(c: LlamaConfig): WeightSpec[] {
  const out: WeightSpec[] = [{ name: EMBED, shape: [c.vocabSize, c.hiddenSize], init: 'normal' }];
  for (let l = 0; l < c.numHiddenLayers; l++) {
    out.push({ name: `model.layers.${l}.input_layernorm.weight`, shape: [c.hiddenSize], init: 'ones' });
    const sizes = blockSizes(c, l);
    for (const m of LINEAR_MODULES) {
      const path = linearPath(l, m);
      out.push({ name: `${path}.weight`, shape: linearShape(sizes, m), init: 'normal' });
      if (linearHasBias(c, m)) out.push({ name: `${path}.bias`, shape: [linearShape(sizes, m)[0]], init: 'zeros' });
    }
    out.push({ name: `model.layers.${l}.post_attention_layernorm.weight`, shape: [c.hiddenSize], init: 'ones' });
  }
  out.push({ name: FINAL_NORM, shape: [c.hiddenSize], init: 'ones' });
  if (!c.tieWordEmbeddings) out.push({ name: LM_HEAD, shape: [c.vocabSize, c.hiddenSize], init: 'normal' });
  return out;
}

export function numParameters(c: LlamaConfig): number {
  return weightSpecs(c).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
}

/** Throws on a missing tensor or a shape mismatch, naming the tensor and both shapes. */
export function checkWeights(c: LlamaConfig, weights: WeightMap, names?: ReadonlySet<string>): void {
  for (const spec of weightSpecs(c)) {
    if (names && !names.has(spec.name)) continue;
    const w = weights.get(spec.name);
    if (!w) throw new Error(`missing weight ${spec.name}: expected float32[${spec.shape.join(',')}]`);
    const same = w.shape.length === spec.shape.length && w.shape.every((d, i) => d === spec.shape[i]);
    if (!same) throw new Error(`weight ${spec.name} has shape [${w.shape.join(',')}]: expected [${spec.shape.join(',')}]`);
    const n = spec.shape.reduce((a, b) => a * b, 1);
    if (w.data.length !== n) throw new Error(`weight ${spec.name} holds ${w.data.length} values: expected ${n}`);
  }
}

/**
 * Fresh weights as in transformers' `_init_weights` for Llama: linears and embeddings from
 * N(0, std²), norms at 1, biases at 0. `normal` draws one standard normal sample.
 */
export function initWeights(c: LlamaConfig, normal: () => number, std = 0.02): Map<string, WeightTensor> {
  const out = new Map<string, WeightTensor>();
  for (const spec of weightSpecs(c)) {
    const data = new Float32Array(spec.shape.reduce((a, b) => a * b, 1));
    if (spec.init === 'ones') data.fill(1);
    else if (spec.init === 'normal') for (let i = 0; i < data.length; i++) data[i] = normal() * std;
    out.set(spec.name, { shape: spec.shape, data });
  }
  return out;
}
