// Fixture builders shared by the formats tests: tiny configs and random checkpoints.

import { expectedTensors } from '../../../worker/formats/hf-checkpoint.js';
import { parseHfConfig, type LlamaFamilyConfig, type ModelType } from '../../../worker/formats/hf-config.js';
import { fromFloat32, type FloatDType, type Tensor } from '../../../worker/formats/tensor.js';

/** A config.json for a model small enough to build in microseconds. */
export function tinyConfigJson(modelType: ModelType = 'llama', overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: modelType,
    hidden_size: 16,
    intermediate_size: 40,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 50,
    rms_norm_eps: 1e-5,
    torch_dtype: 'float32',
    ...overrides,
  };
}

export function tinyConfig(modelType: ModelType = 'llama', overrides: Record<string, unknown> = {}): LlamaFamilyConfig {
  return parseHfConfig(tinyConfigJson(modelType, overrides));
}

/** Deterministic pseudo-random floats (mulberry32), so expected values are reproducible. */
export function randomFloats(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5) * 0.2;
  }
  return out;
}

/** Every tensor the config needs, filled with seeded random values. */
export function randomCheckpointTensors(config: LlamaFamilyConfig, dtype: FloatDType = 'F32'): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  expectedTensors(config).forEach((e, i) => {
    const n = e.shape.reduce((a, b) => a * b, 1);
    out.set(e.name, fromFloat32(randomFloats(n, i + 1), e.shape, dtype));
  });
  return out;
}
