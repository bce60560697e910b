// The compress workload as the AdapterCluster Job runs it: spec file in, bundle revision out under
// the output folder, and reports (metrics, artifact, completion) that become the object's status.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { AdapterClusterSpec } from '../../../operator/api/v1alpha1/index.js';
import { tesseraStatusMapper } from '../../../operator/status/kind-mappers.js';
import { emptyState, foldReport } from '../../../operator/status/state.js';
import type { Artifact, Completion } from '../../../operator/status/wire.js';
import { JD_WEIGHTS, readJdBundle } from '../../../worker/formats/jd-bundle.js';
import { ADAPTER_WEIGHTS } from '../../../worker/formats/peft.js';
import { COMPLETION_KEYS, runCompress } from '../../../worker/modes/compress.js';
import { WorkloadError } from '../../../worker/modes/workload.js';
import type { Reporter } from '../../../worker/report/reporter.js';
import { objectRef } from '../status/harness.js';
import { sharedBasisAdapters } from '../compress/builders.js';
import { MODULES, writeAdapters } from '../compress/fixtures.js';
import { tinyConfigJson } from '../formats/builders.js';

/** Records what the workload reports, in order; the rest of the Reporter is not used by compress. */
class RecordingReporter {
  readonly metricsSent: Record<string, number>[] = [];
  readonly artifacts: Artifact[] = [];
  readonly completions: Completion[] = [];
  progress(): void {}
  metrics(values: Record<string, number>): void {
    this.metricsSent.push(values);
  }
  artifact(a: Artifact): void {
    this.artifacts.push(a);
  }
  completion(c: Completion): void {
    this.completions.push(c);
  }
}

