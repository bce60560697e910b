// config.json of a Llama-family Hugging Face checkpoint, normalized into one typed shape.
//
// llama, mistral and qwen2 share one architecture (RMSNorm, RoPE, SwiGLU, GQA); they differ
// only in defaults and in which projections carry a bias, so each is a row in MODEL_TYPES.
// Keys we do not interpret are kept in `extra` and written back unchanged.

import { join } from 'node:path';
import { readJsonFile, writeJsonAtomic } from './atomic-file.js';

export type TorchDType = 'float32' | 'float16' | 'bfloat16';
const TORCH_DTYPES: readonly TorchDType[] = ['float32', 'float16', 'bfloat16'];

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };
const ROPE_TYPES = ['default', 'linear', 'llama3'];

export interface LlamaFamilyConfig {
  modelType: ModelType;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Grouped-query attention; equals numAttentionHeads for plain multi-head attention. */
  numKeyValueHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  torchDtype: TorchDType;
  /** Bias on q/k/v projections (qwen2 always; llama/mistral when attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (llama with attention_bias only). */
  oProjBias: boolean;
  mlpBias: boolean;
  /** Sliding-window attention span in tokens (a query sees itself and the window − 1 tokens before it), or null for full attention. */
  slidingWindow: number | null;
  /**
   * Layers with an index below this attend fully and the window applies from here on: qwen2's
   * max_window_layers; 0 for mistral, whose every layer slides (and for llama, which has no window).
   */
  maxWindowLayers: number;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  padTokenId: number | null;
  extra: Record<string, unknown>;
}

interface ModelTypeEntry {
  architecture: string;
  maxPositionEmbeddings: number;
  /** qwen2 hard-wires q/k/v biases and has no attention_bias key. */
  fixedQkvBias: boolean;
}

const MODEL_TYPES = {
  llama: { architecture: 'LlamaForCausalLM', maxPositionEmbeddings: 2048, fixedQkvBias: false },
  mistral: { architecture: 'MistralForCausalLM', maxPositionEmbeddings: 4096 * 32, fixedQkvBias: false },
  qwen2: { architecture: 'Qwen2ForCausalLM', maxPositionEmbeddings: 32768, fixedQkvBias: true },
} satisfies Record<string, ModelTypeEntry>;

export type ModelType = keyof typeof MODEL_TYPES;
export const SUPPORTED_MODEL_TYPES = Object.keys(MODEL_TYPES) as ModelType[];

const CONSUMED = new Set([
  'architectures', 'model_type', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
  'num_key_value_heads', 'head_dim', 'rms_norm_eps', 'rope_theta', 'rope_scaling', 'rope_parameters',
  'max_position_embeddings', 'vocab_size', 'tie_word_embeddings', 'torch_dtype', 'dtype', 'attention_bias',
  'mlp_bias', 'sliding_window', 'use_sliding_window', 'hidden_act', 'bos_token_id', 'eos_token_id', 'pad_token_id',
]);

class ConfigReader {
  constructor(
    private readonly raw: Record<string, unknown>,
    private readonly file: string,
  ) {}

