import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseHfConfig, toHfConfigJson } from '../../../worker/formats/hf-config.js';
import { tinyConfigJson } from './builders.js';

function sample(name: string): unknown {
  return JSON.parse(readFileSync(fileURLToPath(new URL(`../../fixtures/formats/configs/${name}.json`, import.meta.url)), 'utf8'));
}

describe('HF config.json', () => {
  it('normalizes TinyLlama: grouped-query attention, head_dim from hidden/heads, no biases', () => {
    const c = parseHfConfig(sample('tinyllama-1.1b'));
    assert.equal(c.modelType, 'llama');
    assert.equal(c.numKeyValueHeads, 4);
    assert.equal(c.headDim, 64);
    assert.equal(c.rmsNormEps, 1e-5);
    assert.equal(c.ropeTheta, 10000);
    assert.equal(c.ropeScaling, null);
    assert.equal(c.torchDtype, 'bfloat16');
    assert.equal(c.qkvBias, false);
    assert.equal(c.oProjBias, false);
    assert.equal(c.slidingWindow, null);
    assert.equal(c.tieWordEmbeddings, false);
    assert.equal(c.extra.pretraining_tp, 1);
  });

  it('reads Llama 3.2 llama3 rope scaling, an explicit head_dim and tied embeddings', () => {
    const c = parseHfConfig(sample('llama-3.2-1b'));
    assert.deepEqual(c.ropeScaling, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    assert.equal(c.ropeTheta, 500000);
    assert.equal(c.headDim, 64);
    assert.equal(c.tieWordEmbeddings, true);
  });

  it('records the Mistral sliding window', () => {
    const c = parseHfConfig(sample('mistral-7b-v0.1'));
    assert.equal(c.modelType, 'mistral');
    assert.equal(c.slidingWindow, 4096);
    assert.equal(c.intermediateSize, 14336);
  });

  it('gives Qwen2 q/k/v biases (but not o_proj) and no window unless use_sliding_window', () => {
    const c = parseHfConfig(sample('qwen2-0.5b'));
    assert.equal(c.qkvBias, true);
    assert.equal(c.oProjBias, false);
    assert.equal(c.slidingWindow, null);
    assert.equal(c.headDim, 64);
    assert.equal(c.ropeTheta, 1e6);
    assert.equal(parseHfConfig(tinyConfigJson('qwen2', { use_sliding_window: true, sliding_window: 128 })).slidingWindow, 128);
  });

  it('reads qwen2 max_window_layers (the first sliding layer), keeps it out of extra and writes it back', () => {
    const c = parseHfConfig(tinyConfigJson('qwen2', { use_sliding_window: true, sliding_window: 128, max_window_layers: 1 }));
    assert.equal(c.maxWindowLayers, 1);
    assert.equal('max_window_layers' in c.extra, false);
    assert.deepEqual(parseHfConfig(JSON.parse(JSON.stringify(toHfConfigJson(c)))), c);
    assert.equal(parseHfConfig(tinyConfigJson('qwen2')).maxWindowLayers, 28, "transformers' Qwen2Config default");
    assert.equal(parseHfConfig(sample('mistral-7b-v0.1')).maxWindowLayers, 0, 'mistral slides in every layer');
    assert.throws(() => parseHfConfig(tinyConfigJson('qwen2', { max_window_layers: -1 })), /max_window_layers must be an integer ≥ 0, got -1/);
  });

  it('defaults num_key_value_heads to the head count and rope_theta to 10000', () => {
    const c = parseHfConfig(tinyConfigJson('llama', { num_key_value_heads: undefined }));
    assert.equal(c.numKeyValueHeads, 4);
    assert.equal(c.headDim, 4);
    assert.equal(c.ropeTheta, 10000);
  });

  it('accepts linear rope scaling under either key name', () => {
    assert.deepEqual(parseHfConfig(tinyConfigJson('llama', { rope_scaling: { type: 'linear', factor: 2 } })).ropeScaling, { type: 'linear', factor: 2 });
    assert.deepEqual(parseHfConfig(tinyConfigJson('llama', { rope_scaling: { rope_type: 'linear', factor: 4 } })).ropeScaling, { type: 'linear', factor: 4 });
  });

  it('survives a write and re-read unchanged, extra keys included', () => {
    for (const name of ['tinyllama-1.1b', 'llama-3.2-1b', 'mistral-7b-v0.1', 'qwen2-0.5b']) {
      const c = parseHfConfig(sample(name));
      assert.deepEqual(parseHfConfig(JSON.parse(JSON.stringify(toHfConfigJson(c)))), c, name);
    }
  });

  const rejections: Array<[string, Record<string, unknown>, RegExp]> = [
    ['an unknown model_type, listing the supported ones', { model_type: 'gpt2' }, /model_type "gpt2" is not supported: expected one of llama, mistral, qwen2/],
    ['an unsupported rope scaling type', { rope_scaling: { type: 'yarn', factor: 4 } }, /rope_scaling type "yarn" is not supported: expected one of default, linear, llama3/],
    ['linear rope scaling without a factor', { rope_scaling: { type: 'linear' } }, /rope_scaling.factor is required/],
    ['a missing hidden_size', { hidden_size: undefined }, /hidden_size is required/],
    ['heads that kv heads do not divide', { num_key_value_heads: 3 }, /num_key_value_heads \(3\) must divide num_attention_heads \(4\)/],
    ['a hidden size that heads do not divide', { hidden_size: 18 }, /hidden_size \(18\) must be divisible by num_attention_heads \(4\)/],
    ['a non-SwiGLU activation', { hidden_act: 'gelu' }, /hidden_act "gelu" is not supported: expected silu/],
    ['an unknown torch_dtype', { torch_dtype: 'float8' }, /torch_dtype "float8" is not supported: expected one of float32, float16, bfloat16/],
    ['a fractional layer count', { num_hidden_layers: 2.5 }, /num_hidden_layers must be a positive integer, got 2.5/],
  ];
  for (const [what, overrides, message] of rejections) {
    it(`rejects ${what}`, () => {
      assert.throws(() => parseHfConfig(tinyConfigJson('llama', overrides), '/models/x/config.json'), (err: Error) => {
        assert.match(err.message, /^\/models\/x\/config.json: /);
        assert.match(err.message, message);
        return true;
      });
    });
  }
});
