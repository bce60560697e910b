// The operator's control loop: informer caches for the three kinds and their children, one
// de-duplicating queue and worker per kind, and the mapping from child and input changes to
// the objects that must be reconciled again.
import { randomUUID } from 'node:crypto';
import {
  AppsV1Api, BatchV1Api, CustomObjectsApi, type KubeConfig, type KubernetesObject, type V1Deployment, type V1Job,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { GROUP, VERSION, type AdapterCluster, type LoRAServer, type SparseFineTune } from '../api/v1alpha1/index.js';
import { reconcileAdapterCluster } from '../controllers/adaptercluster/reconciler.js';
import type { Result } from '../controllers/common/deps.js';
import type { WorkerSettings } from '../controllers/common/worker-pod.js';
import { reconcileLoRAServer } from '../controllers/loraserver/reconciler.js';
import { reconcileSparseFineTune } from '../controllers/sparsefinetune/reconciler.js';
import { keyOf, ObjectCache } from './cache.js';
import { KubeDeps } from './kube-deps.js';
import { WorkQueue } from './queue.js';

const MANAGED = 'app.kubernetes.io/managed-by=tessera-operator';

export interface ManagerOptions {
  kubeConfig: KubeConfig;
  settings: WorkerSettings;
  logger: Logger;
  /** PEM bundle published as the CA ConfigMap in workload namespaces; undefined without TLS. */
  caBundlePem?: string;
  /** Called for every reconcile, for metrics. */
  onReconcile?: (kind: string, outcome: 'success' | 'error', seconds: number) => void;
}

type Custom<T> = T & KubernetesObject;

interface Controller<T extends KubernetesObject> {
  kind: string;
  cache: ObjectCache<T>;
  queue: WorkQueue;
  reconcile(obj: T): Promise<Result>;
}

export class Manager {
  private readonly caches;
  private readonly deps: KubeDeps;
  private readonly controllers: Controller<KubernetesObject>[];
  private readonly log: Logger;
  private running: Promise<void>[] = [];

  constructor(private readonly options: ManagerOptions) {
    const kc = options.kubeConfig;
    this.log = options.logger.child({ component: 'manager' });
    const custom = kc.makeApiClient(CustomObjectsApi);
    const batch = kc.makeApiClient(BatchV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    const watchLog = (message: string, fields?: Record<string, unknown>) => this.log.debug(fields ?? {}, message);
    const customCache = <T>(plural: string) => new ObjectCache<Custom<T>>(kc, {
      path: `/apis/${GROUP}/${VERSION}/${plural}`,
      list: async () => (await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })) as { items: Custom<T>[]; metadata?: { resourceVersion?: string } },
    }, watchLog);
    this.caches = {
      sparseFineTunes: customCache<SparseFineTune>('sparsefinetunes'),
      adapterClusters: customCache<AdapterCluster>('adapterclusters'),
      loraServers: customCache<LoRAServer>('loraservers'),
      jobs: new ObjectCache<V1Job>(kc, { path: '/apis/batch/v1/jobs', query: { labelSelector: MANAGED }, list: () => batch.listJobForAllNamespaces({ labelSelector: MANAGED }) }, watchLog),
      deployments: new ObjectCache<V1Deployment>(kc, { path: '/apis/apps/v1/deployments', query: { labelSelector: MANAGED }, list: () => apps.listDeploymentForAllNamespaces({ labelSelector: MANAGED }) }, watchLog),
    };
    this.deps = new KubeDeps(kc, this.caches, options.settings, this.log, options.caBundlePem);
    const withCa = <T extends KubernetesObject>(fn: (obj: T) => Promise<Result>) => async (obj: T): Promise<Result> => {
      await this.deps.ensureCa(obj.metadata?.namespace ?? '');
      return fn(obj);
    };
    const sft: Controller<Custom<SparseFineTune>> = { kind: 'SparseFineTune', cache: this.caches.sparseFineTunes, queue: new WorkQueue(), reconcile: withCa((o) => reconcileSparseFineTune(o, this.deps)) };
    const ac: Controller<Custom<AdapterCluster>> = { kind: 'AdapterCluster', cache: this.caches.adapterClusters, queue: new WorkQueue(), reconcile: withCa((o) => reconcileAdapterCluster(o, this.deps)) };
    const ls: Controller<Custom<LoRAServer>> = { kind: 'LoRAServer', cache: this.caches.loraServers, queue: new WorkQueue(), reconcile: withCa((o) => reconcileLoRAServer(o, this.deps)) };
    this.controllers = [sft, ac, ls] as unknown as Controller<KubernetesObject>[];

    // Each kind's own changes; then children to their controlling owner; then inputs to their consumers.
    for (const c of this.controllers) c.cache.onChange((obj) => c.queue.add(keyOf(obj)));
    const toOwner = (child: KubernetesObject): void => {
      const owner = child.metadata?.ownerReferences?.find((o) => o.controller && o.apiVersion === `${GROUP}/${VERSION}`);
      const target = this.controllers.find((c) => c.kind === owner?.kind);
      if (owner && target) target.queue.add(`${child.metadata?.namespace}/${owner.name}`);
    };
    this.caches.jobs.onChange(toOwner);
    this.caches.deployments.onChange(toOwner);
    this.caches.sparseFineTunes.onChange((obj) => {
      for (const consumer of this.caches.adapterClusters.list(obj.metadata?.namespace)) ac.queue.add(keyOf(consumer));
    });
    this.caches.adapterClusters.onChange((obj) => {
      for (const consumer of this.caches.loraServers.list(obj.metadata?.namespace)) {
        if (consumer.spec.adapterClusters.includes(obj.metadata?.name ?? '')) ls.queue.add(keyOf(consumer));
      }
    });
  }

  async start(): Promise<void> {
    await Promise.all(Object.values(this.caches).map((c) => c.start()));
    this.log.info('caches synced; controllers running');
    this.running = this.controllers.map((c) => this.work(c));
  }

  get synced(): boolean {
    return Object.values(this.caches).every((c) => c.hasSynced);
  }

  private async work(c: Controller<KubernetesObject>): Promise<void> {
    for (;;) {
      const key = await c.queue.get();
      if (key === undefined) return;
      const [namespace = '', name = ''] = key.split('/');
      const log = this.log.child({ controller: c.kind, namespace, name, reconcileID: randomUUID() });
      const started = process.hrtime.bigint();
      try {
        const obj = c.cache.get(namespace, name);
        const result = obj ? await c.reconcile(obj) : {};
        c.queue.forget(key);
        if (result.requeueAfter !== undefined) c.queue.addAfter(key, result.requeueAfter);
        this.options.onReconcile?.(c.kind, 'success', Number(process.hrtime.bigint() - started) / 1e9);
        log.debug('reconciled');
      } catch (err) {
        const conflict = typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 409;
        // A conflict only means the cache was behind a concurrent write: retry soon, quietly.
        if (conflict) log.debug({ err }, 'conflict; requeued');
        else log.error({ err }, 'reconcile failed; requeued with back-off');
        c.queue.addRateLimited(key);
        this.options.onReconcile?.(c.kind, 'error', Number(process.hrtime.bigint() - started) / 1e9);
      } finally {
        c.queue.done(key);
      }
    }
  }

  async stop(): Promise<void> {
    for (const c of this.controllers) c.queue.shutDown();
    for (const cache of Object.values(this.caches)) cache.stop();
    await Promise.all(this.running);
  }
}
