import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectedTensors, openHfCheckpoint, writeHfCheckpoint } from '../../../worker/formats/hf-checkpoint.js';
import { toHfConfigJson } from '../../../worker/formats/hf-config.js';
import { writeSafetensors } from '../../../worker/formats/safetensors.js';
import { makeTensor, toFloat32, type Tensor } from '../../../worker/formats/tensor.js';
import { randomCheckpointTensors, tinyConfig } from './builders.js';

describe('HF checkpoint directories', () => {
  let root: string;
  let n = 0;
  const freshDir = (): string => join(root, `ckpt-${n++}`);
  before(async () => {
    root = await fsp.mkdtemp(join(tmpdir(), 'tessera-ckpt-'));
  });
  after(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('lists the Llama tensor names and shapes, with Qwen2 q/k/v biases and no lm_head when tied', () => {
    const llama = expectedTensors(tinyConfig('llama'));
    assert.equal(llama.length, 1 + 2 * 9 + 1 + 1);
    assert.deepEqual(llama.find((t) => t.name === 'model.layers.1.self_attn.k_proj.weight')?.shape, [8, 16]);
    assert.deepEqual(llama.find((t) => t.name === 'model.layers.0.mlp.down_proj.weight')?.shape, [16, 40]);
    const qwen = expectedTensors(tinyConfig('qwen2', { tie_word_embeddings: true })).map((t) => t.name);
    assert.ok(qwen.includes('model.layers.0.self_attn.v_proj.bias'));
    assert.ok(!qwen.includes('model.layers.0.self_attn.o_proj.bias'));
    assert.ok(!qwen.includes('lm_head.weight'));
  });

  for (const modelType of ['llama', 'mistral', 'qwen2'] as const) {
    it(`writes a ${modelType} checkpoint that opens, validates and reads back exactly`, async () => {
      const dir = freshDir();
      const config = tinyConfig(modelType, { torch_dtype: 'bfloat16' });
      const tensors = randomCheckpointTensors(config, 'BF16');
      const files = await writeHfCheckpoint(dir, { config, tensors, generationConfig: { bos_token_id: 1, eos_token_id: 2 } });
      assert.deepEqual(files, ['model.safetensors', 'generation_config.json', 'config.json']);
      const ckpt = await openHfCheckpoint(dir);
      try {
        assert.deepEqual(ckpt.config, config);
        assert.deepEqual(ckpt.generationConfig, { bos_token_id: 1, eos_token_id: 2 });
        const name = 'model.layers.1.self_attn.q_proj.weight';
        const back = await ckpt.readFloat32(name);
        assert.deepEqual(Array.from(back.data), Array.from(toFloat32(tensors.get(name) as Tensor)));
      } finally {
        await ckpt.close();
      }
    });
  }

  it('opens a sharded checkpoint and copies the tokenizer files', async () => {
    const tokDir = freshDir();
    await fsp.mkdir(tokDir);
    await fsp.writeFile(join(tokDir, 'tokenizer.json'), '{"model":{}}');
    const dir = freshDir();
    const config = tinyConfig();
    const files = await writeHfCheckpoint(dir, { config, tensors: randomCheckpointTensors(config), maxShardBytes: 4096, tokenizerDir: tokDir });
    assert.ok(files.includes('model.safetensors.index.json'));
    assert.ok(files.includes('tokenizer.json'));
    const ckpt = await openHfCheckpoint(dir);
    try {
      assert.equal(ckpt.tokenizerPath, join(dir, 'tokenizer.json'));
      assert.equal((await ckpt.read('lm_head.weight')).shape[0], 50);
    } finally {
      await ckpt.close();
    }
  });

  it('ignores rotary inv_freq buffers and a saved lm_head when embeddings are tied', async () => {
    const dir = freshDir();
    const config = tinyConfig('llama', { tie_word_embeddings: true });
    const tensors = randomCheckpointTensors(config);
    tensors.set('model.layers.0.self_attn.rotary_emb.inv_freq', makeTensor('F32', [2], new Float32Array(2)));
    tensors.set('lm_head.weight', tensors.get('model.embed_tokens.weight') as Tensor);
    await writeHfCheckpoint(dir, { config, tensors });
    const ckpt = await openHfCheckpoint(dir);
    await ckpt.close();
    assert.deepEqual(ckpt.ignoredTensors.sort(), ['lm_head.weight', 'model.layers.0.self_attn.rotary_emb.inv_freq']);
  });

  /** A checkpoint whose files we tamper with after writing a valid config.json. */
  async function tampered(edit: (tensors: Map<string, Tensor>) => void): Promise<string> {
    const dir = freshDir();
    await fsp.mkdir(dir);
    const config = tinyConfig();
    const tensors = randomCheckpointTensors(config);
    edit(tensors);
    await fsp.writeFile(join(dir, 'config.json'), JSON.stringify(toHfConfigJson(config)));
    await writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    return dir;
  }

  it('names the file and the tensor when a tensor is missing', async () => {
    const dir = await tampered((t) => t.delete('model.layers.1.mlp.up_proj.weight'));
    await assert.rejects(openHfCheckpoint(dir), new RegExp(`${dir}: missing tensor model.layers.1.mlp.up_proj.weight \\(expected shape \\[40, 16\\]\\)`));
  });

  it('names the file, the tensor and both shapes on a shape mismatch', async () => {
    const dir = await tampered((t) => t.set('model.norm.weight', makeTensor('F32', [15], new Float32Array(15))));
    await assert.rejects(openHfCheckpoint(dir), (err: Error) => err.message.includes(`${join(dir, 'model.safetensors')}: tensor model.norm.weight has shape [15], expected [16]`));
  });

  it('rejects integer weights with the valid dtypes', async () => {
    const dir = await tampered((t) => t.set('model.norm.weight', makeTensor('I32', [16], new Int32Array(16))));
    await assert.rejects(openHfCheckpoint(dir), /tensor model.norm.weight has dtype I32: expected one of F32, F16, BF16/);
  });

  it('rejects tensors from layers the config does not have', async () => {
    const dir = await tampered((t) => t.set('model.layers.2.input_layernorm.weight', makeTensor('F32', [16], new Float32Array(16))));
    await assert.rejects(openHfCheckpoint(dir), /unexpected tensor model.layers.2.input_layernorm.weight \(not part of a llama model with 2 layers\)/);
  });

  it('reports a truncated weights file before reading any tensor', async () => {
    const dir = await tampered(() => undefined);
    const file = join(dir, 'model.safetensors');
    await fsp.truncate(file, (await fsp.stat(file)).size - 100);
    await assert.rejects(openHfCheckpoint(dir), new RegExp(`${file}: tensor .* but the data section has only .* \\(truncated file\\?\\)`));
  });

  it('refuses to write tensors that do not match the config, and writes nothing', async () => {
    const dir = freshDir();
    const config = tinyConfig();
    const tensors = randomCheckpointTensors(config);
    tensors.delete('model.embed_tokens.weight');
    await assert.rejects(writeHfCheckpoint(dir, { config, tensors }), /missing tensor model.embed_tokens.weight/);
    await assert.rejects(fsp.access(dir));
  });

  it('names config.json when it is missing', async () => {
    const dir = freshDir();
    await fsp.mkdir(dir);
    await assert.rejects(openHfCheckpoint(dir), new RegExp(`${join(dir, 'config.json')}: file not found`));
  });
});
