// A LoRAServer's bundle rollout end to end: an AdapterCluster compresses adapters in a real
// worker, two real serve replicas load its bundle, a new revision reaches them by directives
// (canary first, no restarts), and a revision they cannot load leaves them on the old one.
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { waitFor } from '../../cluster/probe.js';
import { session } from '../../cluster/session.js';
import { randomAdapters } from '../../unit/compress/builders.js';
import { writeAdapters } from '../../unit/compress/fixtures.js';
import { tinyConfigJson } from '../../unit/formats/builders.js';
import { clients, podsOf } from '../helpers.js';
import { condition, startOperator, type OperatorFixture } from './fixture.js';

interface ServerStatus {
  bundleRevision?: { desired?: string; current?: string; active?: { pod: string; revision: string }[]; failed?: { revision: string; pod: string; message: string } };
  bundles?: { adapterCluster: string; revision: string }[];
  readyReplicas?: number;
}

describe('LoRAServer bundle rollout on the local control plane', function () {
  this.timeout(300_000);
  let op: OperatorFixture;
  let firstPods: Map<string, string>;
  let currentBefore = '';

  before(async function () {
    if (session().kind !== 'local') this.skip();
    op = await startOperator('rollout');
    mkdirSync(join(op.data, 'models/wide'), { recursive: true });
    writeFileSync(join(op.data, 'models/wide/config.json'), JSON.stringify(tinyConfigJson('llama', { hidden_size: 32, intermediate_size: 64 })));
  });

  after(async () => {
    await op?.stop();
  });

  const kubectlApply = async (obj: unknown): Promise<void> => {
    const r = await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(obj) });
    assert.equal(r.code, 0, r.stderr);
  };

  /** The AdapterCluster `pool`, compressing these adapters for this base model into one shared output folder. */
  const applyPool = (adapters: { name: string; dir: string }[], base = 'tiny') => kubectlApply({
    apiVersion: 'tessera.dev/v1alpha1', kind: 'AdapterCluster', metadata: { name: 'pool', namespace: op.ns },
    spec: {
      baseModel: { uri: `file://${op.data}/models/${base}` },
      adapters: adapters.map((a) => ({ name: a.name, uri: `file://${a.dir}` })),
      compression: { method: 'jd-full', rank: 2, clusters: 1, iterations: 5 },
      output: { uri: `file://${op.data}/bundles` },
    },
  });

  const poolRevision = async (after?: string): Promise<string> => {
    let revision = '';
    await waitFor('a new bundle revision of AdapterCluster pool', async () => {
      revision = ((await op.get('adapterclusters', 'pool')).status?.revision as string | undefined) ?? '';
      return revision !== '' && revision !== after;
    }, 120_000);
    return revision;
  };

  const server = async () => (await op.get('loraservers', 'srv')) as { status?: ServerStatus & { conditions?: { type: string; status: string; reason: string; message: string }[] } };
  const replicas = async (): Promise<V1Pod[]> => (await podsOf(op.ns, 'tessera.dev/name=srv')).filter((p) => !p.metadata?.deletionTimestamp);
  const models = async (pod: V1Pod): Promise<string[]> => {
    const body = await (await fetch(`http://${pod.status?.podIP}:8000/v1/models`)).json() as { data: { id: string }[] };
    return body.data.map((m) => m.id).sort();
  };
  /** Every replica reports the current set active, and there are two of them. */
  const settled = (s: ServerStatus | undefined): boolean => {
    const current = s?.bundleRevision?.current;
    const active = s?.bundleRevision?.active ?? [];
    return current !== undefined && active.length === 2 && active.every((a) => a.revision === current);
  };

  it('starts two replicas on the AdapterCluster\'s bundle and records the revision set every replica serves', async () => {
    const v1 = await writeAdapters(join(op.data, 'adapters/v1'), 2, (mod, i) => randomAdapters(1, mod.out, mod.in, 2, 100 + i)[0]!);
    await applyPool(v1);
    const r1 = await poolRevision();
    await kubectlApply({
      apiVersion: 'tessera.dev/v1alpha1', kind: 'LoRAServer', metadata: { name: 'srv', namespace: op.ns },
      spec: { baseModel: { uri: `file://${op.data}/models/tiny` }, adapterClusters: ['pool'], replicas: 2, resources: { gpus: 0 } },
    });
    let status: ServerStatus | undefined;
    await waitFor('both replicas serving the first bundle set', async () => {
      const obj = await server();
      status = obj.status;
      return settled(status) && status?.bundles?.[0]?.revision === r1 && condition(obj, 'Ready')?.status === 'True';
    }, 120_000);
    assert.equal(status?.bundleRevision?.desired, status?.bundleRevision?.current);
    const pods = await replicas();
    assert.equal(pods.length, 2);
    for (const pod of pods) assert.deepEqual(await models(pod), ['a0', 'a1', 'srv']);
    // A replica generates with a bundle adapter, through the OpenAI route.
    const res = await fetch(`http://${pods[0]?.status?.podIP}:8000/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'a1', prompt: 'Hello', max_tokens: 4, temperature: 0 }) });
    assert.equal(res.status, 200, await res.clone().text());
    const completion = await res.json() as { choices: { finish_reason: string }[]; usage: { completion_tokens: number } };
    assert.equal(completion.choices.length, 1);
    assert.ok(completion.usage.completion_tokens >= 1 && completion.usage.completion_tokens <= 4);
    firstPods = new Map(pods.map((p) => [p.metadata?.name ?? '', p.metadata?.uid ?? '']));
    currentBefore = status?.bundleRevision?.current ?? '';
  });

  it('rolls a new revision out to the running replicas, canary first, without restarting them', async () => {
    const v2 = await writeAdapters(join(op.data, 'adapters/v2'), 3, (mod, i) => randomAdapters(1, mod.out, mod.in, 2, 200 + i)[0]!);
    const r1 = (await server()).status?.bundles?.[0]?.revision;
    await applyPool(v2);
    const r2 = await poolRevision(r1);
    let obj: Awaited<ReturnType<typeof server>> | undefined;
    await waitFor('both replicas serving the new bundle set', async () => {
      obj = await server();
      return settled(obj.status) && obj.status?.bundles?.[0]?.revision === r2 && condition(obj, 'Progressing')?.status === 'False';
    }, 120_000);
    const current = obj?.status?.bundleRevision?.current ?? '';
    assert.notEqual(current, currentBefore);
    assert.equal(condition(obj!, 'Degraded')?.status, 'False');

    const pods = await replicas();
    assert.deepEqual(new Map(pods.map((p) => [p.metadata?.name ?? '', p.metadata?.uid ?? ''])), firstPods, 'the same pods: no restart, no replacement');
    for (const pod of pods) {
      assert.equal(pod.status?.containerStatuses?.[0]?.restartCount, 0);
      assert.deepEqual(await models(pod), ['a0', 'a1', 'a2', 'srv']);
    }

    // The order, from the replicas' own logs: the canary activated before the other one started loading.
    const events = await Promise.all(pods.map(async (pod) => {
      const lines = (await session().podLogs(op.ns, pod.metadata?.name ?? '')).split('\n').filter((l) => l.startsWith('{'));
      const at = (msg: string): number => {
        const line = lines.map((l) => JSON.parse(l) as { msg?: string; revision?: string; time?: number }).find((e) => e.msg === msg && e.revision === current);
        assert.ok(line?.time, `pod ${pod.metadata?.name} logged "${msg}" for revision ${current}`);
        return line.time;
      };
      return { pod: pod.metadata?.name, loaded: at('bundle set loaded'), activated: at('bundle set activated') };
    }));
    const [canary, rest] = [...events].sort((a, b) => a.activated - b.activated);
    assert.ok(canary!.activated <= rest!.loaded, `the canary ${canary!.pod} activated (${canary!.activated}) before ${rest!.pod} loaded (${rest!.loaded})`);
    currentBefore = current;
  });

  it('keeps the replicas on the old revision and reports Degraded when the canary cannot load the new one', async () => {
    // Adapters for a wider model: the compressor accepts them for that base, the replicas' base refuses them.
    const wide = await writeAdapters(join(op.data, 'adapters/wide'), 2, (mod, i) => randomAdapters(1, mod.out * 2, mod.in * 2, 2, 300 + i)[0]!);
    const r2 = (await server()).status?.bundles?.[0]?.revision;
    await applyPool(wide, 'wide');
    await poolRevision(r2);
    let obj: Awaited<ReturnType<typeof server>> | undefined;
    await waitFor('the LoRAServer Degraded by the refused revision', async () => {
      obj = await server();
      return condition(obj, 'Degraded')?.reason === 'RolloutFailed';
    }, 120_000);
    const degraded = condition(obj!, 'Degraded');
    assert.equal(degraded?.status, 'True');
    assert.match(degraded?.message ?? '', /did not roll out: pod srv-\S+ refused to load revision [0-9a-f]+: .*q_proj is \[32, 32\] in the bundle, but \[16, 16\] in the base model.*Replicas keep serving revision/);
    const status = obj!.status!;
    assert.equal(status.bundleRevision?.current, currentBefore, 'the current set is unchanged');
    assert.equal(status.bundles?.[0]?.revision, r2);
    assert.notEqual(status.bundleRevision?.desired, currentBefore);
    assert.ok(firstPods.has(status.bundleRevision?.failed?.pod ?? ''), 'the failure names the canary');

    const pods = await replicas();
    for (const pod of pods) assert.deepEqual(await models(pod), ['a0', 'a1', 'a2', 'srv'], `${pod.metadata?.name} still serves the old adapters`);
    // Not retried, and the second replica was never asked.
    await new Promise((r) => setTimeout(r, 2000));
    const other = pods.find((p) => p.metadata?.name !== status.bundleRevision?.failed?.pod);
    const desired = status.bundleRevision?.desired;
    const asked = (await session().podLogs(op.ns, other?.metadata?.name ?? '')).split('\n').filter((l) => l.includes(`"revision":"${desired}"`));
    assert.deepEqual(asked, [], 'the other replica never saw the refused revision');
    const after = await server();
    assert.ok(settled(after.status) && after.status?.bundleRevision?.current === currentBefore);
  });

  it('garbage-collects every child of a deleted LoRAServer and AdapterCluster, and their replicas stop', async () => {
    const pods = await replicas();
    assert.equal((await session().kubectl(['delete', '-n', op.ns, 'loraserver/srv', 'adaptercluster/pool', '--wait=true'])).code, 0);
    const { core, apps, batch } = clients();
    await waitFor('the children of srv and pool to be gone', async () => {
      const [deployments, services, configMaps, jobs, left] = await Promise.all([
        apps.listNamespacedDeployment({ namespace: op.ns, labelSelector: 'tessera.dev/name=srv' }),
        core.listNamespacedService({ namespace: op.ns, labelSelector: 'tessera.dev/name=srv' }),
        core.listNamespacedConfigMap({ namespace: op.ns, labelSelector: 'tessera.dev/name in (srv,pool)' }),
        batch.listNamespacedJob({ namespace: op.ns, labelSelector: 'tessera.dev/name=pool' }),
        podsOf(op.ns, 'tessera.dev/name in (srv,pool)'),
      ]);
      return [deployments, services, configMaps, jobs].every((l) => l.items.length === 0) && left.length === 0;
    }, 120_000);
    for (const pod of pods) await assert.rejects(fetch(`http://${pod.status?.podIP}:8000/health`), `${pod.metadata?.name} stopped serving`);
  });
});
