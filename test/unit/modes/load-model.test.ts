// Loading a Hugging Face checkpoint directory into float32 weights by HF name, whatever its
// dtype and sharding, and PEFT adapters into LoRA feeds; errors name the file and the tensor.
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHfCheckpoint } from '../../../worker/formats/hf-checkpoint.js';
import { buildLoraAdapter, loraConfig, saveLoraAdapter } from '../../../worker/formats/peft.js';
import { writeSafetensors } from '../../../worker/formats/safetensors.js';
import { makeTensor, toFloat32, type FloatDType } from '../../../worker/formats/tensor.js';
import { loadAdapter, loadModel } from '../../../worker/modes/load-model.js';
import { randomCheckpointTensors, tinyConfig } from '../formats/builders.js';

describe('loading a model', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'tessera-load-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const cases: Array<{ name: string; dtype: FloatDType; maxShardBytes?: number }> = [
    { name: 'float32, one file', dtype: 'F32' },
    { name: 'float16, one file', dtype: 'F16' },
    { name: 'bfloat16, sharded', dtype: 'BF16', maxShardBytes: 4000 },
  ];
  for (const c of cases) {
    it(`decodes a ${c.name} checkpoint to the float32 values it stores`, async () => {
      const config = tinyConfig('llama');
      const tensors = randomCheckpointTensors(config, c.dtype);
      const path = join(dir, c.name.replace(/\W+/g, '-'));
      await writeHfCheckpoint(path, { config, tensors, maxShardBytes: c.maxShardBytes ?? 5e9 });
      const m = await loadModel(path);
      assert.equal(m.tokenizer, null);
      assert.equal(m.weights.size, tensors.size);
      for (const [name, t] of tensors) {
        const w = m.weights.get(name);
        assert.ok(w, `missing ${name}`);
        assert.deepEqual([...w.shape], t.shape);
        assert.deepEqual(w.data, toFloat32(t));
      }
    });
  }

  it('does not duplicate a tied lm_head', async () => {
    const config = tinyConfig('llama', { tie_word_embeddings: true });
    const path = join(dir, 'tied');
    await writeHfCheckpoint(path, { config, tensors: randomCheckpointTensors(config) });
    const m = await loadModel(path);
    assert.equal(m.weights.has('lm_head.weight'), false);
    assert.ok(m.weights.has('model.embed_tokens.weight'));
  });

  it('names the file and tensor of a wrong shape, a missing config and missing weights', async () => {
    const config = tinyConfig('llama');
    const path = join(dir, 'bad-shape');
    await writeHfCheckpoint(path, { config, tensors: randomCheckpointTensors(config) });
    // The same config over weights with one tensor of the wrong shape.
    const tensors = randomCheckpointTensors(config);
    tensors.set('model.layers.1.mlp.up_proj.weight', makeTensor('F32', [40, 8], new Float32Array(320)));
    await writeSafetensors(join(path, 'model.safetensors'), tensors, { format: 'pt' });
    await assert.rejects(loadModel(path), /bad-shape\/model\.safetensors: tensor model\.layers\.1\.mlp\.up_proj\.weight has shape \[40, 8\], expected \[40, 16\]/);

    const empty = join(dir, 'empty');
    mkdirSync(empty);
    await assert.rejects(loadModel(empty), /empty\/config\.json/);
    rmSync(join(path, 'model.safetensors'));
    await assert.rejects(loadModel(path), /bad-shape: neither model\.safetensors nor model\.safetensors\.index\.json found/);
  });

  it('turns a PEFT adapter into LoRA factors with its scaling, checked against the base', async () => {
    const config = tinyConfig('llama');
    const A = makeTensor('F32', [2, 16], Float32Array.from({ length: 32 }, (_, i) => i / 32));
    const B = makeTensor('F32', [16, 2], Float32Array.from({ length: 32 }, (_, i) => -i / 32));
    const path = join(dir, 'adapter');
    await saveLoraAdapter(path, buildLoraAdapter(loraConfig({ r: 2, loraAlpha: 8, targetModules: ['q_proj'] }), [{ name: 'model.layers.0.self_attn.q_proj', A, B }]));
    const { lora } = await loadAdapter(path, config);
    const m = lora.get('model.layers.0.self_attn.q_proj');
    assert.equal(m?.scaling, 4);
    assert.deepEqual(m?.A.data, A.data);
    assert.deepEqual(m?.B.data, B.data);
    await assert.rejects(loadAdapter(path, tinyConfig('llama', { num_hidden_layers: 1, hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 1 })), /adapter does not fit the base model/);
    writeFileSync(join(path, 'adapter_config.json'), '{"peft_type": "LORA", "r": "two"}');
    await assert.rejects(loadAdapter(path, config), /adapter_config\.json/);
  });
});
