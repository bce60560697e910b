// The informer against the real API server: its cache follows ConfigMaps, and a broken watch is
// repaired by a re-list that reports what changed while it was down.
import assert from 'node:assert/strict';
import { CoreV1Api, type KubernetesObject, type V1ConfigMap } from '@kubernetes/client-node';
import { waitFor } from '../../cluster/probe.js';
import { session } from '../../cluster/session.js';
import { deleteNamespace, freshNamespace } from '../helpers.js';
import { clientNodeWatch, SharedInformer, type WatchFn } from '../../../operator/runtime/informer.js';
import { silentLogger } from '../../../operator/runtime/log.js';
import { RestClient } from '../../../operator/runtime/rest.js';

describe('SharedInformer on the real API server', function () {
  let ns: string;
  let core: CoreV1Api;
  const informers: SharedInformer[] = [];

  before(async () => {
    ns = await freshNamespace('rt-informer');
    core = session().kubeConfig.makeApiClient(CoreV1Api);
  });
  after(async () => {
    await Promise.all(informers.map((i) => i.stop()));
    await deleteNamespace(ns);
  });

  const cm = (name: string, value: string): V1ConfigMap => ({ metadata: { name, namespace: ns }, data: { value } });

  it('sees ConfigMaps created, updated and deleted, and its cache matches a list', async () => {
    const informer = new SharedInformer<KubernetesObject & { data?: Record<string, string> }>(
      { apiVersion: 'v1', kind: 'ConfigMap', namespace: ns }, new RestClient(session().kubeConfig), { logger: silentLogger() });
    informers.push(informer);
    const events: string[] = [];
    informer.addEventHandler({
      onAdd: (o) => o.metadata?.name?.startsWith('cm-') && events.push(`add ${o.metadata.name}`),
      onUpdate: (a, b) => b.metadata?.name?.startsWith('cm-') && events.push(`update ${b.metadata.name} ${a.data?.value}->${b.data?.value}`),
      onDelete: (o) => o.metadata?.name?.startsWith('cm-') && events.push(`delete ${o.metadata.name}`),
    });
    informer.start();
    assert.equal(await informer.waitForSync(AbortSignal.timeout(10_000)), true);

    await core.createNamespacedConfigMap({ namespace: ns, body: cm('cm-a', '1') });
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('cm-b', '1') });
    await core.replaceNamespacedConfigMap({ name: 'cm-a', namespace: ns, body: cm('cm-a', '2') });
    await core.deleteNamespacedConfigMap({ name: 'cm-b', namespace: ns });
    await waitFor('the informer to see four events', async () => events.length >= 4, 10_000, 50);
    assert.deepEqual(events, ['add cm-a', 'add cm-b', 'update cm-a 1->2', 'delete cm-b']);

    const listed = await core.listNamespacedConfigMap({ namespace: ns });
    const fromList = listed.items.map((i) => `${i.metadata?.name}@${i.metadata?.resourceVersion}`).sort();
    const fromCache = informer.list(ns).map((i) => `${i.metadata?.name}@${i.metadata?.resourceVersion}`).sort();
    assert.deepEqual(fromCache, fromList);
  });

  it('re-lists after its watch connection is broken and reports the changes it missed', async () => {
    const watches: AbortController[] = [];
    const real = clientNodeWatch(session().kubeConfig);
    const watch: WatchFn = async (...args) => {
      const controller = await real(...args);
      watches.push(controller);
      return controller;
    };
    let reopen: () => void = () => undefined;
    let restarts = 0;
    const informer = new SharedInformer({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns }, new RestClient(session().kubeConfig), {
      logger: silentLogger(),
      watch,
      // The restart waits for the test, so the changes below happen while nothing is watching.
      restartDelay: () => {
        restarts++;
        return new Promise<void>((resolve) => (reopen = resolve));
      },
    });
    informers.push(informer);
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('gap-keep', '1') });
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('gap-change', '1') });
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('gap-remove', '1') });
    const events: string[] = [];
    informer.addEventHandler({
      onAdd: (o) => events.push(`add ${o.metadata?.name}`),
      onUpdate: (_a, b) => events.push(`update ${b.metadata?.name}`),
      onDelete: (o) => events.push(`delete ${o.metadata?.name}`),
    });
    informer.start();
    assert.equal(await informer.waitForSync(AbortSignal.timeout(10_000)), true);
    await waitFor('the watch to open', async () => watches.length === 1, 10_000, 20);

    watches[0]?.abort();
    await waitFor('the informer to back off', async () => restarts === 1, 10_000, 20);
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('gap-new', '1') });
    await core.replaceNamespacedConfigMap({ name: 'gap-change', namespace: ns, body: cm('gap-change', '2') });
    await core.deleteNamespacedConfigMap({ name: 'gap-remove', namespace: ns });
    events.length = 0;
    reopen();

    await waitFor('the re-list to report three changes', async () => events.filter((e) => e.includes('gap-')).length >= 3, 10_000, 50);
    assert.deepEqual(events.filter((e) => e.includes('gap-')).sort(), ['add gap-new', 'delete gap-remove', 'update gap-change']);
    await waitFor('a new watch', async () => watches.length === 2, 10_000, 20);
    // The new watch works: a change after the repair arrives as an event.
    await core.deleteNamespacedConfigMap({ name: 'gap-keep', namespace: ns });
    await waitFor('the delete of gap-keep', async () => events.includes('delete gap-keep'), 10_000, 50);
  });
});
