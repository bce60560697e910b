// The manager on the real API server: shared informers feed a controller, owned children wake
// their owner, and the probe and metrics endpoints tell the truth.
import assert from 'node:assert/strict';
import { CoreV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { httpGet, waitFor } from '../../cluster/probe.js';
import { session } from '../../cluster/session.js';
import { deleteNamespace, freshNamespace } from '../helpers.js';
import { silentLogger } from '../../../operator/runtime/log.js';
import { Manager } from '../../../operator/runtime/manager.js';

describe('Manager with a controller that owns ConfigMaps', function () {
  let ns: string;
  let core: CoreV1Api;
  let manager: Manager;
  const reconciled: string[] = [];

  before(async () => {
    ns = await freshNamespace('rt-manager');
    core = session().kubeConfig.makeApiClient(CoreV1Api);
    manager = new Manager({
      kubeConfig: session().kubeConfig,
      logger: silentLogger(),
      metricsAddress: { host: '127.0.0.1', port: 0 },
      probeAddress: { host: '127.0.0.1', port: 0 },
    });
    manager
      .controller({
        name: 'secret-owner',
        reconcile: async (req) => {
          reconciled.push(req.key);
        },
      })
      .for({ apiVersion: 'v1', kind: 'Secret', namespace: ns })
      .owns({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns });
    await manager.start();
  });
  after(async () => {
    await manager.stop();
    await deleteNamespace(ns);
  });

  const url = (port: number | undefined, path: string): string => `http://127.0.0.1:${port}${path}`;

  it('answers /healthz and, once the caches synced, /readyz', async () => {
    const { probe } = manager.addresses();
    assert.equal((await httpGet(url(probe, '/healthz'))).status, 200);
    await waitFor('/readyz to answer 200', async () => (await httpGet(url(probe, '/readyz'))).status === 200, 10_000, 50);
    assert.equal((await httpGet(url(probe, '/nope'))).status, 404);
  });

  it('reconciles the owner when its controlled child ConfigMap changes', async () => {
    const secret = await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'owner' }, stringData: { a: 'b' } } });
    await waitFor('the owner to be reconciled', async () => reconciled.includes(`${ns}/owner`), 10_000, 50);
    const child = (value: string): V1ConfigMap => ({
      metadata: {
        name: 'child', namespace: ns,
        ownerReferences: [{ apiVersion: 'v1', kind: 'Secret', name: 'owner', uid: secret.metadata?.uid ?? '', controller: true }],
      },
      data: { value },
    });
    const before = reconciled.length;
    await core.createNamespacedConfigMap({ namespace: ns, body: child('1') });
    await waitFor('a reconcile after the child was created', async () => reconciled.length > before, 10_000, 50);
    const afterCreate = reconciled.length;
    await core.replaceNamespacedConfigMap({ name: 'child', namespace: ns, body: child('2') });
    await waitFor('a reconcile after the child changed', async () => reconciled.length > afterCreate, 10_000, 50);
    assert.ok(reconciled.slice(before).every((k) => k === `${ns}/owner`), `only the owner is reconciled, got ${reconciled.slice(before).join(', ')}`);

    // A ConfigMap that nobody controls wakes nobody.
    const settled = reconciled.length;
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'orphan' }, data: {} } });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(reconciled.length, settled);
  });

  it('exposes reconcile counts and queue depth on /metrics', async () => {
    const { metrics } = manager.addresses();
    const { status, body } = await httpGet(url(metrics, '/metrics'));
    assert.equal(status, 200);
    const line = body.split('\n').find((l) => l.startsWith('tessera_reconcile_total{controller="secret-owner",result="success"}'));
    assert.ok(line && Number(line.split(' ')[1]) >= 3, `expected at least 3 successful reconciles, got ${line}`);
    assert.match(body, /tessera_reconcile_duration_seconds_count\{controller="secret-owner"\} \d+/);
    assert.match(body, /tessera_workqueue_depth\{controller="secret-owner"\} 0/);
    assert.match(body, /# TYPE tessera_status_reports_total counter/);
  });
});

describe('Managers with leader election', function () {
  let ns: string;
  const managers: Manager[] = [];

  before(async () => {
    ns = await freshNamespace('rt-mgr-le');
    await session().kubeConfig.makeApiClient(CoreV1Api).createNamespacedSecret({ namespace: ns, body: { metadata: { name: 's' } } });
  });
  after(async () => {
    await Promise.all(managers.map((m) => m.stop()));
    await deleteNamespace(ns);
  });

  function start(id: string, reconciled: string[]): Manager {
    const manager = new Manager({
      kubeConfig: session().kubeConfig,
      logger: silentLogger(),
      instance: id,
      probeAddress: { host: '127.0.0.1', port: 0 },
      leaderElection: { namespace: ns, name: 'operator', leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 300 },
    });
    manager.controller({ name: 'c', reconcile: async (req) => void reconciled.push(req.key) }).for({ apiVersion: 'v1', kind: 'Secret', namespace: ns });
    managers.push(manager);
    return manager;
  }

  it('runs controllers only on the leader, keeps the standby ready, and hands over on shutdown', async () => {
    const first: string[] = [];
    const second: string[] = [];
    const leader = start('first', first);
    await leader.start();
    await waitFor('the first manager to reconcile', async () => first.includes(`${ns}/s`), 10_000, 50);
    const standby = start('second', second);
    await standby.start();
    const probe = `http://127.0.0.1:${standby.addresses().probe}/readyz`;
    await waitFor('the standby to be ready', async () => (await httpGet(probe)).status === 200, 10_000, 50);
    assert.equal(standby.isLeader(), false);
    assert.equal(second.length, 0, 'the standby reconciles nothing');

    await leader.stop();
    await waitFor('the standby to take over and reconcile', async () => second.includes(`${ns}/s`), 5_000, 50);
    assert.equal(standby.isLeader(), true);
  });
});
