import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openTensorStore, planShards, writeShardedSafetensors } from '../../../worker/formats/safetensors-sharded.js';
import { writeSafetensors } from '../../../worker/formats/safetensors.js';
import { makeTensor, type Tensor } from '../../../worker/formats/tensor.js';

/** n float32 tensors of `elements` each, value = tensor index. */
function tensorsOf(n: number, elements: number): Map<string, Tensor> {
  return new Map(Array.from({ length: n }, (_, i) => [`layer.${i}.weight`, makeTensor('F32', [elements], new Float32Array(elements).fill(i))]));
}

describe('sharded safetensors checkpoints', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(join(tmpdir(), 'tessera-shard-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('plans shards greedily in order and gives an oversized tensor a shard of its own', () => {
    const t = (n: number): Tensor => makeTensor('F32', [n], new Float32Array(n));
    const plan = planShards([['a', t(10)], ['b', t(10)], ['c', t(100)], ['d', t(5)]], 80);
    assert.deepEqual(plan.map((s) => s.map(([name]) => name)), [['a', 'b'], ['c'], ['d']]);
  });

  it('writes shards with the transformers file names and an index, and reads each tensor back by name', async () => {
    const tensors = tensorsOf(5, 256); // 1 KiB each
    const files = await writeShardedSafetensors(dir, tensors, { maxShardBytes: 2048, metadata: { format: 'pt' } });
    assert.deepEqual(files, [
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const index = JSON.parse(await fsp.readFile(join(dir, 'model.safetensors.index.json'), 'utf8')) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    assert.equal(index.metadata.total_size, 5 * 1024);
    assert.equal(index.weight_map['layer.4.weight'], 'model-00003-of-00003.safetensors');

    const store = await openTensorStore(dir);
    try {
      assert.deepEqual(store.names.sort(), [...tensors.keys()].sort());
      const t = await store.readFloat32('layer.3.weight');
      assert.equal(t.data[0], 3);
      assert.equal(store.info('layer.3.weight').file, join(dir, 'model-00002-of-00003.safetensors'));
    } finally {
      await store.close();
    }
  });

  it('writes a single model.safetensors without an index when everything fits in one shard', async () => {
    const files = await writeShardedSafetensors(dir, tensorsOf(2, 4), { maxShardBytes: 1 << 20 });
    assert.deepEqual(files, ['model.safetensors']);
    const store = await openTensorStore(dir);
    try {
      assert.equal((await store.read('layer.1.weight')).data[0], 1);
    } finally {
      await store.close();
    }
  });

  it('reads one tensor from one shard without touching the data of the others', async () => {
    await writeShardedSafetensors(dir, tensorsOf(4, 64 * 1024), { maxShardBytes: 256 * 1024 });
    const store = await openTensorStore(dir);
    try {
      const headers = store.bytesRead;
      await store.read('layer.2.weight');
      assert.equal(store.bytesRead - headers, 256 * 1024);
    } finally {
      await store.close();
    }
  });

  it('rejects an index whose weight_map points at a shard that lacks the tensor', async () => {
    await writeSafetensors(join(dir, 'model-00001-of-00001.safetensors'), tensorsOf(1, 4));
    await fsp.writeFile(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: {}, weight_map: { 'layer.0.weight': 'model-00001-of-00001.safetensors', ghost: 'model-00001-of-00001.safetensors' } }),
    );
    await assert.rejects(openTensorStore(dir), /model.safetensors.index.json: weight_map puts tensor ghost in model-00001-of-00001.safetensors, but .* has no such tensor/);
  });

  it('rejects an index whose shard file is missing, naming the shard', async () => {
    await fsp.writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w: 'model-00001-of-00002.safetensors' } }));
    await assert.rejects(openTensorStore(dir), /model-00001-of-00002.safetensors/);
  });

  it('rejects weight_map entries that escape the checkpoint directory', async () => {
    await fsp.writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w: '../etc/passwd' } }));
    await assert.rejects(openTensorStore(dir), /weight_map entry for tensor w must be a file name in the same directory, got "..\/etc\/passwd"/);
  });

  it('explains that PyTorch .bin checkpoints are not supported', async () => {
    await fsp.writeFile(join(dir, 'pytorch_model.bin'), 'not really');
    await assert.rejects(openTensorStore(dir), /only safetensors is supported/);
  });
});
