// Incremental update: new adapters join an earlier revision by projection onto its bases when
// they fit within the allowance; otherwise everything is recompressed, and the manifest says which.
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { latestBundle } from '../../../worker/compress/incremental.js';
import { JdKernels } from '../../../worker/compress/kernels.js';
import { compressAdapters, type CompressOptions } from '../../../worker/compress/run.js';
import { type SlotFactors } from '../../../worker/compress/slot.js';
import { basisKey, readJdBundle, sigmaKey } from '../../../worker/formats/jd-bundle.js';
import { randomAdapters, sharedBasisAdapters } from './builders.js';
import { MODULES, writeAdapters } from './fixtures.js';

describe('incremental update of a JD bundle', function () {
  this.timeout(120_000);
  const kernels = new JdKernels();
  after(() => kernels.dispose());
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(join(tmpdir(), 'tessera-incremental-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  type Inputs = Array<{ name: string; dir: string }>;
  /** 8 adapters a0…a7 sharing a rank-2 basis per module (diagonal cores with `diagonal`), plus z0, z1: random ones. */
  const collection = async (diagonal = false): Promise<{ shared: Inputs; random: Inputs }> => {
    const byModule = new Map<string, SlotFactors[]>(MODULES.map((m) => [m.name, sharedBasisAdapters(8, m.out, m.in, 2, { seed: m.out, diagonal })]));
    const shared = await writeAdapters(join(root, 'shared'), 8, (m, i) => byModule.get(m.name)![i]!);
    const random = (await writeAdapters(join(root, 'random'), 2, (m, i) => randomAdapters(1, m.out, m.in, 2, 90 + i + m.out)[0]!)).map((a, i) => ({ name: `z${i}`, dir: a.dir }));
    return { shared, random };
  };
  const compress = (adapters: Inputs, output: string, extra: Partial<CompressOptions> = {}) =>
    compressAdapters({ adapters, method: 'jd-full', rank: 2, clusters: 1, iterations: 20, tolerance: 1e-6, output: join(root, output), kernels, ...extra });

  for (const method of ['jd-full', 'jd-diag'] as const) {
    it(`${method}: projects adapters in the span of the bases onto them, keeping the bases and the existing cores bit for bit`, async () => {
      const { shared } = await collection(method === 'jd-diag');
      const settings = { method, ...(method === 'jd-diag' ? { iterations: 300, tolerance: 0 } : {}) };
      const first = await compress(shared.slice(0, 6), 'v1', settings);
      const next = await compress(shared, 'v2', { ...settings, incremental: { previous: join(root, 'v1'), maxErrorPercent: 0.1 } });
      assert.equal(next.update.path, 'projected');
      assert.deepEqual(next.update.projected, ['a6', 'a7']);
      assert.equal(next.update.previousRevision, first.revision);
      assert.equal(next.update.maxErrorPercent, 0.1);
      assert.match(next.update.reason, /^2 adapter\(s\) projected onto revision [0-9a-f]{12}'s bases with at most \d+\.\d\d% mean reconstruction error \(0\.10% allowed\)$/);
      for (const a of next.adapters.slice(6)) assert.ok(a.meanErrorPercent < 0.1, `${a.name}: ${a.meanErrorPercent}%`);

      const [v1, v2] = [await readJdBundle(join(root, 'v1')), await readJdBundle(join(root, 'v2'))];
      assert.deepEqual(v2.manifest.update, next.update);
      assert.deepEqual(v2.manifest.convergence, v1.manifest.convergence, 'the bases were not refitted');
      for (const mod of MODULES) {
        for (const which of ['U', 'V'] as const) assert.deepEqual(v2.tensors.get(basisKey(mod.name, 0, which))?.data, v1.tensors.get(basisKey(mod.name, 0, which))?.data);
        for (const a of shared.slice(0, 6)) assert.deepEqual(v2.tensors.get(sigmaKey(mod.name, a.name))?.data, v1.tensors.get(sigmaKey(mod.name, a.name))?.data);
      }
      // Its own revision: the same inputs compressed from scratch are a different bundle.
      const fresh = await compress(shared, 'fresh', settings);
      assert.notEqual(next.revision, fresh.revision);
      assert.equal(fresh.update.path, 'full');
    });
  }

  it('recompresses everything, naming the adapter and its error, when a new adapter projects above the allowance', async () => {
    const { shared, random } = await collection();
    await compress(shared.slice(0, 6), 'v1');
    const inputs = [...shared.slice(0, 6), random[0]!];
    const next = await compress(inputs, 'v2', { incremental: { previous: join(root, 'v1'), maxErrorPercent: 5 } });
    assert.equal(next.update.path, 'recompressed');
    assert.match(next.update.reason, /^adapter z0 projects onto revision [0-9a-f]{12}'s bases with (\d+\.\d\d)% mean reconstruction error, above the 5\.00% allowed$/);
    const projected = Number(/with (\d+\.\d\d)%/.exec(next.update.reason)?.[1]);
    assert.ok(projected > 50, `a random adapter is mostly outside a rank-2 basis: ${projected}%`);
    // The same bundle a fresh compression writes: same revision, same errors.
    const fresh = await compress(inputs, 'fresh');
    assert.equal(next.revision, fresh.revision);
    assert.deepEqual(next.adapters, fresh.adapters);
  });

  it("without an allowance, lets an adapter join that fits no worse than the earlier revision's worst one", async () => {
    const { random } = await collection();
    const more = await writeAdapters(join(root, 'more'), 3, (m, i) => randomAdapters(1, m.out, m.in, 2, 90 + i + m.out)[0]!);
    // r0 and r1 repeat z0 and z1 under new names: each projects exactly as its twin was fitted.
    const twins = more.slice(0, 2).map((a, i) => ({ name: `r${i}`, dir: a.dir }));
    const first = await compress(random, 'v1');
    const worst = Math.max(...first.adapters.map((a) => a.meanErrorPercent));
    const next = await compress([...random, ...twins], 'v2', { incremental: { previous: join(root, 'v1') } });
    assert.equal(next.update.path, 'projected');
    assert.ok(Math.abs(next.update.maxErrorPercent! - worst) < 1e-9);
    for (const [i, twin] of ['r0', 'r1'].entries()) {
      const a = next.adapters.find((x) => x.name === twin)!;
      assert.ok(Math.abs(a.meanErrorPercent - first.adapters[i]!.meanErrorPercent) < 1e-3, `${twin}: ${a.meanErrorPercent}% vs its twin's ${first.adapters[i]!.meanErrorPercent}%`);
    }
    // A third random adapter does worse than the worst of the two the bases were fitted to.
    const third = await compress([...random, { name: 'r2', dir: more[2]!.dir }], 'v3', { incremental: { previous: join(root, 'v1') } });
    assert.equal(third.update.path, 'recompressed');
    assert.match(third.update.reason, /^adapter r2 projects/);
  });

  it('recompresses when the settings changed, when nothing of the earlier revision is kept, or when it used svd', async () => {
    const { shared, random } = await collection();
    await compress(shared.slice(0, 4), 'v1');
    const changed = await compress(shared.slice(0, 5), 'v2', { rank: 3, incremental: { previous: join(root, 'v1') } });
    assert.deepEqual([changed.update.path, changed.update.reason], ['recompressed', 'the settings changed (rank 2 → 3)']);
    const replaced = await compress(random, 'v3', { incremental: { previous: join(root, 'v1') } });
    assert.equal(replaced.update.path, 'recompressed');
    assert.match(replaced.update.reason, /^no adapter of revision [0-9a-f]{12} is among the inputs unchanged$/);
    await compress(shared.slice(0, 2), 'svd', { method: 'svd' });
    const fromSvd = await compress(shared.slice(0, 3), 'v4', { incremental: { previous: join(root, 'svd') } });
    assert.deepEqual([fromSvd.update.path, fromSvd.update.reason], ['recompressed', 'per-adapter svd has no shared bases to project onto']);
  });

  it('drops adapters no longer in the inputs and keeps the rest without projecting anything', async () => {
    const { shared } = await collection();
    const first = await compress(shared.slice(0, 5), 'v1');
    const next = await compress(shared.slice(0, 3), 'v2', { incremental: { previous: join(root, 'v1') } });
    assert.equal(next.update.path, 'projected');
    assert.deepEqual(next.update.projected, []);
    assert.match(next.update.reason, /; 2 adapter\(s\) no longer in the inputs dropped$/);
    assert.deepEqual(next.adapters, first.adapters.slice(0, 3));
    assert.ok(next.parameters.original < first.parameters.original);
  });

  it('finds the newest revision under an output folder by createdAt, skipping pending writes and folders without a manifest', async () => {
    const { shared } = await collection();
    assert.equal(await latestBundle(join(root, 'nowhere')), undefined);
    await compress(shared.slice(0, 2), 'out/b', { now: () => new Date('2025-01-02T00:00:00Z') });
    await compress(shared.slice(0, 3), 'out/a', { now: () => new Date('2025-01-03T00:00:00Z') });
    await compress(shared.slice(0, 4), 'out/.pending-x', { now: () => new Date('2025-01-09T00:00:00Z') });
    await fsp.mkdir(join(root, 'out', 'c'));
    assert.equal(await latestBundle(join(root, 'out')), join(root, 'out', 'a'));
  });
});
