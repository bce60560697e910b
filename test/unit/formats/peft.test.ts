import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { linearModulePath, linearShape, type LinearModule } from '../../../worker/formats/hf-checkpoint.js';
import {
  buildLoraAdapter,
  loadLoraAdapter,
  loraConfig,
  loraKey,
  moduleHyper,
  parseLoraConfig,
  saveLoraAdapter,
  targetsModule,
  toLoraConfigJson,
  validateAdapterForBase,
  type LoraConfig,
} from '../../../worker/formats/peft.js';
import { readSafetensors, writeSafetensors } from '../../../worker/formats/safetensors.js';
import { makeTensor, type F32Tensor } from '../../../worker/formats/tensor.js';
import { randomFloats, tinyConfig } from './builders.js';

const base = tinyConfig('llama');

/** A/B pairs of the right shapes for `modules` in every layer of the tiny base model. */
function pairs(config: LoraConfig, modules: LinearModule[]): Array<{ name: string; A: F32Tensor; B: F32Tensor }> {
  const out: Array<{ name: string; A: F32Tensor; B: F32Tensor }> = [];
  let seed = 1;
  for (let layer = 0; layer < base.numHiddenLayers; layer++) {
    for (const m of modules) {
      const name = linearModulePath(layer, m);
      const { rank } = moduleHyper(config, name);
      const [o, i] = linearShape(base, m);
      out.push({ name, A: makeTensor('F32', [rank, i], randomFloats(rank * i, seed++)), B: makeTensor('F32', [o, rank], randomFloats(o * rank, seed++)) });
    }
  }
  return out;
}

