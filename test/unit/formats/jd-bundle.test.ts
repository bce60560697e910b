import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JdKernels } from '../../../worker/compress/kernels.js';
import { compressAdapters } from '../../../worker/compress/run.js';
import { gaussianArray } from '../../../worker/compress/random.js';
import { basisKey, JD_MANIFEST, JD_WEIGHTS, materializeAdapter, readJdBundle, sigmaKey } from '../../../worker/formats/jd-bundle.js';
import { loadLoraAdapter, saveLoraAdapter } from '../../../worker/formats/peft.js';
import { randomAdapters } from '../compress/builders.js';
import { MODULES, writeAdapters } from '../compress/fixtures.js';

/** y = M x for a row-major m×k matrix given as a function of (row, col). */
function apply(m: number, k: number, at: (i: number, j: number) => number, x: Float32Array): Float64Array {
  return Float64Array.from({ length: m }, (_, i) => {
    let s = 0;
    for (let j = 0; j < k; j++) s += at(i, j) * (x[j] as number);
    return s;
  });
}

describe('JD bundle', function () {
  this.timeout(60_000);
  const kernels = new JdKernels();
  after(() => kernels.dispose());
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(join(tmpdir(), 'tessera-jd-bundle-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  const build = (method: 'jd-full' | 'jd-diag', out: string, rank = 4, seed = 0) =>
    writeAdapters(join(root, 'in'), 5, (mod, i) => randomAdapters(1, mod.out, mod.in, 3, 31 * i + mod.out)[0]!).then((adapters) =>
      compressAdapters({ adapters, method, rank, clusters: 2, output: join(root, out), seed, kernels, now: () => new Date(0) }),
    );

  for (const method of ['jd-full', 'jd-diag'] as const) {
    it(`${method}: the serving form W x + norm·U(Σ_i(Vᵀx)) equals W x + B̂Â x of the materialized PEFT adapter`, async () => {
      await build(method, 'bundle');
      const bundle = await readJdBundle(join(root, 'bundle'));
      for (const entry of bundle.manifest.adapters) {
        const peft = materializeAdapter(bundle, entry.name);
        await saveLoraAdapter(join(root, 'peft', entry.name), peft);
        const reloaded = await loadLoraAdapter(join(root, 'peft', entry.name));
        for (const mod of bundle.manifest.modules) {
          const r = mod.rank;
          const U = bundle.tensors.get(basisKey(mod.name, entry.cluster, 'U'))!.data;
          const V = bundle.tensors.get(basisKey(mod.name, entry.cluster, 'V'))!.data;
          const S = bundle.tensors.get(sigmaKey(mod.name, entry.name))!.data;
          const norm = entry.modules[mod.name]!.norm;
          const x = gaussianArray(mod.inFeatures, 5);
          const vx = apply(r, mod.inFeatures, (i, j) => V[j * r + i]!, x);
          const svx = Float64Array.from({ length: r }, (_, i) => (method === 'jd-full' ? S.subarray(i * r, (i + 1) * r).reduce((s, v, j) => s + v * vx[j]!, 0) : S[i]! * vx[i]!));
          const serving = Float64Array.from({ length: mod.outFeatures }, (_, i) => norm * U.subarray(i * r, (i + 1) * r).reduce((s, u, j) => s + u * svx[j]!, 0));
          const lm = reloaded.modules.get(mod.name)!;
          const ax = apply(r, mod.inFeatures, (i, j) => lm.A.data[i * mod.inFeatures + j]!, x);
          const peftOut = apply(mod.outFeatures, r, (i, j) => lm.B.data[i * r + j]! * lm.scaling, Float32Array.from(ax));
          const scale = Math.max(...serving.map(Math.abs));
          serving.forEach((y, i) => assert.ok(Math.abs(y - peftOut[i]!) <= 1e-5 * scale, `${entry.name} ${mod.name}[${i}]: ${y} vs ${peftOut[i]}`));
        }
      }
    });
  }

  it('round-trips: the manifest names every adapter with its cluster, digests, errors, norms and scaling', async () => {
    const summary = await build('jd-full', 'bundle');
    const { manifest, tensors } = await readJdBundle(join(root, 'bundle'));
    assert.equal(manifest.revision, summary.revision);
    assert.equal(manifest.baseModel, 'tiny-llama');
    assert.deepEqual(manifest.settings, { method: 'jd-full', rank: 4, clusters: 2, iterations: 10, tolerance: 1e-3, seed: 0, variant: 'alternating', targetErrorPercent: null });
    assert.deepEqual(manifest.modules.map((m) => [m.name, m.outFeatures, m.inFeatures, m.rank]), [...MODULES].map((m) => [m.name, m.out, m.in, 4]));
    assert.equal(manifest.adapters.length, 5);
    for (const a of manifest.adapters) {
      assert.match(a.sha256, /^[0-9a-f]{64}$/);
      assert.ok(a.cluster === 0 || a.cluster === 1);
      for (const mod of MODULES) {
        const e = a.modules[mod.name]!;
        assert.ok(e.error >= 0 && e.error < 1 && e.norm > 0 && e.scaling === 2 && e.rank === 3);
      }
    }
    assert.equal(tensors.size, 2 * 2 * 2 + 5 * 2);
    assert.equal(manifest.clusters.reduce((s, c) => s + c.size, 0), 5);
  });

  it('gives the same revision for the same inputs and settings, and a new one when a setting changes', async () => {
    const a = await build('jd-full', 'b1');
    const b = await build('jd-full', 'b2');
    const c = await build('jd-full', 'b3', 3);
    assert.equal(a.revision, b.revision);
    assert.notEqual(a.revision, c.revision);
  });

  it('replaces an existing bundle at the output path and leaves no temp directories behind', async () => {
    await build('jd-full', 'bundle', 4);
    await build('jd-full', 'bundle', 3);
    assert.equal((await readJdBundle(join(root, 'bundle'))).manifest.settings.rank, 3);
    assert.deepEqual((await fsp.readdir(root)).sort(), ['bundle', 'in']);
  });

  it('rejects a truncated bundle.safetensors naming the file', async () => {
    await build('jd-full', 'bundle');
    const path = join(root, 'bundle', JD_WEIGHTS);
    const bytes = await fsp.readFile(path);
    await fsp.writeFile(path, bytes.subarray(0, bytes.length - 10));
    await assert.rejects(readJdBundle(join(root, 'bundle')), (err: Error) => err.message.includes(path));
  });

  it('rejects a manifest that names a tensor the file lacks, naming the key', async () => {
    await build('jd-full', 'bundle');
    const path = join(root, 'bundle', JD_MANIFEST);
    const manifest = JSON.parse(await fsp.readFile(path, 'utf8')) as { adapters: Array<{ name: string }> };
    manifest.adapters[0]!.name = 'ghost';
    await fsp.writeFile(path, JSON.stringify(manifest));
    await assert.rejects(readJdBundle(join(root, 'bundle')), /missing tensor modules\/model\.layers\.0\.self_attn\.q_proj\/adapters\/ghost\/sigma/);
  });

  it('rejects an unknown method in the manifest, listing the valid ones', async () => {
    await build('jd-full', 'bundle');
    const path = join(root, 'bundle', JD_MANIFEST);
    const manifest = JSON.parse(await fsp.readFile(path, 'utf8')) as { settings: { method: string } };
    manifest.settings.method = 'jd-magic';
    await fsp.writeFile(path, JSON.stringify(manifest));
    await assert.rejects(readJdBundle(join(root, 'bundle')), /manifest\.json: settings\.method is "jd-magic": expected one of jd-full, jd-diag, svd/);
  });
  it('records per-slot convergence and the update path, and the summary carries the sha256 of bundle.safetensors', async () => {
    const summary = await build('jd-diag', 'bundle');
    const { manifest } = await readJdBundle(join(root, 'bundle'));
    // 2 module slots × 2 clusters, each with the iterations it ran and whether it met the tolerance.
    assert.equal(manifest.convergence.length, 4);
    assert.deepEqual(manifest.convergence.map((c) => [c.module, c.cluster]).sort(), MODULES.flatMap((m) => [[m.name, 0], [m.name, 1]]).sort());
    for (const c of manifest.convergence) {
      const fresh = summary.convergence.find((x) => x.module === c.module && x.cluster === c.cluster);
      assert.deepEqual({ ...fresh, history: undefined }, { ...c, history: undefined });
      assert.ok(c.iterations >= 1 && c.iterations <= 10, `${c.module}/${c.cluster}: ${c.iterations} iterations`);
      // Stopping before the cap means the tolerance was met; missing it means running to the cap.
      if (c.iterations < 10) assert.equal(c.converged, true);
      if (!c.converged) assert.equal(c.iterations, 10);
    }
    assert.deepEqual(manifest.update, { path: 'full', previousRevision: null, projected: [], maxErrorPercent: null, reason: 'incremental update not requested' });
    const bytes = await fsp.readFile(join(root, 'bundle', JD_WEIGHTS));
    assert.equal(summary.bundleDigest, createHash('sha256').update(bytes).digest('hex'));
    assert.equal(summary.bundleBytes, bytes.length);
  });

  it('reads a manifest written before convergence and update were recorded as no convergence and path full', async () => {
    await build('jd-full', 'bundle');
    const path = join(root, 'bundle', JD_MANIFEST);
    const manifest = JSON.parse(await fsp.readFile(path, 'utf8')) as Record<string, unknown>;
    delete manifest.convergence;
    delete manifest.update;
    await fsp.writeFile(path, JSON.stringify(manifest));
    const back = (await readJdBundle(join(root, 'bundle'))).manifest;
    assert.deepEqual(back.convergence, []);
    assert.equal(back.update.path, 'full');
    assert.equal(back.update.previousRevision, null);
  });

  it('rejects an unknown update path in the manifest, listing the valid ones', async () => {
    await build('jd-full', 'bundle');
    const path = join(root, 'bundle', JD_MANIFEST);
    const manifest = JSON.parse(await fsp.readFile(path, 'utf8')) as { update: { path: string } };
    manifest.update.path = 'patched';
    await fsp.writeFile(path, JSON.stringify(manifest));
    await assert.rejects(readJdBundle(join(root, 'bundle')), /manifest\.json: update\.path is "patched": expected one of full, projected, recompressed/);
  });
});
