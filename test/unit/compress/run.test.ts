import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JdKernels } from '../../../worker/compress/kernels.js';
import { compressAdapters, type CompressProgress } from '../../../worker/compress/run.js';
import { readJdBundle } from '../../../worker/formats/jd-bundle.js';
import { ADAPTER_WEIGHTS } from '../../../worker/formats/peft.js';
import { randomAdapters, sharedBasisAdapters } from './builders.js';
import { writeAdapters } from './fixtures.js';

describe('compressAdapters', function () {
  this.timeout(60_000);
  const kernels = new JdKernels();
  after(() => kernels.dispose());
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(join(tmpdir(), 'tessera-compress-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  const randomSet = (count: number) => writeAdapters(join(root, 'in'), count, (mod, i) => randomAdapters(1, mod.out, mod.in, 2 + (i % 2), 17 * i + mod.out)[0]!);

  it('compresses adapters of different ranks, reports per-adapter errors, clusters, saved ratio and progress', async () => {
    const adapters = await randomSet(6);
    const stages = new Set<CompressProgress['stage']>();
    const summary = await compressAdapters({ adapters, method: 'jd-full', rank: 4, clusters: 2, output: join(root, 'out'), kernels, onProgress: (p) => stages.add(p.stage) });
    assert.deepEqual([...stages], ['loading', 'compressing', 'writing', 'done']);
    assert.equal(summary.adapters.length, 6);
    assert.equal(summary.clusters.reduce((s, c) => s + c.size, 0), 6);
    assert.ok(summary.meanErrorPercent > 0 && summary.meanErrorPercent < 100);
    assert.ok(summary.parameters.compressed > 0 && summary.parameters.savedRatio < 1);
    for (const c of summary.convergence) assert.equal(c.history?.length, c.iterations + 1);
    assert.equal((await readJdBundle(join(root, 'out'))).manifest.revision, summary.revision);
  });

  it('the per-adapter SVD baseline gives every adapter its own cluster and is exact at the adapter rank', async () => {
    const adapters = await randomSet(3);
    const summary = await compressAdapters({ adapters, method: 'svd', rank: 3, clusters: 1, output: join(root, 'out'), kernels });
    assert.deepEqual(summary.adapters.map((a) => a.cluster), [0, 1, 2]);
    assert.ok(summary.meanErrorPercent < 1e-3, `mean error ${summary.meanErrorPercent}%`);
  });

  it("with clusters 'auto' picks the cheapest rank that meets the target on adapters sharing a basis", async () => {
    const shared = new Map<number, ReturnType<typeof sharedBasisAdapters>>();
    const adapters = await writeAdapters(join(root, 'in'), 6, (mod, i) => {
      if (!shared.has(mod.out)) shared.set(mod.out, sharedBasisAdapters(6, mod.out, mod.in, 2, { seed: mod.out }));
      return shared.get(mod.out)![i]!;
    });
    const summary = await compressAdapters({ adapters, method: 'jd-full', rank: 8, clusters: 'auto', targetErrorPercent: 1, iterations: 20, output: join(root, 'out'), kernels });
    assert.equal(summary.rank, 4, 'rank 2 is not a candidate; 4 is the smallest that covers the rank-2 basis');
    assert.equal(summary.clusters.length, 1);
    assert.ok(summary.meanErrorPercent < 1);
  });

  it('fails naming the adapter when its directory is missing', async () => {
    const adapters = await randomSet(2);
    await assert.rejects(compressAdapters({ adapters: [...adapters, { name: 'lost', dir: join(root, 'nowhere') }], method: 'jd-full', rank: 2, clusters: 1, output: join(root, 'out'), kernels }), /adapter lost: .*nowhere.*file not found/);
    await assert.rejects(fsp.access(join(root, 'out')));
  });

  it('fails naming the adapter and module when shapes differ from the other adapters', async () => {
    const adapters = await randomSet(2);
    const [odd] = await writeAdapters(join(root, 'odd'), 1, (mod) => randomAdapters(1, mod.out, mod.in + 1, 2, 3)[0]!);
    await assert.rejects(
      compressAdapters({ adapters: [...adapters, { name: 'odd', dir: odd!.dir }], method: 'jd-full', rank: 2, clusters: 1, output: join(root, 'out'), kernels }),
      /adapter odd: module model\.layers\.0\.self_attn\.q_proj has lora_B \[16, 2\] and lora_A \[2, 17\] \(out×in 16×17\), but adapter a0 has 16×16/,
    );
  });

  it('fails naming the adapter when its weights file is corrupt', async () => {
    const adapters = await randomSet(2);
    await fsp.writeFile(join(adapters[1]!.dir, ADAPTER_WEIGHTS), 'not a safetensors file');
    await assert.rejects(compressAdapters({ adapters, method: 'jd-full', rank: 2, clusters: 1, output: join(root, 'out'), kernels }), /adapter a1: .*adapter_model\.safetensors/);
  });

  it('rejects an unknown method, listing the valid ones', async () => {
    await assert.rejects(compressAdapters({ adapters: [{ name: 'a', dir: root }], method: 'pca' as 'svd', rank: 2, clusters: 1, output: join(root, 'out') }), /method "pca" is not supported: expected one of jd-full, jd-diag, svd/);
  });
});
