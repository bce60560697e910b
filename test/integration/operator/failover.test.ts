// tessera-operator as real processes with leader election: the leader is killed and the standby
// takes over, then an operator is restarted in the middle of a run. Workers keep reporting through
// a forwarder that stands in for the operator Service, and nothing is lost or done twice.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { CustomObjectsApi, type V1Job } from '@kubernetes/client-node';
import { waitFor } from '../../cluster/probe.js';
import { session } from '../../cluster/session.js';
import { randomAdapters } from '../../unit/compress/builders.js';
import { writeAdapters } from '../../unit/compress/fixtures.js';
import { clients, deleteNamespace } from '../helpers.js';
import { condition, prepareNamespace, type Condition } from './fixture.js';
import { Forwarder, OperatorProcess } from './operator-process.js';

type Status = Record<string, unknown> & {
  conditions?: Condition[];
  revision?: string;
  observedGeneration?: number;
  bundleRevision?: { current?: string; desired?: string; active?: { pod: string; revision: string }[] };
  bundles?: { revision: string }[];
};
type Obj = { metadata: { generation?: number }; status?: Status };

const ELECTED = 'elected leader: starting controllers';

describe('operator failover and restart with real operator processes', function () {
  this.timeout(300_000);
  let ns: string;
  let data: string;
  const operators: OperatorProcess[] = [];
  let forwarder: Forwarder;

  const get = async (plural: string, name: string): Promise<Obj> =>
    (await session().kubeConfig.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({ group: 'tessera.dev', version: 'v1alpha1', namespace: ns, plural, name })) as Obj;
  const apply = async (obj: unknown): Promise<void> => {
    const r = await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(obj) });
    assert.equal(r.code, 0, r.stderr);
  };
  const applyPool = async (version: string, count: number): Promise<void> => {
    const adapters = await writeAdapters(join(data, 'adapters', version), count, (mod, i) => randomAdapters(1, mod.out, mod.in, 2, 50 * count + i)[0]!);
    await apply({
      apiVersion: 'tessera.dev/v1alpha1', kind: 'AdapterCluster', metadata: { name: 'pool', namespace: ns },
      spec: {
        baseModel: { uri: `file://${data}/models/tiny` }, adapters: adapters.map((a) => ({ name: a.name, uri: `file://${a.dir}` })),
        compression: { method: 'jd-full', rank: 2, clusters: 1, iterations: 5 }, output: { uri: `file://${data}/bundles` },
      },
    });
  };
  const ready = async (after: string | undefined): Promise<Obj> => {
    let obj: Obj | undefined;
    await waitFor('AdapterCluster pool Ready with a new revision', async () => {
      obj = await get('adapterclusters', 'pool');
      const s = obj.status;
      return condition(obj, 'Ready')?.status === 'True' && s?.revision !== undefined && s.revision !== after && s.observedGeneration === obj.metadata.generation;
    }, 150_000);
    return obj!;
  };
  const jobsOfPool = async (): Promise<V1Job[]> =>
    (await clients().batch.listNamespacedJob({ namespace: ns, labelSelector: 'tessera.dev/kind=adaptercluster,tessera.dev/name=pool' })).items;
  const serving = async (revision: string): Promise<void> => {
    await waitFor(`LoRAServer srv serving bundle revision ${revision.slice(0, 12)}`, async () => {
      const s = (await get('loraservers', 'srv')).status;
      const current = s?.bundleRevision?.current;
      return s?.bundles?.[0]?.revision === revision && (s.bundleRevision?.active ?? []).length === 1 && s.bundleRevision?.active?.[0]?.revision === current;
    }, 150_000);
  };
  const start = async (name: string): Promise<OperatorProcess> => {
    const op = await OperatorProcess.start(name, ns, `127.0.0.1:${forwarder.port}`);
    operators.push(op);
    return op;
  };

  before(async function () {
    if (session().kind !== 'local') this.skip();
    ({ ns, data } = await prepareNamespace('failover'));
    forwarder = await Forwarder.start(() => operators.filter((o) => o.alive).map((o) => o.grpcPort));
  });

  after(async () => {
    await Promise.all(operators.map((o) => o.stop('SIGKILL')));
    await forwarder?.close();
    if (ns) await deleteNamespace(ns);
    if (data) rmSync(data, { recursive: true, force: true });
  });

  it('hands over to the standby when the leader is killed; the standby finishes the work once, and workers report to it', async () => {
    const a = await start('operator-a');
    await a.waitForLog(ELECTED, 60_000);
    const b = await start('operator-b');
    await b.waitForLog('leader observed', 60_000);
    assert.ok(!b.logged(ELECTED), 'one leader at a time');

    await applyPool('v1', 2);
    const first = await ready(undefined);
    await apply({
      apiVersion: 'tessera.dev/v1alpha1', kind: 'LoRAServer', metadata: { name: 'srv', namespace: ns },
      spec: { baseModel: { uri: `file://${data}/models/tiny` }, adapterClusters: ['pool'], replicas: 1, resources: { gpus: 0 } },
    });
    await serving(first.status!.revision!);

    // A crash: no graceful release of the Lease, so the standby waits out its duration.
    await a.stop('SIGKILL');
    await applyPool('v2', 3);
    await b.waitForLog(ELECTED, 60_000);
    const second = await ready(first.status?.revision);
    // The new revision reached the running replica through the new leader's hub.
    await serving(second.status!.revision!);

    const jobs = await jobsOfPool();
    assert.equal(jobs.length, 2, `one Job per input set, none duplicated: ${jobs.map((j) => j.metadata?.name).join(', ')}`);
    assert.ok(jobs.every((j) => (j.status?.succeeded ?? 0) === 1 && (j.status?.failed ?? 0) === 0));
    const deployments = (await clients().apps.listNamespacedDeployment({ namespace: ns, labelSelector: 'tessera.dev/name=srv' })).items;
    assert.equal(deployments.length, 1);
    assert.equal(deployments[0]?.metadata?.generation, 1, 'the standby applied the same Deployment: no spurious rollout');
  });

  it('rebuilds status after a restart in the middle of a run, from the Job and the worker\'s resent reports', async () => {
    const leader = operators.find((o) => o.alive)!;
    const before = (await get('adapterclusters', 'pool')).status?.revision;
    await applyPool('v3', 4);
    await waitFor('the Job of the new input set', async () => (await jobsOfPool()).length === 3, 60_000);
    // Graceful: the Lease is released, so the next operator leads at once.
    await leader.stop('SIGTERM');
    const next = await start('operator-c');
    await next.waitForLog(ELECTED, 60_000);
    const third = await ready(before);
    assert.equal((await jobsOfPool()).length, 3, 'the restarted operator adopted the running Job instead of starting another');
    const s = third.status!;
    assert.equal(s.adapterCount, 4);
    assert.equal(condition(third, 'Succeeded')?.status, 'True');
    assert.ok((s.conditions ?? []).every((c) => (c as Condition & { observedGeneration?: number }).observedGeneration === third.metadata.generation));
    await serving(s.revision!);
  });
});
