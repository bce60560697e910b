// The operator on a real control plane: apply a resource, get its children, watch real worker
// processes train, compress and serve, reporting through the authenticated status hub into
// .status; delete, get cleaned up.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type V1Deployment, type V1Job } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { waitFor } from '../../cluster/probe.js';
import { session } from '../../cluster/session.js';
import { clients } from '../helpers.js';
import { condition, startOperator, type OperatorFixture } from './fixture.js';
import { MODULES, writeAdapters } from '../../unit/compress/fixtures.js';
import { randomAdapters } from '../../unit/compress/builders.js';
import { readJdBundle } from '../../../worker/formats/jd-bundle.js';
import { loadMobyDick } from '../../../worker/data/corpora.js';
import { loadModel } from '../../../worker/modes/load-model.js';
import { modelSparsity } from '../../../worker/train/sparse/prune-model.js';

/** Host processes the process node started for a pod: it sets POD_NAME in each one's environment. */
function processesOfPod(pod: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0').includes(`POD_NAME=${pod}`)) pids.push(Number(entry));
    } catch {
      // gone already, or not ours to read
    }
  }
  return pids;
}

type Obj = { metadata: { generation?: number }; status?: { revision?: string; bundleUri?: string; adapterCount?: number; parameterSavedPercent?: number; adapters?: { name: string; reconstructionErrorPercent: number }[]; conditions?: { type: string; status: string; reason: string; message: string }[]; stage?: string; observedGeneration?: number; jobName?: string; readyReplicas?: number; endpoint?: string } };