  fail(key: string, message: string): never {
    throw new Error(`${this.file}: ${key} ${message}`);
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  int(key: string, fallback?: number): number {
    const v = this.raw[key] ?? fallback;
    if (v === undefined) return this.fail(key, 'is required (a positive integer)');
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) return this.fail(key, `must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  }

  positive(key: string, fallback: number | undefined, from: Record<string, unknown> = this.raw, prefix = ''): number {
    const v = from[key] ?? fallback;
    if (v === undefined) return this.fail(prefix + key, 'is required (a positive number)');
    if (typeof v !== 'number' || !(v > 0)) return this.fail(prefix + key, `must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'boolean') return this.fail(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  /** An integer ≥ 0 (a layer count that may be zero). */
  count(key: string, fallback: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return this.fail(key, `must be an integer ≥ 0, got ${JSON.stringify(v)}`);
    return v;
  }

  tokenId(key: string): number | null {
    const v = this.raw[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return this.fail(key, `must be a token id, got ${JSON.stringify(v)}`);
    return v;
  }
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function parseRopeScaling(r: ConfigReader, value: unknown, maxPositions: number): RopeScaling | null {
  if (value === undefined || value === null) return null;
  if (!isRecord(value)) return r.fail('rope_scaling', `must be an object, got ${JSON.stringify(value)}`);
  const kind = value.rope_type ?? value.type ?? 'default';
  switch (kind) {
    case 'default':
      return null;
    case 'linear':
      return { type: 'linear', factor: r.positive('factor', undefined, value, 'rope_scaling.') };
    case 'llama3':
      return {
        type: 'llama3',
        factor: r.positive('factor', undefined, value, 'rope_scaling.'),
        lowFreqFactor: r.positive('low_freq_factor', 1, value, 'rope_scaling.'),
        highFreqFactor: r.positive('high_freq_factor', 4, value, 'rope_scaling.'),
        originalMaxPositionEmbeddings: r.positive('original_max_position_embeddings', maxPositions, value, 'rope_scaling.'),
      };
    default:
      return r.fail('rope_scaling', `type ${JSON.stringify(kind)} is not supported: expected one of ${ROPE_TYPES.join(', ')}`);
  }
}

/** Validate a parsed config.json; `file` names it in errors. */
export function parseHfConfig(raw: unknown, file = 'config.json'): LlamaFamilyConfig {
  if (!isRecord(raw)) throw new Error(`${file}: must be a JSON object`);
  const r = new ConfigReader(raw, file);
  const modelType = raw.model_type;
  if (typeof modelType !== 'string' || !Object.hasOwn(MODEL_TYPES, modelType)) {
    return r.fail('model_type', `${JSON.stringify(modelType)} is not supported: expected one of ${SUPPORTED_MODEL_TYPES.join(', ')}`);
  }
  const entry: ModelTypeEntry = MODEL_TYPES[modelType as ModelType];

  const hiddenAct = raw.hidden_act ?? 'silu';
  if (hiddenAct !== 'silu') r.fail('hidden_act', `${JSON.stringify(hiddenAct)} is not supported: expected silu (SwiGLU MLP)`);

  const hiddenSize = r.int('hidden_size');
  const numAttentionHeads = r.int('num_attention_heads');
  const numKeyValueHeads = r.int('num_key_value_heads', numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    r.fail('num_key_value_heads', `(${numKeyValueHeads}) must divide num_attention_heads (${numAttentionHeads})`);
  }
  if (!r.has('head_dim') && hiddenSize % numAttentionHeads !== 0) {
    r.fail('hidden_size', `(${hiddenSize}) must be divisible by num_attention_heads (${numAttentionHeads}) when head_dim is not given`);
  }
  const headDim = r.int('head_dim', hiddenSize / numAttentionHeads);
  const maxPositionEmbeddings = r.int('max_position_embeddings', entry.maxPositionEmbeddings);

  // transformers v5 moved rope_theta and rope_scaling into rope_parameters.
  const ropeParams = isRecord(raw.rope_parameters) ? raw.rope_parameters : undefined;
  const ropeTheta = r.positive('rope_theta', 10000, ropeParams && ropeParams.rope_theta !== undefined ? ropeParams : raw);
  const ropeScaling = parseRopeScaling(r, ropeParams ?? raw.rope_scaling, maxPositionEmbeddings);

  const dtype = raw.torch_dtype ?? raw.dtype ?? 'float32';
  if (typeof dtype !== 'string' || !(TORCH_DTYPES as readonly string[]).includes(dtype)) {
    r.fail('torch_dtype', `${JSON.stringify(dtype)} is not supported: expected one of ${TORCH_DTYPES.join(', ')}`);
  }

  const attentionBias = entry.fixedQkvBias ? false : r.bool('attention_bias', false);
  let slidingWindow: number | null = null;
  let maxWindowLayers = 0;
  if (modelType === 'qwen2') {
    if (r.bool('use_sliding_window', false)) slidingWindow = r.int('sliding_window', 4096);
    // transformers' Qwen2Config default; the key only matters when the window is on.
    maxWindowLayers = r.count('max_window_layers', 28);
  } else if (modelType === 'mistral' && raw.sliding_window !== null) {
    slidingWindow = r.int('sliding_window', 4096);
  }

  const eos = raw.eos_token_id;
  const eosTokenId = Array.isArray(eos) && eos.every((x) => Number.isInteger(x) && x >= 0) ? (eos as number[]) : r.tokenId('eos_token_id');

  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) if (!CONSUMED.has(k)) extra[k] = v;
  // Interpreted for qwen2 only (maxWindowLayers); other types keep it as an unread extra key.
  if (modelType === 'qwen2') delete extra.max_window_layers;

  return {
    modelType: modelType as ModelType,
    hiddenSize,
    intermediateSize: r.int('intermediate_size'),
    numHiddenLayers: r.int('num_hidden_layers'),
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    rmsNormEps: r.positive('rms_norm_eps', 1e-6),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings,
    vocabSize: r.int('vocab_size'),
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    torchDtype: dtype as TorchDType,
    qkvBias: entry.fixedQkvBias || attentionBias,
    oProjBias: attentionBias,
    mlpBias: r.bool('mlp_bias', false),
    slidingWindow,
    maxWindowLayers,
    bosTokenId: r.tokenId('bos_token_id'),
    eosTokenId,
    padTokenId: r.tokenId('pad_token_id'),
    extra,
  };
}

/** The config.json form (snake_case, transformers' key names). */
export function toHfConfigJson(c: LlamaFamilyConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...c.extra, architectures: [MODEL_TYPES[c.modelType].architecture] };
  Object.assign(out, {
    model_type: c.modelType,
    hidden_act: 'silu',
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numKeyValueHeads,
    head_dim: c.headDim,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: ropeScalingJson(c.ropeScaling),
    max_position_embeddings: c.maxPositionEmbeddings,
    vocab_size: c.vocabSize,
    tie_word_embeddings: c.tieWordEmbeddings,
    torch_dtype: c.torchDtype,
    mlp_bias: c.mlpBias,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    pad_token_id: c.padTokenId,
  });
  if (c.modelType === 'qwen2') {
    out.use_sliding_window = c.slidingWindow !== null;
    out.sliding_window = c.slidingWindow ?? 4096;
    out.max_window_layers = c.maxWindowLayers;
  } else {
    out.attention_bias = c.oProjBias;
    if (c.modelType === 'mistral') out.sliding_window = c.slidingWindow;
  }
  return out;
}

function ropeScalingJson(s: RopeScaling | null): Record<string, unknown> | null {
  if (!s) return null;
  if (s.type === 'linear') return { rope_type: 'linear', factor: s.factor };
  return {
    rope_type: 'llama3',
    factor: s.factor,
    low_freq_factor: s.lowFreqFactor,
    high_freq_factor: s.highFreqFactor,
    original_max_position_embeddings: s.originalMaxPositionEmbeddings,
  };
}

export async function readHfConfig(dir: string): Promise<LlamaFamilyConfig> {
  const file = join(dir, 'config.json');
  return parseHfConfig(await readJsonFile(file), file);
}

export async function writeHfConfig(dir: string, config: LlamaFamilyConfig): Promise<void> {
  await writeJsonAtomic(join(dir, 'config.json'), toHfConfigJson(config));
}
