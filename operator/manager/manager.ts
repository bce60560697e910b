// The operator's control loop on the runtime's shared informers and rate-limited work queues:
// one queue and worker per kind, and the mapping from child and input changes to the objects
// that must be reconciled again.
import { randomUUID } from 'node:crypto';
import type { KubeConfig, KubernetesObject, V1Deployment, V1Job } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { GROUP, VERSION, type AdapterCluster, type LoRAServer, type SparseFineTune } from '../api/v1alpha1/index.js';
import { reconcileAdapterCluster } from '../controllers/adaptercluster/reconciler.js';
import type { Result } from '../controllers/common/deps.js';
import type { WorkerSettings } from '../controllers/common/worker-pod.js';
import { reconcileLoRAServer } from '../controllers/loraserver/reconciler.js';
import { BundleRollouts, type RolloutHub } from '../controllers/loraserver/rollout.js';
import { reconcileSparseFineTune } from '../controllers/sparsefinetune/reconciler.js';
import { objectKey, SharedInformer } from '../runtime/informer.js';
import { RestClient } from '../runtime/rest.js';
import { WorkQueue } from '../runtime/workqueue.js';
import { adapterClustersUsing } from './dependents.js';
import { KubeDeps } from './kube-deps.js';

export interface ManagerOptions {
  kubeConfig: KubeConfig;
  settings: WorkerSettings;
  logger: Logger;
  /** PEM bundle published as the CA ConfigMap in workload namespaces; undefined without TLS. */
  caBundlePem?: string;
  /** Called for every reconcile, for metrics. */
  onReconcile?: (kind: string, outcome: 'success' | 'error', seconds: number) => void;
  /** Called when a kind's queue depth changes, for metrics. */
  onQueueDepth?: (kind: string, depth: number) => void;
  /** Called when an object of one of the three kinds is deleted (the hub forgets its state). */
  onDeleted?: (ref: { kind: string; namespace: string; name: string }) => void;
  /** Concurrent reconciles per controller (controller-runtime's MaxConcurrentReconciles); default 4. */
  workersPerController?: number;
  /** The status hub, through which bundle sets reach running LoRAServer replicas; without it none are rolled out. */
  hub?: RolloutHub;
}

type Custom<T> = T & KubernetesObject;

const DEFAULT_WORKERS = 4;

/** The API server's 403 for creating anything in a namespace that is being deleted. */
function namespaceTerminating(err: unknown): boolean {
  const e = err as { code?: unknown; body?: { details?: { causes?: { reason?: string }[] } } } | null;
  return e?.code === 403 && (e.body?.details?.causes ?? []).some((c) => c.reason === 'NamespaceTerminating');
}

interface Controller {
  kind: string;
  informer: SharedInformer<KubernetesObject>;
  queue: WorkQueue;
  reconcile(obj: KubernetesObject): Promise<Result>;
}

export class Manager {
  private readonly informers;
  private readonly deps: KubeDeps;
  private readonly controllers: Controller[];
  private readonly log: Logger;
  private running: Promise<void>[] = [];