describe('the operator on the local control plane', function () {
  this.timeout(240_000);
  let op: OperatorFixture;
  let ns: string;
  let data: string;
  const get = async (plural: string, name: string) => (await op.get(plural, name)) as unknown as Obj;

  before(async function () {
    if (session().kind !== 'local') this.skip();
    op = await startOperator('operator');
    ({ ns, data } = op);
  });

  after(async () => {
    await op?.stop();
  });

  const sft = (name: string, spec: Record<string, unknown> = {}) => ({
    apiVersion: 'tessera.dev/v1alpha1', kind: 'SparseFineTune',
    metadata: { name, namespace: ns },
    spec: {
      baseModel: { uri: `file://${data}/models/tiny` },
      dataset: { uri: `file://${data}/data/train.jsonl` },
      method: 'lora',
      adapter: { rank: 4 },
      training: { steps: 10 },
      output: { uri: `file://${data}/out/${name}`, mergedModel: false, adapter: true } as Record<string, unknown>,
      backoffLimit: 1,
      ...spec,
    },
  });
  /**
   * A setting that is not built yet (a base model fetched over https, which the operator passes to
   * the worker as the URL itself): its worker fails at once, naming the field, before reading a file.
   */
  const notImplemented = (name: string) => sft(name, { baseModel: { uri: 'https://models.example/tiny', sha256: 'a'.repeat(64) } });

  it('runs a SparseFineTune as a Job whose worker reports its failure reason into the status', async () => {
    const applied = await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(notImplemented('first')) });
    assert.equal(applied.code, 0, applied.stderr);
    let job: V1Job | undefined;
    await waitFor('the Job of SparseFineTune first', async () => {
      const jobs = await clients().batch.listNamespacedJob({ namespace: ns, labelSelector: 'tessera.dev/name=first' });
      job = jobs.items[0];
      return job !== undefined;
    }, 30_000);
    const pod = job?.spec?.template.spec;
    assert.deepEqual(pod?.containers[0]?.args?.slice(0, 2), ['train', '--spec']);
    assert.equal(pod?.containers[0]?.securityContext?.runAsNonRoot, true);
    assert.equal(job?.metadata?.ownerReferences?.[0]?.kind, 'SparseFineTune');
    assert.equal(job?.spec?.backoffLimit, 1);

    // The worker starts as a real process, reads its spec, reports NotImplemented for the https base model over gRPC and exits 3.
    let obj: Obj | undefined;
    await waitFor('status Failed with the worker\'s reason', async () => {
      obj = await get('sparsefinetunes', 'first');
      // The Job's own failure may reach the status a moment before the worker's reason replaces it.
      return condition(obj, 'Failed')?.status === 'True' && obj.status?.stage === 'Failed' && condition(obj, 'Failed')?.reason === 'NotImplemented';
    }, 90_000);
    assert.match(condition(obj!, 'Ready')?.message ?? '', /spec\.baseModel\.uri: fetching https:\/\/models\.example\/tiny over http\(s\) is not implemented yet/);
    assert.equal(obj!.status?.observedGeneration, obj!.metadata.generation);
    assert.equal(obj!.status?.jobName, job?.metadata?.name);
    const events = await clients().core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=first' });
    assert.ok(events.items.some((e) => e.reason === 'JobCreated'), 'a JobCreated event was recorded');
  });

  it('starts a new run when the spec changes and garbage-collects children on delete', async () => {
    const before = (await get('sparsefinetunes', 'first')).status?.jobName;
    const changed = notImplemented('first');
    changed.spec.training.steps = 20;
    assert.equal((await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(changed) })).code, 0);
    await waitFor('a new Job for generation 2', async () => {
      const o = await get('sparsefinetunes', 'first');
      return o.status?.observedGeneration === 2 && o.status.jobName !== before;
    }, 30_000);
    assert.equal((await session().kubectl(['delete', '-n', ns, 'sft/first', '--wait=true'])).code, 0);
    await waitFor('the Jobs and spec ConfigMaps to be garbage-collected', async () => {
      const jobs = await clients().batch.listNamespacedJob({ namespace: ns, labelSelector: 'tessera.dev/name=first' });
      const cms = await clients().core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'tessera.dev/name=first' });
      return jobs.items.length === 0 && cms.items.length === 0;
    }, 60_000);
  });

  it('makes an AdapterCluster wait for a SparseFineTune that enrolls into it', async () => {
    const run = sft('trainer');
    Object.assign(run.spec.output, { enrollInto: { adapterCluster: 'pool', adapterName: 'trained' } });
    const ac = {
      apiVersion: 'tessera.dev/v1alpha1', kind: 'AdapterCluster', metadata: { name: 'pool', namespace: ns },
      spec: { baseModel: { uri: `file://${data}/models/tiny` }, adapters: [{ name: 'a', uri: `file://${data}/adapters/a` }], output: { uri: `file://${data}/bundles/pool` } },
    };
    assert.equal((await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [run, ac] }) })).code, 0);
    let obj: Obj | undefined;
    await waitFor('the AdapterCluster to wait for its input', async () => {
      obj = await get('adapterclusters', 'pool');
      return obj.status?.stage === 'WaitingForInputs';
    }, 30_000);
    assert.equal(condition(obj!, 'Progressing')?.reason, 'InputNotReady');
    assert.match(condition(obj!, 'Progressing')?.message ?? '', /SparseFineTune trainer/);
    // The two reconcilers run independently: the SparseFineTune's lineage may land after the AdapterCluster waits.
    let lineage: unknown;
    await waitFor('the SparseFineTune to record where its adapter goes', async () => {
      lineage = ((await get('sparsefinetunes', 'trainer')).status as { lineage?: unknown } | undefined)?.lineage;
      return lineage !== undefined;
    }, 10_000);
    assert.deepEqual(lineage, { adapterCluster: 'pool', adapterName: 'trained' });
  });

  /** Moby Dick paragraphs as JSON Lines: enough text for the tiny model to fit a little of it. */
  const writeText = (file: string): void => {
    const paragraphs = loadMobyDick().slice(1, 6).flatMap((d) => d.text.split(/\n\s*\n/)).map((p) => p.trim()).filter((p) => p.length > 80);
    writeFileSync(file, paragraphs.map((text) => JSON.stringify({ text })).join('\n'));
  };

  it('prunes and fine-tunes a sparsepeft SparseFineTune end to end: Succeeded, metrics, outputs with digests, a merged model as sparse as asked', async () => {
    writeText(join(data, 'data', 'moby.jsonl'));
    const run = sft('sparse', {
      dataset: { uri: `file://${data}/data/moby.jsonl` },
      method: 'sparsepeft',
      sparsity: { targetPercent: 50, pruner: 'wanda' },
      calibration: { samples: 16, sequenceLength: 64 },
      training: { steps: 10, batchSize: 4, sequenceLength: 64, learningRate: '1e-2' },
      output: { uri: `file://${data}/out/sparse` },
    });
    assert.equal((await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(run) })).code, 0);
    type Trained = Obj & { status?: { metrics?: Record<string, number> & { layers?: { index: number; sparsityPercent: number; rank: number; reconstructionError: number }[] }; outputs?: { modelUri?: string; adapterUri?: string; digests?: { name: string; sha256: string }[] } } };
    let obj: Trained | undefined;
    await waitFor('the SparseFineTune to succeed with its outputs in the status', async () => {
      obj = (await get('sparsefinetunes', 'sparse')) as Trained;
      // A failed run ends the wait at once, so the assertion below shows its reason.
      return condition(obj, 'Failed')?.status === 'True' || (condition(obj, 'Succeeded')?.status === 'True' && obj.status?.outputs?.modelUri !== undefined && obj.status.metrics?.perplexityAfter !== undefined);
    }, 150_000);
    assert.notEqual(condition(obj!, 'Failed')?.status, 'True', condition(obj!, 'Failed')?.message);
    const job = (await clients().batch.listNamespacedJob({ namespace: ns, labelSelector: 'tessera.dev/name=sparse' })).items[0];
    assert.equal(job?.status?.succeeded, 1);
    assert.equal(obj!.status?.stage, 'Succeeded');
    const metrics = obj!.status?.metrics ?? {};
    assert.equal(metrics.achievedSparsityPercent, 50);
    assert.ok((metrics.perplexityBefore ?? 0) > 0 && (metrics.perplexityAfter ?? 0) > 0, JSON.stringify(metrics));
    assert.ok(Number.isFinite(metrics.loss), JSON.stringify(metrics));
    assert.deepEqual(metrics.layers?.map((l) => [l.index, l.sparsityPercent, l.rank]), [[0, 50, 4], [1, 50, 4]]);
    const outputs = obj!.status?.outputs;
    assert.equal(outputs?.modelUri, `file://${data}/out/sparse/model`);
    assert.equal(outputs?.adapterUri, `file://${data}/out/sparse/adapter`);
    const weights = outputs?.digests?.find((d) => d.name === 'model/model.safetensors');
    assert.equal(weights?.sha256, createHash('sha256').update(readFileSync(join(data, 'out', 'sparse', 'model', 'model.safetensors'))).digest('hex'));
    // The merged model on disk, read back: exactly half of every block's linear weights are zero.
    const merged = await loadModel(join(data, 'out', 'sparse', 'model'));
    const sparsity = modelSparsity(merged.config, merged.weights);
    assert.deepEqual([sparsity.percent, ...sparsity.layers.map((l) => l.sparsityPercent)], [50, 50, 50]);
  });

  it('feeds the adapters of SparseFineTunes into the AdapterCluster that enrolls or references them', async () => {
    writeText(join(data, 'data', 'moby.jsonl'));
    const trainer = (name: string, extra: Record<string, unknown> = {}) => sft(name, {
      dataset: { uri: `file://${data}/data/moby.jsonl` },
      training: { steps: 5, batchSize: 4, sequenceLength: 32, learningRate: '1e-2' },
      output: { uri: `file://${data}/out/${name}`, mergedModel: false, adapter: true, ...extra },
    });
    const ac = {
      apiVersion: 'tessera.dev/v1alpha1', kind: 'AdapterCluster', metadata: { name: 'chain', namespace: ns },
      spec: {
        baseModel: { uri: `file://${data}/models/tiny` },
        adapters: [{ name: 'referenced', sparseFineTune: 'chain-ref' }],
        compression: { method: 'jd-full', rank: 4, clusters: 1, iterations: 5 },
        output: { uri: `file://${data}/bundles/chain` },
      },
    };
    const items = [trainer('chain-ref'), trainer('chain-enroll', { enrollInto: { adapterCluster: 'chain', adapterName: 'enrolled' } }), ac];
    assert.equal((await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }) })).code, 0);
    let obj: Obj | undefined;
    await waitFor('the AdapterCluster to compress both trained adapters', async () => {
      obj = await get('adapterclusters', 'chain');
      return condition(obj, 'Failed')?.status === 'True' || (condition(obj, 'Ready')?.status === 'True' && obj.status?.revision !== undefined);
    }, 180_000);
    assert.notEqual(condition(obj!, 'Failed')?.status, 'True', condition(obj!, 'Failed')?.message);
    assert.equal(obj!.status?.adapterCount, 2);
    assert.deepEqual(obj!.status?.adapters?.map((a) => a.name).sort(), ['enrolled', 'referenced']);
    for (const name of ['chain-ref', 'chain-enroll']) {
      const trained = (await get('sparsefinetunes', name)) as Obj & { status?: { outputs?: { adapterUri?: string } } };
      assert.equal(trained.status?.outputs?.adapterUri, `file://${data}/out/${name}/adapter`);
    }
  });

  it('compresses an AdapterCluster\'s adapters in a real worker and reports the bundle revision', async () => {
    const byModule = new Map(MODULES.map((m, j) => [m.name, randomAdapters(4, m.out, m.in, 2, 10 + j)]));
    const written = await writeAdapters(join(data, 'adapters'), 4, (m, i) => byModule.get(m.name)![i]!);
    const ac = {
      apiVersion: 'tessera.dev/v1alpha1', kind: 'AdapterCluster', metadata: { name: 'jd', namespace: ns },
      spec: {
        baseModel: { uri: `file://${data}/models/tiny` },
        adapters: written.map((a) => ({ name: a.name, uri: `file://${a.dir}` })),
        compression: { method: 'jd-full', rank: 4, clusters: 1, iterations: 5 },
        output: { uri: `file://${data}/bundles/jd` },
      },
    };
    assert.equal((await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(ac) })).code, 0);
    let obj: Obj | undefined;
    await waitFor('the AdapterCluster to be Ready with a bundle revision', async () => {
      obj = await get('adapterclusters', 'jd');
      return condition(obj, 'Ready')?.status === 'True' && obj.status?.revision !== undefined;
    }, 120_000);
    assert.equal(obj!.status?.adapterCount, 4);
    assert.equal(obj!.status?.stage, 'Succeeded');
    assert.ok((obj!.status?.parameterSavedPercent ?? 0) > 0, 'parameters were saved');
    assert.equal(obj!.status?.bundleUri, `file://${data}/bundles/jd/${obj!.status?.revision}`);
    assert.deepEqual(obj!.status?.adapters?.map((a) => a.name).sort(), ['a0', 'a1', 'a2', 'a3']);
    const bundle = await readJdBundle(join(data, 'bundles', 'jd', obj!.status?.revision ?? ''));
    assert.equal(bundle.manifest.revision, obj!.status?.revision);
  });

  it('retries a worker pod that crashes, within the Job\'s backoffLimit, and still delivers the bundle', async () => {
    const byModule = new Map(MODULES.map((m, j) => [m.name, randomAdapters(3, m.out, m.in, 2, 40 + j)]));
    const written = await writeAdapters(join(data, 'adapters-crash'), 3, (m, i) => byModule.get(m.name)![i]!);
    const ac = {
      apiVersion: 'tessera.dev/v1alpha1', kind: 'AdapterCluster', metadata: { name: 'crashy', namespace: ns },
      spec: {
        baseModel: { uri: `file://${data}/models/tiny` },
        adapters: written.map((a) => ({ name: a.name, uri: `file://${a.dir}` })),
        compression: { method: 'jd-full', rank: 2, clusters: 1, iterations: 5 },
        output: { uri: `file://${data}/bundles/crashy` },
      },
    };
    assert.equal((await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(ac) })).code, 0);
    // Kill the first worker process the moment it exists, as an OOM kill or a node fault would.
    let victim = '';
    await waitFor('the first worker process of AdapterCluster crashy', async () => {
      const pods = (await clients().core.listNamespacedPod({ namespace: ns, labelSelector: 'tessera.dev/name=crashy' })).items;
      for (const pod of pods) {
        const pids = processesOfPod(pod.metadata?.name ?? '');
        for (const pid of pids) process.kill(pid, 'SIGKILL');
        if (pids.length > 0) victim = pod.metadata?.name ?? '';
      }
      return victim !== '';
    }, 60_000, 20);
    let obj: Obj | undefined;
    await waitFor('the AdapterCluster Ready after a retry', async () => {
      obj = await get('adapterclusters', 'crashy');
      return condition(obj, 'Ready')?.status === 'True' && obj.status?.revision !== undefined;
    }, 120_000);
    const job = (await clients().batch.listNamespacedJob({ namespace: ns, labelSelector: 'tessera.dev/name=crashy' })).items[0];
    const failed = job?.status?.failed ?? 0;
    // At least the killed pod; a further failure would still be within backoffLimit, so say what it was.
    if (failed !== 1) console.warn(`      ${failed} failed pods: ${JSON.stringify((await clients().core.listNamespacedPod({ namespace: ns, labelSelector: 'tessera.dev/name=crashy' })).items.map((p) => [p.metadata?.name, p.status?.phase, p.status?.containerStatuses?.[0]?.state?.terminated]))}`);
    assert.ok(failed >= 1 && failed <= 2, `the killed pod counted against backoffLimit 2 (failed: ${failed})`);
    assert.equal(job?.status?.succeeded, 1);
    const pods = (await clients().core.listNamespacedPod({ namespace: ns, labelSelector: 'tessera.dev/name=crashy' })).items;
    assert.ok(pods.some((p) => p.metadata?.name === victim && p.status?.phase === 'Failed'), 'the killed pod is Failed');
    assert.ok(pods.some((p) => p.metadata?.name !== victim && p.status?.phase === 'Succeeded'), 'a replacement pod succeeded');
    assert.equal(condition(obj!, 'Succeeded')?.status, 'True');
  });

  it('serves a LoRAServer from a Deployment and Service and reports its replicas', async () => {
    const ls = {
      apiVersion: 'tessera.dev/v1alpha1', kind: 'LoRAServer', metadata: { name: 'api', namespace: ns },
      spec: { baseModel: { uri: `file://${data}/models/tiny` }, replicas: 1, resources: { gpus: 1 } },
    };
    assert.equal((await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(ls) })).code, 0);
    let deployment: V1Deployment | undefined;
    await waitFor('the Deployment and Service', async () => {
      deployment = (await clients().apps.listNamespacedDeployment({ namespace: ns, labelSelector: 'tessera.dev/name=api' })).items[0];
      const services = await clients().core.listNamespacedService({ namespace: ns, labelSelector: 'tessera.dev/name=api' });
      return deployment !== undefined && services.items.length === 1;
    }, 30_000);
    assert.equal(deployment?.spec?.template.spec?.containers[0]?.resources?.limits?.['nvidia.com/gpu'], '1');
    assert.equal(deployment?.spec?.template.spec?.containers[0]?.readinessProbe?.httpGet?.path, '/health');
    let obj: Obj | undefined;
    await waitFor('the LoRAServer Ready with its replica serving', async () => {
      obj = await get('loraservers', 'api');
      return condition(obj, 'Ready')?.status === 'True' && obj.status?.observedGeneration === obj.metadata.generation;
    }, 90_000);
    assert.equal(obj!.status?.endpoint, `http://api.${ns}.svc:8000/v1`);
    assert.equal(obj!.status?.readyReplicas, 1);
    const [pod] = (await clients().core.listNamespacedPod({ namespace: ns, labelSelector: 'tessera.dev/name=api' })).items;
    const models = await (await fetch(`http://${pod?.status?.podIP}:8000/v1/models`)).json() as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), ['api'], 'the base model alone: no AdapterCluster, no raw adapters');
  });
});