describe('PEFT LoRA adapters', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(join(tmpdir(), 'tessera-peft-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('round-trips config and weights with the standard PEFT keys and shapes', async () => {
    const config = loraConfig({ r: 4, loraAlpha: 16, targetModules: ['q_proj', 'v_proj', 'down_proj'], baseModelNameOrPath: 'tiny-llama' });
    const adapter = buildLoraAdapter(config, pairs(config, ['q_proj', 'v_proj', 'down_proj']));
    await saveLoraAdapter(dir, adapter);
    const { tensors, metadata } = await readSafetensors(join(dir, 'adapter_model.safetensors'));
    assert.deepEqual(metadata, { format: 'pt' });
    assert.deepEqual(tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')?.shape, [4, 16]);
    assert.deepEqual(tensors.get('base_model.model.model.layers.1.mlp.down_proj.lora_B.weight')?.shape, [16, 4]);
    const json = JSON.parse(await fsp.readFile(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(json.peft_type, 'LORA');
    assert.equal(json.task_type, 'CAUSAL_LM');

    const back = await loadLoraAdapter(dir);
    assert.deepEqual(back.config, config);
    assert.equal(back.modules.size, 6);
    for (const [name, m] of adapter.modules) {
      const b = back.modules.get(name);
      assert.ok(b, name);
      assert.deepEqual(Array.from(b.A.data), Array.from(m.A.data));
      assert.deepEqual(Array.from(b.B.data), Array.from(m.B.data));
      assert.equal(b.scaling, 4);
    }
    validateAdapterForBase(back, base);
  });

  it('stores BF16 weights when asked and decodes them to float32 on load', async () => {
    const config = loraConfig({ r: 2, targetModules: ['k_proj'] });
    await saveLoraAdapter(dir, buildLoraAdapter(config, pairs(config, ['k_proj'])), 'BF16');
    const { tensors } = await readSafetensors(join(dir, 'adapter_model.safetensors'));
    assert.equal(tensors.get(loraKey('model.layers.0.self_attn.k_proj', 'A'))?.dtype, 'BF16');
    assert.equal((await loadLoraAdapter(dir)).modules.get('model.layers.0.self_attn.k_proj')?.A.data.constructor, Float32Array);
  });

  it('gives each module the rank and alpha of rank_pattern / alpha_pattern and scales by alpha/r', () => {
    const config = loraConfig({ r: 8, loraAlpha: 16, targetModules: ['q_proj', 'v_proj'], rankPattern: { 'layers.1.self_attn.q_proj': 2 }, alphaPattern: { v_proj: 4 } });
    assert.deepEqual(moduleHyper(config, 'model.layers.1.self_attn.q_proj'), { rank: 2, alpha: 16, scaling: 8 });
    assert.deepEqual(moduleHyper(config, 'model.layers.0.self_attn.q_proj'), { rank: 8, alpha: 16, scaling: 2 });
    assert.deepEqual(moduleHyper(config, 'model.layers.0.self_attn.v_proj'), { rank: 8, alpha: 4, scaling: 0.5 });
  });

  it('scales by alpha/sqrt(r) with rsLoRA', () => {
    const config = loraConfig({ r: 16, loraAlpha: 8, targetModules: ['q_proj'], useRslora: true });
    assert.equal(moduleHyper(config, 'model.layers.0.self_attn.q_proj').scaling, 2);
  });

  it('selects modules by name suffix, by full-match regex, and by all-linear', () => {
    const byList = loraConfig({ r: 1, targetModules: ['q_proj'] });
    assert.ok(targetsModule(byList, 'model.layers.3.self_attn.q_proj'));
    assert.ok(!targetsModule(byList, 'model.layers.3.self_attn.qq_proj'));
    const byRegex = loraConfig({ r: 1, targetModules: '.*\\.layers\\.[01]\\.self_attn\\.(q|v)_proj' });
    assert.ok(targetsModule(byRegex, 'model.layers.1.self_attn.v_proj'));
    assert.ok(!targetsModule(byRegex, 'model.layers.2.self_attn.v_proj'));
    assert.ok(targetsModule(loraConfig({ r: 1, targetModules: 'all-linear' }), 'model.layers.0.mlp.up_proj'));
  });

  it('parses an adapter_config.json written by PEFT, keeping the keys it does not interpret', () => {
    const c = parseLoraConfig({
      alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0', bias: 'none',
      fan_in_fan_out: false, inference_mode: true, init_lora_weights: true, layers_pattern: null, layers_to_transform: null,
      lora_alpha: 32, lora_dropout: 0.05, modules_to_save: null, peft_type: 'LORA', r: 16, rank_pattern: {}, revision: null,
      target_modules: ['v_proj', 'q_proj'], task_type: 'CAUSAL_LM', use_dora: false, use_rslora: false,
    });
    assert.equal(c.r, 16);
    assert.equal(c.loraAlpha, 32);
    assert.equal(c.extra.inference_mode, true);
    assert.deepEqual(parseLoraConfig(toLoraConfigJson(c)), c);
  });

  const badConfigs: Array<[string, Record<string, unknown>, RegExp]> = [
    ['a non-LoRA peft_type', { peft_type: 'IA3' }, /peft_type "IA3" is not supported: expected LORA/],
    ['DoRA', { use_dora: true }, /DoRA adapters .* are not supported/],
    ['a trained bias', { bias: 'all' }, /bias "all" is not supported: expected none/],
    ['a zero rank', { r: 0 }, /r must be a positive integer, got 0/],
    ['an invalid target regex', { target_modules: '(q_proj' }, /target_modules "\(q_proj" is not a valid regular expression/],
    ['a non-integer rank_pattern entry', { rank_pattern: { q_proj: 2.5 } }, /rank_pattern\["q_proj"\] must be a positive integer/],
  ];
  for (const [what, override, message] of badConfigs) {
    it(`rejects an adapter_config.json with ${what}`, () => {
      const raw = { peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj'], ...override };
      assert.throws(() => parseLoraConfig(raw, '/a/adapter_config.json'), (err: Error) => err.message.startsWith('/a/adapter_config.json: ') && message.test(err.message));
    });
  }

  it('rejects a directory holding only adapter_model.bin with a clear message', async () => {
    await fsp.writeFile(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, target_modules: ['q_proj'] }));
    await fsp.writeFile(join(dir, 'adapter_model.bin'), 'pickle');
    await assert.rejects(loadLoraAdapter(dir), /adapter_model.bin: PyTorch pickle adapters are not supported, only adapter_model.safetensors/);
  });

  it('names the missing half of a LoRA pair', async () => {
    const config = loraConfig({ r: 2, targetModules: ['q_proj'] });
    const [first] = pairs(config, ['q_proj']);
    await saveLoraAdapter(dir, buildLoraAdapter(config, [first as { name: string; A: F32Tensor; B: F32Tensor }]));
    await writeSafetensors(join(dir, 'adapter_model.safetensors'), [[loraKey('model.layers.0.self_attn.q_proj', 'A'), first?.A as F32Tensor]]);
    await assert.rejects(loadLoraAdapter(dir), /module model.layers.0.self_attn.q_proj has lora_A but no lora_B \(missing tensor base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight\)/);
  });

  it('rejects weights whose rank disagrees with the config', () => {
    const config = loraConfig({ r: 4, targetModules: ['q_proj'] });
    const wrong = pairs(loraConfig({ r: 3, targetModules: ['q_proj'] }), ['q_proj']);
    assert.throws(() => buildLoraAdapter(config, wrong, 'x.safetensors'), /x.safetensors: module model.layers.0.self_attn.q_proj: rank 3 in the weights but adapter_config.json gives 4/);
  });

  it('rejects modules that target_modules does not select', () => {
    const config = loraConfig({ r: 2, targetModules: ['q_proj'] });
    assert.throws(() => buildLoraAdapter(config, pairs(loraConfig({ r: 2, targetModules: ['v_proj'] }), ['v_proj'])), /v_proj: not selected by target_modules \["q_proj"\]/);
  });

  it('fails validation against a base model with other features or fewer layers, naming each module', () => {
    const config = loraConfig({ r: 2, targetModules: ['q_proj', 'up_proj'] });
    const adapter = buildLoraAdapter(config, pairs(config, ['q_proj', 'up_proj']));
    const narrower = tinyConfig('llama', { hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 1, num_hidden_layers: 1 });
    assert.throws(() => validateAdapterForBase(adapter, narrower, 'adapter task-a'), (err: Error) => {
      assert.match(err.message, /^adapter task-a does not fit the base model/);
      assert.match(err.message, /module model.layers.0.self_attn.q_proj: lora_A is \[2, 16\], expected \[2, 8\] \(in_features 8\)/);
      assert.match(err.message, /module model.layers.1.mlp.up_proj: layer 1 does not exist \(the base model has 1 layers\)/);
      return true;
    });
  });
});
