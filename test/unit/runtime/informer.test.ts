// The informer against a scripted API server: it lists, watches, and after any broken watch
// (410 Gone included) re-lists and reports exactly what changed in between.
import assert from 'node:assert/strict';
import { KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { SharedInformer, type WatchEventType, type WatchFn } from '../../../operator/runtime/informer.js';
import { silentLogger } from '../../../operator/runtime/log.js';
import { RestClient } from '../../../operator/runtime/rest.js';
import { FakeClock, settle } from '../fake-clock.js';

const cm = (name: string, rv: string, data: Record<string, string> = {}): KubernetesObject & { data: Record<string, string> } =>
  ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'ns', resourceVersion: rv }, data });

/** A fake API server: the list it returns, and the watch streams the informer opened. */
class Script {
  items: KubernetesObject[] = [];
  listRV = '1';
  lists = 0;
  streams: Array<{ query: Record<string, unknown>; send: (t: WatchEventType, o: unknown) => void; close: (err: unknown) => void }> = [];
  restarts: Array<() => void> = [];

  list = async () => {
    this.lists++;
    return { items: structuredClone(this.items), resourceVersion: this.listRV };
  };

  readonly watch: WatchFn = async (_path, query, onEvent, done) => {
    const controller = new AbortController();
    controller.signal.addEventListener('abort', () => done(new Error('aborted')));
    this.streams.push({ query, send: onEvent, close: done });
    return controller;
  };

  /** Restarts wait until the test lets them go, so it can change the world in between. */
  readonly restartDelay = () => new Promise<void>((resolve) => this.restarts.push(resolve));
}

function recorder() {
  const events: string[] = [];
  return {
    events,
    handlers: {
      onAdd: (o: KubernetesObject) => events.push(`add ${o.metadata?.name}`),
      onUpdate: (a: KubernetesObject, b: KubernetesObject) => events.push(`update ${a.metadata?.name} ${a.metadata?.resourceVersion}->${b.metadata?.resourceVersion}`),
      onDelete: (o: KubernetesObject) => events.push(`delete ${o.metadata?.name}`),
    },
  };
}

describe('SharedInformer (scripted API server)', () => {
  let informer: SharedInformer | undefined;
  afterEach(async () => {
    await informer?.stop();
  });

  function start(script: Script, clock = new FakeClock()): SharedInformer {
    informer = new SharedInformer({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'ns' }, new RestClient(new KubeConfig()), {
      logger: silentLogger(), clock, list: script.list, watch: script.watch, restartDelay: script.restartDelay, plural: 'configmaps',
    });
    informer.start();
    return informer;
  }

  it('lists, then watches from the list resourceVersion with bookmarks', async () => {
    const script = new Script();
    script.items = [cm('a', '5')];
    script.listRV = '7';
    const inf = start(script);
    assert.equal(await inf.waitForSync(), true);
    await settle();
    assert.equal(script.streams[0]?.query.resourceVersion, '7');
    assert.equal(script.streams[0]?.query.allowWatchBookmarks, true);
    assert.equal(inf.get('ns/a')?.metadata?.resourceVersion, '5');
  });

  it('passes the old and the new object to onUpdate and hands out frozen objects', async () => {
    const script = new Script();
    script.items = [cm('a', '5', { k: 'v1' })];
    const inf = start(script);
    const rec = recorder();
    inf.addEventHandler(rec.handlers);
    await inf.waitForSync();
    await settle();
    script.streams[0]?.send('MODIFIED', cm('a', '6', { k: 'v2' }));
    script.streams[0]?.send('BOOKMARK', { kind: 'ConfigMap', metadata: { resourceVersion: '9' } });
    assert.deepEqual(rec.events, ['add a', 'update a 5->6']);
    assert.throws(() => {
      (inf.get('ns/a') as ReturnType<typeof cm>).data.k = 'mutated';
    }, TypeError);
  });

  it('re-lists after a 410 Gone and emits the adds, updates and deletes it missed', async () => {
    const script = new Script();
    script.items = [cm('keep', '1'), cm('change', '1'), cm('remove', '1')];
    const inf = start(script);
    const rec = recorder();
    inf.addEventHandler(rec.handlers);
    await inf.waitForSync();
    await settle();
    rec.events.length = 0;
    script.streams[0]?.send('ERROR', { kind: 'Status', code: 410, message: 'too old resource version: 1 (20)' });
    await settle();
    assert.equal(script.restarts.length, 1, 'waits for the backoff before re-listing');
    script.items = [cm('keep', '1'), cm('change', '2'), cm('new', '3')];
    script.listRV = '20';
    script.restarts[0]?.();
    await settle();
    assert.deepEqual(rec.events.sort(), ['add new', 'delete remove', 'update change 1->2']);
    assert.equal(script.lists, 2);
    assert.equal(script.streams[1]?.query.resourceVersion, '20');
    assert.deepEqual(inf.list().map((o) => o.metadata?.name).sort(), ['change', 'keep', 'new']);
  });

  it('resumes a cleanly closed watch from the last resourceVersion without listing again', async () => {
    const script = new Script();
    const clock = new FakeClock();
    const inf = start(script, clock);
    await inf.waitForSync();
    await settle();
    script.streams[0]?.send('ADDED', cm('a', '11'));
    await clock.advance(60_000);
    script.streams[0]?.close(null);
    await settle();
    assert.equal(script.lists, 1);
    assert.equal(script.streams[1]?.query.resourceVersion, '11');
  });

  it('keeps retrying a list that fails, with backoff, and never gives up', async () => {
    const script = new Script();
    let failures = 2;
    const list = script.list;
    script.list = async () => {
      if (failures-- > 0) throw new Error('connection refused');
      return list();
    };
    informer = new SharedInformer({ apiVersion: 'v1', kind: 'ConfigMap' }, new RestClient(new KubeConfig()), {
      logger: silentLogger(), list: () => script.list(), watch: script.watch, restartDelay: script.restartDelay, plural: 'configmaps',
    });
    informer.start();
    await settle();
    script.restarts[0]?.();
    await settle();
    assert.equal(informer.hasSynced(), false);
    script.restarts[1]?.();
    assert.equal(await informer.waitForSync(), true);
  });
});
