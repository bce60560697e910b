// The operator's writes on the real API server: server-side apply, status through /status only,
// finalizers with a resourceVersion precondition, and events that form a series.
import assert from 'node:assert/strict';
import { CoreV1Api, type KubernetesObject, type V1ConfigMap } from '@kubernetes/client-node';
import { waitFor } from '../../cluster/probe.js';
import { session } from '../../cluster/session.js';
import { deleteNamespace, freshNamespace } from '../helpers.js';
import { applyObject, patchStatus } from '../../../operator/runtime/apply.js';
import { EventRecorder } from '../../../operator/runtime/events.js';
import { addFinalizer, removeFinalizer } from '../../../operator/runtime/finalizers.js';
import { silentLogger } from '../../../operator/runtime/log.js';
import { RestClient, statusCode } from '../../../operator/runtime/rest.js';

const GROUP = 'runtime-test.tessera.dev';
const CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `widgets.${GROUP}` },
  spec: {
    group: GROUP,
    scope: 'Namespaced',
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
    versions: [{
      name: 'v1', served: true, storage: true, subresources: { status: {} },
      schema: { openAPIV3Schema: { type: 'object', properties: {
        spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
        status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
      } } },
    }],
  },
};

type Widget = KubernetesObject & { spec?: Record<string, unknown>; status?: Record<string, unknown> };

describe('operator writes on the real API server', function () {
  let ns: string;
  let rest: RestClient;
  let core: CoreV1Api;

  before(async () => {
    ns = await freshNamespace('rt-writes');
    rest = new RestClient(session().kubeConfig);
    core = session().kubeConfig.makeApiClient(CoreV1Api);
    await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(CRD) });
    await waitFor('the Widget CRD to be served', async () => Boolean(await rest.resource(`${GROUP}/v1`, 'Widget')), 20_000, 200);
  });
  after(async () => {
    await deleteNamespace(ns);
    await session().kubectl(['delete', 'crd', CRD.metadata.name, '--wait=false']);
  });

  const cm = (data: Record<string, string>): V1ConfigMap & KubernetesObject =>
    ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied', namespace: ns, labels: { app: 'tessera' } }, data });

  it('applies the same object twice without changing its resourceVersion', async () => {
    const first = await applyObject(rest, cm({ a: '1' }));
    const second = await applyObject(rest, cm({ a: '1' }));
    assert.ok(first.metadata?.resourceVersion);
    assert.equal(second.metadata?.resourceVersion, first.metadata?.resourceVersion);
    assert.ok(second.metadata?.managedFields?.some((f) => f.manager === 'tessera-operator' && f.operation === 'Apply'));
  });

  it('keeps a field another field manager owns when the operator applies again', async () => {
    await rest.patch(cm({}), 'apply', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied', namespace: ns }, data: { theirs: 'x' } }, { fieldManager: 'someone-else' });
    await applyObject(rest, cm({ a: '2' }));
    const read = await core.readNamespacedConfigMap({ name: 'applied', namespace: ns });
    assert.deepEqual(read.data, { a: '2', theirs: 'x' });
  });

  it('writes status only through /status, and not at all when nothing changed', async () => {
    const created = await rest.create<Widget>({ apiVersion: `${GROUP}/v1`, kind: 'Widget', metadata: { name: 'w', namespace: ns }, spec: { size: 1 } } as Widget);
    const patched = await patchStatus(rest, { ...created, spec: { size: 999 } } as Widget, { stage: 'Training', observedGeneration: 1 });
    assert.deepEqual(patched?.status, { stage: 'Training', observedGeneration: 1 });
    assert.deepEqual(patched?.spec, { size: 1 }, 'the spec is never written through /status');
    const again = await patchStatus(rest, patched as Widget, { observedGeneration: 1, stage: 'Training' });
    assert.equal(again, undefined);
    const read = await rest.get<Widget>(`${GROUP}/v1`, 'Widget', ns, 'w');
    assert.equal(read.metadata?.resourceVersion, patched?.metadata?.resourceVersion);
  });

  it('refuses a status write from a stale object with 409 Conflict', async () => {
    const stale = await rest.get<Widget>(`${GROUP}/v1`, 'Widget', ns, 'w');
    await patchStatus(rest, stale, { stage: 'Evaluating' });
    await assert.rejects(patchStatus(rest, stale, { stage: 'Done' }), (err: unknown) => statusCode(err) === 409);
  });

  it('adds and removes a finalizer, leaving other finalizers alone, with a resourceVersion precondition', async () => {
    const w = await rest.get<Widget>(`${GROUP}/v1`, 'Widget', ns, 'w');
    const withOther = await rest.patch<Widget>(w, 'merge', { metadata: { finalizers: ['example.com/other'] } });
    const added = await addFinalizer(rest, withOther, 'tessera.dev/cleanup');
    assert.deepEqual(added?.metadata?.finalizers, ['example.com/other', 'tessera.dev/cleanup']);
    assert.equal(await addFinalizer(rest, added as Widget, 'tessera.dev/cleanup'), undefined);
    await assert.rejects(removeFinalizer(rest, withOther as Widget & { metadata: { finalizers: string[] } }, 'example.com/other'), (err: unknown) => statusCode(err) === 409);
    const removed = await removeFinalizer(rest, added as Widget, 'tessera.dev/cleanup');
    assert.deepEqual(removed?.metadata?.finalizers, ['example.com/other']);
    const cleared = await removeFinalizer(rest, removed as Widget, 'example.com/other');
    assert.equal(cleared?.metadata?.finalizers, undefined);
  });

  it('records a repeated event once, with a series count', async () => {
    const recorder = new EventRecorder(rest, { reportingInstance: 'test-pod', logger: silentLogger() });
    const w = await rest.get<Widget>(`${GROUP}/v1`, 'Widget', ns, 'w');
    for (let i = 0; i < 3; i++) recorder.record(w, 'Warning', 'WorkerFailed', 'Reconcile', 'The worker exited with code 1.');
    recorder.record(w, 'Normal', 'JobCreated', 'Create', 'Created Job w-1.');
    await recorder.flush();
    const { items } = await rest.list<KubernetesObject & { reason?: string; series?: { count: number }; reportingController?: string }>('events.k8s.io/v1', 'Event', ns);
    const failed = items.filter((e) => e.reason === 'WorkerFailed');
    assert.equal(failed.length, 1);
    assert.equal(failed[0]?.series?.count, 3);
    assert.equal(failed[0]?.reportingController, 'tessera.dev/operator');
    assert.equal(items.filter((e) => e.reason === 'JobCreated').length, 1);
  });
});
