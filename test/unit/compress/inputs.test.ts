// Compress input checks that fail before any compute, naming the adapter: the base model's
// config.json (module names and shapes) and the sha256 the spec pins.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdapterDigestError } from '../../../worker/compress/inputs.js';
import { JdKernels } from '../../../worker/compress/kernels.js';
import { compressAdapters } from '../../../worker/compress/run.js';
import { ADAPTER_WEIGHTS, loadLoraAdapter, loraConfig, saveLoraAdapter } from '../../../worker/formats/peft.js';
import { makeTensor } from '../../../worker/formats/tensor.js';
import { tinyConfigJson } from '../formats/builders.js';
import { randomAdapters } from './builders.js';
import { writeAdapters } from './fixtures.js';

describe('compress input checks', function () {
  this.timeout(60_000);
  const kernels = new JdKernels();
  after(() => kernels.dispose());
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(join(tmpdir(), 'tessera-compress-inputs-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  /** A base model directory holding only config.json (all the check reads). */
  const baseModel = async (name: string, overrides: Record<string, unknown> = {}): Promise<string> => {
    const dir = join(root, 'models', name);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(join(dir, 'config.json'), JSON.stringify(tinyConfigJson('llama', overrides)));
    return dir;
  };
  const adapters = (count: number) => writeAdapters(join(root, 'in'), count, (mod, i) => randomAdapters(1, mod.out, mod.in, 2, 13 * i + mod.out)[0]!);
  const compress = (inputs: ReadonlyArray<{ name: string; dir: string; sha256?: string }>, extra: { baseModelDir?: string } = {}) =>
    compressAdapters({ adapters: inputs, method: 'jd-full', rank: 2, clusters: 1, output: join(root, 'out'), kernels, ...extra });
  const sha256 = async (dir: string): Promise<string> => createHash('sha256').update(await fsp.readFile(join(dir, ADAPTER_WEIGHTS))).digest('hex');

  it('accepts adapters whose modules and shapes fit the base model (hidden 16, 2 kv heads of 4: q 16×16, v 8×16)', async () => {
    const summary = await compress(await adapters(3), { baseModelDir: await baseModel('tiny') });
    assert.equal(summary.adapters.length, 3);
  });

  it('fails naming the adapter and the expected shape when the base model is wider than the adapters', async () => {
    const inputs = await adapters(2);
    await assert.rejects(compress(inputs, { baseModelDir: await baseModel('wide', { hidden_size: 32, intermediate_size: 64 }) }), (err: Error) => {
      assert.match(err.message, /^adapter a0 does not fit the base model \(4 problems\)/);
      assert.match(err.message, /module model\.layers\.0\.self_attn\.q_proj: lora_A is \[2, 16\], expected \[2, 32\] \(in_features 32\)/);
      assert.match(err.message, /module model\.layers\.0\.self_attn\.v_proj: lora_B is \[8, 2\], expected \[16, 2\] \(out_features 16\)/);
      return true;
    });
    await assert.rejects(fsp.access(join(root, 'out')), 'nothing written');
  });

  it('fails naming the adapter when it targets a layer the base model does not have', async () => {
    const inputs = await adapters(1);
    const deep = join(root, 'deep');
    const A = makeTensor('F32', [2, 16], randomAdapters(1, 16, 16, 2, 5)[0]!.A);
    const B = makeTensor('F32', [16, 2], randomAdapters(1, 16, 16, 2, 5)[0]!.B);
    const name = 'model.layers.7.self_attn.q_proj';
    await saveLoraAdapter(deep, { config: loraConfig({ r: 2, loraAlpha: 4, targetModules: ['q_proj'] }), modules: new Map([[name, { name, A, B, rank: 2, alpha: 4, scaling: 2 }]]) });
    await assert.rejects(compress([...inputs, { name: 'deep', dir: deep }], { baseModelDir: await baseModel('tiny') }), /adapter deep does not fit the base model \(1 problem\):\n {2}module model\.layers\.7\.self_attn\.q_proj: layer 7 does not exist \(the base model has 2 layers\)/);
  });

  it('fails naming the base model directory when its config.json is missing', async () => {
    const dir = join(root, 'models', 'empty');
    await fsp.mkdir(dir, { recursive: true });
    await assert.rejects(compress(await adapters(1), { baseModelDir: dir }), (err: Error) => err.message.startsWith('base model') && err.message.includes(join(dir, 'config.json')));
  });

  it('accepts a pinned sha256 that matches, in either case', async () => {
    const inputs = await adapters(2);
    const pinned = await Promise.all(inputs.map(async (a, i) => ({ ...a, sha256: i === 0 ? await sha256(a.dir) : (await sha256(a.dir)).toUpperCase() })));
    const summary = await compress(pinned);
    assert.equal(summary.adapters.length, 2);
  });

  it('fails naming the adapter, the pinned and the actual digest when the weights changed', async () => {
    const inputs = await adapters(2);
    const expected = await sha256(inputs[1]!.dir);
    // The adapter is rewritten after it was pinned: same shapes, different numbers.
    const changed = await loadLoraAdapter(inputs[1]!.dir);
    for (const m of changed.modules.values()) m.B.data[0] = (m.B.data[0] as number) + 1;
    await saveLoraAdapter(inputs[1]!.dir, changed);
    const actual = await sha256(inputs[1]!.dir);
    assert.notEqual(actual, expected);
    await assert.rejects(compress([inputs[0]!, { ...inputs[1]!, sha256: expected }]), (err: unknown) => {
      assert.ok(err instanceof AdapterDigestError);
      assert.deepEqual([err.adapter, err.expected, err.actual], ['a1', expected, actual]);
      assert.equal(err.message, `adapter a1: ${join(inputs[1]!.dir, ADAPTER_WEIGHTS)} has sha256 ${actual}, but the spec pins ${expected}: the adapter changed since it was pinned, or the pin is wrong`);
      return true;
    });
  });

  it('rejects a pin that is not a sha256 digest, naming the adapter', async () => {
    const inputs = await adapters(1);
    await assert.rejects(compress([{ ...inputs[0]!, sha256: 'abc123' }]), /adapter a0: sha256 "abc123" is not a sha256 digest: expected 64 hex characters/);
  });
});
