// The slice of a Llama-family config the model graphs read. Field names match the
// normalized config of worker/formats/hf-config.ts (LlamaFamilyConfig), so one of those can
// be passed as is; tests build configs by hand. Module names and shapes come from the formats
// layer, which owns the HF naming.
import type { LlamaFamilyConfig, RopeScaling } from '../../formats/hf-config.js';
import { LINEAR_MODULES, linearModulePath, linearShape, type LinearModule, type LinearSizes } from '../../formats/hf-checkpoint.js';

export { LINEAR_MODULES, linearShape, type LinearModule, type LinearSizes, type RopeScaling };

/**
 * Sizes of one block that differ from the config's: a structurally pruned model (LORAM) keeps a
 * block's MLP neurons and KV heads in its own numbers. Query heads follow their KV heads, so a
 * block has numKeyValueHeads · (numAttentionHeads / numKeyValueHeads of the config) of them.
 */
export interface LayerSizes {
  intermediateSize: number;
  numKeyValueHeads: number;
}

/**
 * The fields of the normalized HF config the graphs read; modelType is any string so tests can
 * build configs by hand (the registry rejects unknown types). The sliding window is optional
 * for the same reason: absent means full attention in every layer.
 */
export type LlamaConfig = Pick<LlamaFamilyConfig,
  'hiddenSize' | 'intermediateSize' | 'numHiddenLayers' | 'numAttentionHeads' | 'numKeyValueHeads' | 'headDim' |
  'rmsNormEps' | 'ropeTheta' | 'ropeScaling' | 'maxPositionEmbeddings' | 'vocabSize' | 'tieWordEmbeddings' |
  'qkvBias' | 'oProjBias' | 'mlpBias'> & Partial<Pick<LlamaFamilyConfig, 'slidingWindow' | 'maxWindowLayers'>> & {
  modelType: string;
  /** Per-block sizes, one entry per layer; absent: every block has the config's sizes (any HF checkpoint). */
  layerSizes?: readonly LayerSizes[];
};

/** The linear-layer sizes of block `layer`: its own when the config lists per-block sizes. */
export function blockSizes(c: LlamaConfig, layer: number): LinearSizes {
  const own = c.layerSizes?.[layer];
  if (!own) return c;
  const group = c.numAttentionHeads / c.numKeyValueHeads;
  return { hiddenSize: c.hiddenSize, headDim: c.headDim, intermediateSize: own.intermediateSize, numKeyValueHeads: own.numKeyValueHeads, numAttentionHeads: own.numKeyValueHeads * group };
}

/**
 * The attention window of one layer in tokens, or null when the layer attends to every earlier
 * position: mistral slides in every layer, qwen2 from maxWindowLayers on (transformers'
 * layer_types rule).
 */
export function layerWindow(c: LlamaConfig, layer: number): number | null {
  const w = c.slidingWindow ?? null;
  return w !== null && layer >= (c.maxWindowLayers ?? 0) ? w : null;
}

/** Full module path of a linear layer, e.g. model.layers.3.self_attn.q_proj (HF and PEFT naming). */
export const linearPath = linearModulePath;

export function linearHasBias(c: LlamaConfig, module: LinearModule): boolean {
  if (module === 'q_proj' || module === 'k_proj' || module === 'v_proj') return c.qkvBias;
  if (module === 'o_proj') return c.oProjBias;
  return c.mlpBias;
}

/** Every linear module path of the model, layer by layer. */
export function allLinearPaths(c: LlamaConfig): string[] {
  const out: string[] = [];
  for (let l = 0; l < c.numHiddenLayers; l++) for (const m of LINEAR_MODULES) out.push(linearPath(l, m));
  return out;
}

/** Checks the invariants the graphs rely on; the message names the field and its value. */
export function validateConfig(c: LlamaConfig): void {
  const positive: (keyof LlamaConfig)[] = ['hiddenSize', 'intermediateSize', 'numHiddenLayers', 'numAttentionHeads', 'numKeyValueHeads', 'headDim', 'vocabSize', 'maxPositionEmbeddings'];
  for (const k of positive) {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`llama config: ${k} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (c.numAttentionHeads % c.numKeyValueHeads !== 0) {
    throw new Error(`llama config: numKeyValueHeads (${c.numKeyValueHeads}) must divide numAttentionHeads (${c.numAttentionHeads})`);
  }
  if (c.layerSizes !== undefined) {
    if (c.layerSizes.length !== c.numHiddenLayers) throw new Error(`llama config: layerSizes has ${c.layerSizes.length} entries, expected one per layer (${c.numHiddenLayers})`);
    c.layerSizes.forEach((s, l) => {
      for (const k of ['intermediateSize', 'numKeyValueHeads'] as const) {
        if (!Number.isInteger(s[k]) || s[k] <= 0) throw new Error(`llama config: layerSizes[${l}].${k} must be a positive integer, got ${JSON.stringify(s[k])}`);
      }
    });
  }
  if (c.headDim % 2 !== 0) throw new Error(`llama config: headDim must be even for rotary embeddings, got ${c.headDim}`);
  if (!(c.rmsNormEps > 0)) throw new Error(`llama config: rmsNormEps must be positive, got ${c.rmsNormEps}`);
  if (!(c.ropeTheta > 0)) throw new Error(`llama config: ropeTheta must be positive, got ${c.ropeTheta}`);
  const w = c.slidingWindow ?? null;
  if (w !== null && !(Number.isInteger(w) && w > 0)) throw new Error(`llama config: slidingWindow must be a positive integer or null, got ${JSON.stringify(w)}`);
  const from = c.maxWindowLayers ?? 0;
  if (!(Number.isInteger(from) && from >= 0)) throw new Error(`llama config: maxWindowLayers must be an integer ≥ 0, got ${JSON.stringify(from)}`);
}
