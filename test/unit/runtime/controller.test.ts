// The controller loop: what a reconcile's outcome does to the key, and how events become keys.
import assert from 'node:assert/strict';
import type { KubernetesObject } from '@kubernetes/client-node';
import { Controller, TerminalError, controllerOwnerKeys, type ReconcileFn, type Result } from '../../../operator/runtime/controller.js';
import type { EventHandlers, Informer, InformerTarget } from '../../../operator/runtime/informer.js';
import { silentLogger } from '../../../operator/runtime/log.js';
import type { ControllerMetrics, ReconcileResult } from '../../../operator/runtime/metrics.js';
import { FakeClock, settle } from '../fake-clock.js';

class FakeInformer implements Informer {
  readonly handlers: EventHandlers<KubernetesObject>[] = [];
  constructor(readonly target: InformerTarget) {}
  addEventHandler(h: EventHandlers<KubernetesObject>): void {
    this.handlers.push(h);
  }
  get(): undefined {
    return undefined;
  }
  list(): KubernetesObject[] {
    return [];
  }
  hasSynced(): boolean {
    return true;
  }
  async waitForSync(): Promise<boolean> {
    return true;
  }
  add(obj: KubernetesObject): void {
    for (const h of this.handlers) h.onAdd?.(obj);
  }
  update(oldObj: KubernetesObject, newObj: KubernetesObject): void {
    for (const h of this.handlers) h.onUpdate?.(oldObj, newObj);
  }
}

const OWNER = { apiVersion: 'tessera.dev/v1alpha1', kind: 'SparseFineTune' };
const CHILD = { apiVersion: 'v1', kind: 'ConfigMap' };

function configMap(name: string, owners: Array<{ name: string; controller?: boolean; kind?: string; apiVersion?: string }> = []): KubernetesObject {
  return {
    ...CHILD,
    metadata: {
      name, namespace: 'ns',
      ownerReferences: owners.map((o) => ({ apiVersion: o.apiVersion ?? 'tessera.dev/v1alpha2', kind: o.kind ?? OWNER.kind, name: o.name, uid: 'u', controller: o.controller })),
    },
  };
}

class RecordingMetrics implements ControllerMetrics {
  readonly results: ReconcileResult[] = [];
  reconciled(_c: string, result: ReconcileResult): void {
    this.results.push(result);
  }
  queueDepth(): void {}
}

function harness(reconcile: ReconcileFn) {
  const clock = new FakeClock();
  const informers = new Map<string, FakeInformer>();
  const metrics = new RecordingMetrics();
  const controller = new Controller({
    name: 'test',
    reconcile,
    logger: silentLogger(),
    clock,
    metrics,
    informers: <T extends KubernetesObject>(target: InformerTarget) => {
      let informer = informers.get(target.kind);
      if (!informer) informers.set(target.kind, (informer = new FakeInformer(target)));
      return informer as unknown as Informer<T>;
    },
  });
  controller.for(OWNER).owns(CHILD);
  const owner = informers.get(OWNER.kind) as FakeInformer;
  const child = informers.get(CHILD.kind) as FakeInformer;
  return { clock, controller, owner, child, metrics };
}

const sft = (name: string): KubernetesObject => ({ ...OWNER, metadata: { name, namespace: 'ns' } });

describe('Controller', () => {
  it('reconciles by key and forgets the key on success', async () => {
    const seen: string[] = [];
    const { controller, owner, metrics } = harness(async (req) => {
      seen.push(`${req.namespace}|${req.name}`);
    });
    owner.add(sft('a'));
    assert.equal(await controller.processNext(), true);
    assert.deepEqual(seen, ['ns|a']);
    assert.equal(controller.queue.numRequeues('ns/a'), 0);
    assert.deepEqual(metrics.results, ['success']);
  });

  it('requeues a key whose reconcile threw, with growing backoff', async () => {
    let calls = 0;
    const { controller, owner, clock } = harness(async () => {
      calls++;
      throw new Error('apiserver unavailable');
    });
    owner.add(sft('a'));
    await controller.processNext();
    assert.equal(controller.queue.numRequeues('ns/a'), 1);
    assert.equal(controller.queue.len(), 0, 'not before its backoff');
    await clock.advance(5);
    assert.equal(controller.queue.len(), 1);
    await controller.processNext();
    assert.equal(calls, 2);
    assert.deepEqual(clock.pendingDelays(), [10]);
  });

  it('does not retry a TerminalError, and counts it', async () => {
    const { controller, owner, clock, metrics } = harness(async () => {
      throw new TerminalError('spec.method "nope" is not one of losa, sparsepeft');
    });
    owner.add(sft('a'));
    await controller.processNext();
    await clock.advance(60_000);
    assert.equal(controller.queue.len(), 0);
    assert.equal(controller.queue.numRequeues('ns/a'), 0);
    assert.deepEqual(metrics.results, ['terminal_error']);
  });

  it('treats an error caused by a TerminalError as terminal', async () => {
    const { controller, owner, clock } = harness(async () => {
      throw new Error('reconcile failed', { cause: new TerminalError('bad spec') });
    });
    owner.add(sft('a'));
    await controller.processNext();
    await clock.advance(60_000);
    assert.equal(controller.queue.len(), 0);
  });

  it('honours requeueAfter and resets the backoff', async () => {
    let result: Result = {};
    let fail = true;
    const { controller, owner, clock } = harness(async () => {
      if (fail) throw new Error('transient');
      return result;
    });
    owner.add(sft('a'));
    await controller.processNext();
    await clock.advance(5);
    fail = false;
    result = { requeueAfter: 30_000 };
    await controller.processNext();
    assert.equal(controller.queue.numRequeues('ns/a'), 0);
    assert.deepEqual(clock.pendingDelays(), [30_000]);
    await clock.advance(30_000);
    assert.equal(controller.queue.len(), 1);
  });

  it('enqueues the controlling owner when an owned child changes', async () => {
    const seen: string[] = [];
    const { controller, child } = harness(async (req) => {
      seen.push(req.key);
    });
    child.add(configMap('cm', [{ name: 'owner-1', controller: true }]));
    child.add(configMap('cm2', [{ name: 'not-controller' }, { name: 'other-kind', controller: true, kind: 'Job' }]));
    await controller.processNext();
    assert.deepEqual(seen, ['ns/owner-1']);
    assert.equal(controller.queue.len(), 0);
  });

  it('wakes both the old and the new owner when a child changes hands', () => {
    const { controller, child } = harness(async () => undefined);
    child.update(configMap('cm', [{ name: 'old', controller: true }]), configMap('cm', [{ name: 'new', controller: true }]));
    assert.equal(controller.queue.len(), 2);
  });

  it('maps owner references by group and kind, whatever their version', () => {
    assert.deepEqual(controllerOwnerKeys(configMap('cm', [{ name: 'x', controller: true, apiVersion: 'tessera.dev/v9' }]), OWNER), ['ns/x']);
    assert.deepEqual(controllerOwnerKeys(configMap('cm', [{ name: 'x', controller: true, apiVersion: 'other.dev/v1alpha1' }]), OWNER), []);
  });

  it('never reconciles one key in two workers at once, and drains on stop', async () => {
    let active = 0;
    let maxActive = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const { controller, owner } = harness(async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await gate;
      active--;
    });
    owner.add(sft('a'));
    const first = controller.processNext();
    await settle();
    owner.add(sft('a'));
    const second = controller.processNext();
    await settle();
    assert.equal(maxActive, 1);
    release();
    await first;
    await second;
    assert.equal(maxActive, 1);
    await controller.stop();
    assert.equal(await controller.processNext(), false);
  });
});