describe('the compress workload', function () {
  this.timeout(60_000);
  let root: string;
  let adapters: Array<{ name: string; dir: string }>;
  beforeEach(async () => {
    root = await fsp.mkdtemp(join(tmpdir(), 'tessera-compress-mode-'));
    await fsp.mkdir(join(root, 'models', 'tiny'), { recursive: true });
    await fsp.writeFile(join(root, 'models', 'tiny', 'config.json'), JSON.stringify(tinyConfigJson()));
    const byModule = new Map(MODULES.map((m) => [m.name, sharedBasisAdapters(6, m.out, m.in, 2, { seed: m.out })]));
    adapters = await writeAdapters(join(root, 'adapters'), 6, (m, i) => byModule.get(m.name)![i]!);
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  /** Runs the workload as the Job would, with the operator's resolved locations (file:// → path). */
  const run = async (names: readonly string[], compression: Partial<AdapterClusterSpec['compression']> = {}, pins: Record<string, string> = {}): Promise<{ reporter: RecordingReporter }> => {
    const chosen = adapters.filter((a) => names.includes(a.name));
    const spec: AdapterClusterSpec = {
      baseModel: { uri: 'file:///models/tiny' },
      adapters: chosen.map((a) => ({ name: a.name, uri: `file:///adapters/${a.name}`, ...(pins[a.name] ? { sha256: pins[a.name] } : {}) })),
      compression: { method: 'jd-full', rank: 2, clusters: 1, iterations: 20, incremental: true, ...compression },
      output: { uri: 'file:///bundles/pool' },
      resources: { gpus: 0 },
    };
    const locations: Record<string, string> = { 'file:///models/tiny': join(root, 'models', 'tiny'), 'file:///bundles/pool': join(root, 'bundles', 'pool') };
    for (const a of chosen) locations[`file:///adapters/${a.name}`] = a.dir;
    const recorder = new RecordingReporter();
    await runCompress({ spec: { spec, locations }, specFile: 'spec.json', reporter: recorder as unknown as Reporter, log: pino({ level: 'silent' }) });
    return { reporter: recorder };
  };
  const outputs = (r: RecordingReporter): Record<string, string> => r.completions.at(-1)?.outputs ?? {};

  it('writes the bundle under its revision and reports its digest, which the status mapping puts in status.bundleDigest', async () => {
    const { reporter } = await run(['a0', 'a1', 'a2', 'a3']);
    const out = outputs(reporter);
    const revision = out[COMPLETION_KEYS.revision] ?? '';
    const weights = await fsp.readFile(join(root, 'bundles', 'pool', revision, JD_WEIGHTS));
    const digest = createHash('sha256').update(weights).digest('hex');
    assert.equal(out[COMPLETION_KEYS.bundleDigest], digest);
    assert.equal(out[COMPLETION_KEYS.updatePath], 'full');
    assert.deepEqual(reporter.artifacts, [{ name: 'bundle', uri: `file:///bundles/pool/${revision}/${JD_WEIGHTS}`, sha256: digest, sizeBytes: weights.length }]);

    const state = emptyState(objectRef('pool', { kind: 'AdapterCluster' }));
    foldReport(state, { seq: 1, object: state.ref, pod: 'p', unixMs: 1, body: 'completion', completion: reporter.completions[0]! }, 'p', 0);
    const status = tesseraStatusMapper(state);
    assert.equal(status.bundleDigest, digest);
    assert.equal(status.revision, revision);
    assert.equal(status.adapterCount, 4);
  });

  it('when the revision already exists, keeps that bundle and reports the digest of its bytes', async () => {
    const first = outputs((await run(['a0', 'a1'], { incremental: false })).reporter);
    const weights = join(root, 'bundles', 'pool', first[COMPLETION_KEYS.revision] ?? '', JD_WEIGHTS);
    // Stand-in for a rerun whose float rounding differs: the file on disk is what servers will hash.
    await fsp.appendFile(weights, Buffer.from([0]));
    const again = outputs((await run(['a0', 'a1'], { incremental: false })).reporter);
    assert.equal(again[COMPLETION_KEYS.revision], first[COMPLETION_KEYS.revision]);
    assert.equal(again[COMPLETION_KEYS.bundleDigest], createHash('sha256').update(await fsp.readFile(weights)).digest('hex'));
    assert.notEqual(again[COMPLETION_KEYS.bundleDigest], first[COMPLETION_KEYS.bundleDigest]);
  });

  it('reports convergence over gRPC as a summary: slots fitted, how many met the tolerance, the most iterations', async () => {
    const { reporter } = await run(['a0', 'a1', 'a2', 'a3']);
    const metrics = reporter.metricsSent.at(-1)!;
    const { manifest } = await readJdBundle(join(root, 'bundles', 'pool', outputs(reporter)[COMPLETION_KEYS.revision] ?? ''));
    assert.equal(metrics.fittedSlots, 2, 'two module slots, one cluster');
    assert.equal(metrics.convergedSlots, manifest.convergence.filter((c) => c.converged).length);
    assert.equal(metrics.maxIterations, Math.max(...manifest.convergence.map((c) => c.iterations)));
    // Adapters that share a rank-2 basis, fitted at rank 2: the subspace settles well before 20 iterations.
    assert.equal(metrics.convergedSlotsPercent, 100);
    assert.ok(metrics.maxIterations! < 20);
  });

  it('extends the newest revision by projection when incremental, and compresses from scratch when not', async () => {
    const first = outputs((await run(['a0', 'a1', 'a2', 'a3'])).reporter);
    const { reporter } = await run(['a0', 'a1', 'a2', 'a3', 'a4', 'a5'], { targetErrorPercent: 1 });
    const second = outputs(reporter);
    assert.equal(second[COMPLETION_KEYS.updatePath], 'projected');
    assert.equal(reporter.metricsSent.at(-1)?.projectedAdapters, 2);
    const { manifest } = await readJdBundle(join(root, 'bundles', 'pool', second[COMPLETION_KEYS.revision] ?? ''));
    assert.equal(manifest.update.previousRevision, first[COMPLETION_KEYS.revision]);
    assert.deepEqual(manifest.update.projected, ['a4', 'a5']);
    // Both revisions stay: a LoRAServer may still serve the first.
    assert.deepEqual((await fsp.readdir(join(root, 'bundles', 'pool'))).sort(), [first[COMPLETION_KEYS.revision], second[COMPLETION_KEYS.revision]].sort());

    const scratch = outputs((await run(['a0', 'a1', 'a2', 'a3', 'a4', 'a5'], { targetErrorPercent: 1, incremental: false })).reporter);
    assert.equal(scratch[COMPLETION_KEYS.updatePath], 'full');
  });

  it('fails with DigestMismatch when a pinned digest does not match, and AdapterUnreadable when an adapter does not fit the base', async () => {
    const wrong = createHash('sha256').update('something else').digest('hex');
    await assert.rejects(run(['a0', 'a1'], {}, { a1: wrong }), (err: unknown) => {
      assert.ok(err instanceof WorkloadError);
      assert.deepEqual([err.reason, err.retryable], ['DigestMismatch', false]);
      assert.match(err.message, new RegExp(`^adapter a1: .*${ADAPTER_WEIGHTS} has sha256 [0-9a-f]{64}, but the spec pins ${wrong}`));
      return true;
    });
    await fsp.writeFile(join(root, 'models', 'tiny', 'config.json'), JSON.stringify(tinyConfigJson('llama', { num_key_value_heads: 4 })));
    await assert.rejects(run(['a0', 'a1']), (err: unknown) => {
      assert.ok(err instanceof WorkloadError);
      assert.equal(err.reason, 'AdapterUnreadable');
      assert.match(err.message, /^adapter a0 does not fit the base model \(1 problem\):\n {2}module model\.layers\.0\.self_attn\.v_proj: lora_B is \[8, 2\], expected \[16, 2\]/);
      return true;
    });
    assert.deepEqual(await fsp.readdir(join(root, 'bundles', 'pool')), [], 'nothing half-written');
  });
});
