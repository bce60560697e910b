// The slice of a Llama-family config the model graphs read. Field names match the
// normalized config of worker/formats/hf-config.ts (LlamaFamilyConfig), so one of those can
// be passed as is; the model does not import the formats layer, which keeps it loadable
// from any source (tests build configs by hand).

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

export interface LlamaConfig {
  /** llama | mistral | qwen2: selects the registry entry; the graphs differ only by the flags below. */
  modelType: string;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Grouped-query attention: each key/value head serves numAttentionHeads / numKeyValueHeads query heads. */
  numKeyValueHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v projections (qwen2). */
  qkvBias: boolean;
  oProjBias: boolean;
  mlpBias: boolean;
}

export const LINEAR_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LinearModule = (typeof LINEAR_MODULES)[number];

/** Full module path of a linear layer, e.g. model.layers.3.self_attn.q_proj (HF and PEFT naming). */
export function linearPath(layer: number, module: LinearModule): string {
  const block = module === 'gate_proj' || module === 'up_proj' || module === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${module}`;
}

/** [out, in] features of a linear layer (PyTorch nn.Linear weight layout). */
export function linearShape(c: LlamaConfig, module: LinearModule): [number, number] {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const shapes: Record<LinearModule, [number, number]> = {
    q_proj: [q, c.hiddenSize],
    k_proj: [kv, c.hiddenSize],
    v_proj: [kv, c.hiddenSize],
    o_proj: [c.hiddenSize, q],
    gate_proj: [c.intermediateSize, c.hiddenSize],
    up_proj: [c.intermediateSize, c.hiddenSize],
    down_proj: [c.hiddenSize, c.intermediateSize],
  };
  return shapes[module];
}

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
  if (c.headDim % 2 !== 0) throw new Error(`llama config: headDim must be even for rotary embeddings, got ${c.headDim}`);
  if (!(c.rmsNormEps > 0)) throw new Error(`llama config: rmsNormEps must be positive, got ${c.rmsNormEps}`);
  if (!(c.ropeTheta > 0)) throw new Error(`llama config: ropeTheta must be positive, got ${c.ropeTheta}`);
}
