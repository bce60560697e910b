// A serve replica's adapter store and HTTP face on real bundles written by the compressor.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JdKernels } from '../../../worker/compress/kernels.js';
import { compressAdapters } from '../../../worker/compress/run.js';
import { JD_MANIFEST, JD_WEIGHTS } from '../../../worker/formats/jd-bundle.js';
import { AdapterStore, BundleLoadError, type BundleRef } from '../../../worker/serve/adapter-store.js';
import { createServeApp } from '../../../worker/serve/http.js';
import { randomAdapters } from '../compress/builders.js';
import { writeAdapters } from '../compress/fixtures.js';
import { tinyConfig } from '../formats/builders.js';

describe('serve: adapter store', function () {
  this.timeout(60_000);
  const kernels = new JdKernels();
  let root: string;
  const base = tinyConfig();
  after(() => kernels.dispose());
  beforeEach(async () => {
    root = await fsp.mkdtemp(join(tmpdir(), 'tessera-store-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  /** A bundle of `count` adapters named <prefix>0…, with its ref as the operator would send it. */
  async function bundle(cluster: string, count: number, prefix: string, seed = 0): Promise<BundleRef> {
    const written = await writeAdapters(join(root, `in-${cluster}-${seed}`), count, (mod, i) => randomAdapters(1, mod.out, mod.in, 2, 17 * i + seed + mod.out)[0]!);
    const renamed = await Promise.all(written.map(async (a, i) => {
      const dir = join(root, `in-${cluster}-${seed}`, `${prefix}${i}`);
      await fsp.rename(a.dir, dir);
      return { name: `${prefix}${i}`, dir };
    }));
    const out = join(root, 'bundles', `${cluster}-${seed}`);
    const summary = await compressAdapters({ adapters: renamed, method: 'jd-full', rank: 2, clusters: 1, output: out, seed, kernels, now: () => new Date(0) });
    const sha256 = createHash('sha256').update(await fsp.readFile(join(out, JD_WEIGHTS))).digest('hex');
    return { adapterCluster: cluster, revision: summary.revision, uri: out, sha256 };
  }

  it('loads a bundle set next to the active one and serves it only once activated', async () => {
    const store = new AdapterStore(base);
    const r1 = await bundle('pool', 2, 'a');
    await store.load({ revision: 'set1', bundles: [r1] });
    assert.equal(store.activeRevision, '');
    assert.deepEqual(store.adapterNames(), [], 'loading alone serves nothing');
    store.activate('set1');
    assert.deepEqual(store.adapterNames(), ['a0', 'a1']);
    assert.equal(store.resolve('a1')?.kind, 'bundle');

    const r2 = await bundle('pool', 3, 'a', 1);
    const other = await bundle('news', 1, 'n');
    await store.load({ revision: 'set2', bundles: [r2, other] });
    assert.deepEqual(store.adapterNames(), ['a0', 'a1'], 'still the active set while the next one is staged');
    store.activate('set2');
    assert.deepEqual(store.adapterNames(), ['a0', 'a1', 'a2', 'n0']);
    assert.equal(store.resolve('a9'), undefined);
  });

  it('refuses to activate a revision it has not loaded, naming what it has', async () => {
    const store = new AdapterStore(base);
    await store.load({ revision: 'set1', bundles: [await bundle('pool', 1, 'a')] });
    assert.throws(() => store.activate('set9'), (err: Error) => err instanceof BundleLoadError && /revision set9 is not loaded: load it before activating it \(loaded: set1\)/.test(err.message));
  });

  it('refuses a bundle whose bytes do not match the digest, and keeps serving the active set', async () => {
    const store = new AdapterStore(base);
    const good = await bundle('pool', 1, 'a');
    await store.load({ revision: 'set1', bundles: [good] });
    store.activate('set1');
    const bad = await bundle('pool', 2, 'a', 5);
    const weights = join(bad.uri, JD_WEIGHTS);
    const bytes = await fsp.readFile(weights);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1);
    await fsp.writeFile(weights, bytes);
    await assert.rejects(store.load({ revision: 'set2', bundles: [bad] }), new RegExp(`bundle of AdapterCluster pool at ${bad.uri}: bundle\\.safetensors has sha256 [0-9a-f]{64}, expected ${bad.sha256}`));
    assert.equal(store.activeRevision, 'set1');
    assert.deepEqual(store.adapterNames(), ['a0']);
  });

  it('refuses a bundle for another model shape, naming the module and both shapes', async () => {
    const wide = new AdapterStore(tinyConfig('llama', { hidden_size: 32, intermediate_size: 64 }));
    await assert.rejects(wide.load({ revision: 's', bundles: [await bundle('pool', 1, 'a')] }),
      /module model\.layers\.0\.self_attn\.q_proj is \[16, 16\] in the bundle, but \[32, 32\] in the base model/);
  });

  it('refuses a manifest of another revision and a corrupt manifest, naming the file', async () => {
    const store = new AdapterStore(base);
    const ref = await bundle('pool', 1, 'a');
    await assert.rejects(store.load({ revision: 's', bundles: [{ ...ref, revision: 'f'.repeat(64) }] }), /the manifest says revision [0-9a-f]{12}, expected ffffffffffff/);
    await fsp.writeFile(join(ref.uri, JD_MANIFEST), '{"format":');
    await assert.rejects(store.load({ revision: 's2', bundles: [{ ...ref, sha256: '' }] }), new RegExp(`AdapterCluster pool at ${ref.uri}: .*manifest\\.json`));
  });

  it('refuses adapter names that two AdapterClusters share', async () => {
    const store = new AdapterStore(base);
    const one = await bundle('pool', 1, 'x');
    const two = await bundle('news', 1, 'x', 3);
    await assert.rejects(store.load({ revision: 's', bundles: [one, two] }), /adapter "x0" is in the bundles of both AdapterCluster pool and news/);
  });

  it('answers the OpenAI models routes and a readiness probe', async () => {
    const store = new AdapterStore(base);
    await store.load({ revision: 'set1', bundles: [await bundle('pool', 2, 'a')] });
    store.activate('set1');
    let ready = false;
    const app = createServeApp({ store, baseModelId: 'tiny', createdAt: 1, ready: () => ready });
    try {
      assert.equal((await app.inject({ url: '/health' })).statusCode, 503);
      ready = true;
      const health = await app.inject({ url: '/health' });
      assert.equal(health.statusCode, 200);
      assert.deepEqual(health.json(), { status: 'ok', revision: 'set1', adapters: 2 });
      const models = (await app.inject({ url: '/v1/models' })).json() as { object: string; data: { id: string; parent: string | null }[] };
      assert.equal(models.object, 'list');
      assert.deepEqual(models.data.map((m) => [m.id, m.parent]), [['tiny', null], ['a0', 'tiny'], ['a1', 'tiny']]);
      const missing = await app.inject({ url: '/v1/models/nope' });
      assert.equal(missing.statusCode, 404);
      assert.equal((missing.json() as { error: { code: string } }).error.code, 'model_not_found');
    } finally {
      await app.close();
    }
  });
});