  constructor(private readonly options: ManagerOptions) {
    this.log = options.logger.child({ component: 'manager' });
    const rest = new RestClient(options.kubeConfig);
    const informer = <T extends KubernetesObject>(apiVersion: string, kind: string) => new SharedInformer<T>({ apiVersion, kind }, rest, { logger: this.log });
    const api = `${GROUP}/${VERSION}`;
    this.informers = {
      sparseFineTunes: informer<Custom<SparseFineTune>>(api, 'SparseFineTune'),
      adapterClusters: informer<Custom<AdapterCluster>>(api, 'AdapterCluster'),
      loraServers: informer<Custom<LoRAServer>>(api, 'LoRAServer'),
      jobs: informer<V1Job>('batch/v1', 'Job'),
      deployments: informer<V1Deployment>('apps/v1', 'Deployment'),
    };
    // The rollout driver requeues a LoRAServer when a step finishes; the queue exists only below, hence the late binding.
    let requeueServer = (_key: string): void => undefined;
    const rollouts = options.hub
      ? new BundleRollouts(options.hub, { logger: this.log.child({ controller: 'LoRAServer' }), onChange: (s) => requeueServer(`${s.namespace}/${s.name}`) })
      : undefined;
    this.deps = new KubeDeps(options.kubeConfig, this.informers, options.settings, this.log, options.caBundlePem, rollouts);
    const controller = <T extends KubernetesObject>(kind: string, source: SharedInformer<T>, reconcile: (obj: T) => Promise<Result>): Controller => ({
      kind, informer: source as unknown as SharedInformer<KubernetesObject>,
      queue: new WorkQueue({ onDepthChange: (depth) => options.onQueueDepth?.(kind, depth) }),
      reconcile: async (obj) => {
        await this.deps.ensureCa(obj.metadata?.namespace ?? '');
        return reconcile(obj as T);
      },
    });
    const sft = controller('SparseFineTune', this.informers.sparseFineTunes, (o) => reconcileSparseFineTune(o, this.deps));
    const ac = controller('AdapterCluster', this.informers.adapterClusters, (o) => reconcileAdapterCluster(o, this.deps));
    const ls = controller('LoRAServer', this.informers.loraServers, (o) => reconcileLoRAServer(o, this.deps));
    this.controllers = [sft, ac, ls];
    requeueServer = (key) => ls.queue.add(key);
    options.hub?.onServingChange((object) => {
      if (object.kind === 'LoRAServer') requeueServer(`${object.namespace}/${object.name}`);
    });
    if (rollouts) this.informers.loraServers.addEventHandler({ onDelete: (obj) => rollouts.forget({ namespace: obj.metadata?.namespace ?? '', name: obj.metadata?.name ?? '' }) });

    const on = <T extends KubernetesObject>(source: SharedInformer<T>, handle: (obj: T) => void): void =>
      source.addEventHandler({ onAdd: handle, onUpdate: (_old, obj) => handle(obj), onDelete: handle });
    // Each kind's own changes; then children to their controlling owner; then inputs to their consumers.
    for (const c of this.controllers) {
      on(c.informer, (obj) => c.queue.add(objectKey(obj)));
      c.informer.addEventHandler({ onDelete: (obj) => options.onDeleted?.({ kind: c.kind, namespace: obj.metadata?.namespace ?? '', name: obj.metadata?.name ?? '' }) });
    }
    const toOwner = (child: KubernetesObject): void => {
      const owner = child.metadata?.ownerReferences?.find((o) => o.controller && o.apiVersion === api);
      const target = this.controllers.find((c) => c.kind === owner?.kind);
      if (owner && target) target.queue.add(`${child.metadata?.namespace}/${owner.name}`);
    };
    on(this.informers.jobs, toOwner);
    on(this.informers.deployments, toOwner);
    const toAdapterClusters = (sft: SparseFineTune & KubernetesObject): void => {
      for (const consumer of adapterClustersUsing(sft, this.informers.adapterClusters.list(sft.metadata?.namespace))) ac.queue.add(objectKey(consumer));
    };
    this.informers.sparseFineTunes.addEventHandler({
      onAdd: toAdapterClusters,
      // The old object too: a cluster it no longer enrolls into must drop its adapter.
      onUpdate: (old, obj) => (toAdapterClusters(old), toAdapterClusters(obj)),
      onDelete: toAdapterClusters,
    });
    on(this.informers.adapterClusters, (obj) => {
      for (const consumer of this.informers.loraServers.list(obj.metadata?.namespace)) {
        if (consumer.spec.adapterClusters.includes(obj.metadata?.name ?? '')) ls.queue.add(objectKey(consumer));
      }
    });
  }

  async start(): Promise<void> {
    const all = Object.values(this.informers) as SharedInformer<KubernetesObject>[];
    for (const i of all) i.start();
    await Promise.all(all.map((i) => i.waitForSync()));
    this.log.info('caches synced; controllers running');
    // Several workers per controller: the queue never hands one key to two of them at once, and
    // a reconcile mostly waits on the API server, so a burst of objects drains in parallel.
    const workers = this.options.workersPerController ?? DEFAULT_WORKERS;
    this.running = this.controllers.flatMap((c) => Array.from({ length: workers }, () => this.work(c)));
  }

  get synced(): boolean {
    return (Object.values(this.informers) as SharedInformer<KubernetesObject>[]).every((i) => i.hasSynced());
  }

  private async work(c: Controller): Promise<void> {
    for (;;) {
      const key = await c.queue.get();
      if (key === undefined) return;
      const [namespace = '', name = ''] = key.split('/');
      const log = this.log.child({ controller: c.kind, namespace, name, reconcileID: randomUUID() });
      const started = process.hrtime.bigint();
      try {
        const obj = c.informer.get(key);
        const result = obj ? await c.reconcile(obj) : {};
        c.queue.forget(key);
        if (result.requeueAfter !== undefined) c.queue.addAfter(key, result.requeueAfter);
        this.options.onReconcile?.(c.kind, 'success', Number(process.hrtime.bigint() - started) / 1e9);
        log.debug('reconciled');
      } catch (err) {
        const conflict = typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 409;
        if (namespaceTerminating(err)) {
          // Its namespace is being deleted, and the object with it: nothing to do, and nothing will succeed.
          log.debug({ err }, 'namespace is terminating; not retried');
          c.queue.forget(key);
        } else {
          // A conflict only means the cache was behind a concurrent write: retry soon, quietly.
          if (conflict) log.debug({ err }, 'conflict; requeued');
          else log.error({ err }, 'reconcile failed; requeued with back-off');
          c.queue.addRateLimited(key);
        }
        this.options.onReconcile?.(c.kind, 'error', Number(process.hrtime.bigint() - started) / 1e9);
      } finally {
        c.queue.done(key);
      }
    }
  }

  async stop(): Promise<void> {
    for (const c of this.controllers) c.queue.shutDown();
    await Promise.all((Object.values(this.informers) as SharedInformer<KubernetesObject>[]).map((i) => i.stop()));
    await Promise.all(this.running);
  }
}
