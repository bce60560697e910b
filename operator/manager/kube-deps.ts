// ReconcileDeps on a real API server: reads from the informer caches, writes children with
// server-side apply, status through /status with optimistic concurrency, and core Events.
import { BatchV1Api, CoreV1Api, type KubeConfig, type KubernetesObject, type V1Deployment, type V1Job } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { AdapterCluster, LoRAServer, SparseFineTune } from '../api/v1alpha1/index.js';
import type { ReconcileDeps } from '../controllers/common/deps.js';
import { contentHash } from '../controllers/common/hash.js';
import type { BundleRolloutDriver } from '../controllers/loraserver/rollout.js';
import type { WorkerSettings } from '../controllers/common/worker-pod.js';
import { applyObject, patchStatus } from '../runtime/apply.js';
import type { Informer } from '../runtime/informer.js';
import { RestClient } from '../runtime/rest.js';

export const FIELD_MANAGER = 'tessera-operator';
/**
 * How long the CA ConfigMap published in a namespace is taken to still be there. Every reconcile
 * asks for it; applying it each time was half of the operator's API requests when 600 objects
 * arrived at once (bench/operator.ts). Re-applying after this long still brings back a deleted one.
 */
const CA_REAPPLY_MS = 60_000;
/** Children the operator does not watch (ConfigMaps, Services) are re-applied at least this often, like a resync. */
const REAPPLY_MS = 10 * 60_000;

/** Informer caches the reconcilers read from; their objects are frozen, and reconcilers never mutate them. */
export interface Caches {
  sparseFineTunes: Informer<SparseFineTune & KubernetesObject>;
  adapterClusters: Informer<AdapterCluster & KubernetesObject>;
  loraServers: Informer<LoRAServer & KubernetesObject>;
  jobs: Informer<V1Job>;
  deployments: Informer<V1Deployment>;
}

export class KubeDeps implements ReconcileDeps {
  private readonly rest: RestClient;
  private readonly batch: BatchV1Api;
  private readonly core: CoreV1Api;
  /** What apply() last sent per child, so an unchanged child is not sent again (REAPPLY_MS bounds drift we cannot watch). */
  private readonly lastApplied = new Map<string, { hash: string; at: number; generation: number | undefined }>();
  /** Namespace → when its CA ConfigMap was last applied (ms since the epoch). */
  private readonly caApplied = new Map<string, number>();

  constructor(
    kubeConfig: KubeConfig, private readonly caches: Caches, readonly settings: WorkerSettings, private readonly log: Logger,
    private readonly caBundlePem: string | undefined, readonly rollouts?: BundleRolloutDriver,
  ) {
    this.rest = new RestClient(kubeConfig);
    this.batch = kubeConfig.makeApiClient(BatchV1Api);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
  }

  now(): Date {
    return new Date();
  }

  /**
   * Server-side apply, skipped when this exact object was applied recently and the cached child
   * (for the kinds the operator watches) still has the generation that apply left: most
   * reconciles are triggered by status changes and would otherwise re-send every child.
   */
  async apply(obj: KubernetesObject): Promise<void> {
    const key = `${obj.apiVersion}/${obj.kind}/${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
    const hash = contentHash(obj, 64);
    const last = this.lastApplied.get(key);
    if (last && last.hash === hash && this.now().getTime() - last.at < REAPPLY_MS && this.unchangedSince(obj, last.generation)) return;
    const result = await this.serverSideApply(obj);
    this.lastApplied.set(key, { hash, at: this.now().getTime(), generation: result.metadata?.generation });
  }

  /** The one write apply() makes; returns the object as the API server stored it. */
  protected async serverSideApply(obj: KubernetesObject): Promise<KubernetesObject> {
    // Through the runtime's client: it keeps connections alive, where client-node's typed APIs open one per request.
    return applyObject(this.rest, obj);
  }

  /** False when the watched copy of a child shows someone changed its spec after our apply. */
  private unchangedSince(obj: KubernetesObject, generation: number | undefined): boolean {
    const cacheKey = `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
    const cached = obj.kind === 'Deployment' ? this.caches.deployments.get(cacheKey) : obj.kind === 'Job' ? this.caches.jobs.get(cacheKey) : undefined;
    if (obj.kind === 'Deployment' || obj.kind === 'Job') return cached !== undefined && cached.metadata?.generation === generation;
    return true;
  }

  /** The hub's CA in the workload's namespace, so worker pods can mount it. */
  async ensureCa(namespace: string): Promise<void> {
    if (!this.caBundlePem) return;
    const applied = this.caApplied.get(namespace);
    if (applied !== undefined && this.now().getTime() - applied < CA_REAPPLY_MS) return;
    await this.apply({
      apiVersion: 'v1', kind: 'ConfigMap',
      metadata: { name: this.settings.caConfigMap, namespace, labels: { 'app.kubernetes.io/managed-by': FIELD_MANAGER } },
      data: { 'ca.crt': this.caBundlePem },
    } as KubernetesObject);
    this.caApplied.set(namespace, this.now().getTime());
  }

  async patchStatus(obj: KubernetesObject, status: Record<string, unknown>): Promise<void> {
    // resourceVersion makes this a compare-and-swap: a concurrent write by the status hub is never lost.
    await patchStatus(this.rest, obj, status);
  }

  async deleteJob(namespace: string, name: string): Promise<void> {
    await this.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' });
  }

  job(namespace: string, name: string): V1Job | undefined {
    return this.caches.jobs.get(`${namespace}/${name}`);
  }

  jobsOf(namespace: string, kind: string, name: string): V1Job[] {
    return this.caches.jobs.list(namespace).filter((j) => j.metadata?.labels?.['tessera.dev/kind'] === kind.toLowerCase() && j.metadata?.labels?.['tessera.dev/name'] === name.slice(0, 63));
  }

  deployment(namespace: string, name: string): V1Deployment | undefined {
    return this.caches.deployments.get(`${namespace}/${name}`);
  }

  sparseFineTune(namespace: string, name: string): SparseFineTune | undefined {
    return this.caches.sparseFineTunes.get(`${namespace}/${name}`);
  }

  sparseFineTunes(namespace: string): SparseFineTune[] {
    return this.caches.sparseFineTunes.list(namespace);
  }

  adapterCluster(namespace: string, name: string): AdapterCluster | undefined {
    return this.caches.adapterClusters.get(`${namespace}/${name}`);
  }

  event(obj: KubernetesObject, type: 'Normal' | 'Warning', reason: string, note: string): void {
    const now = new Date();
    const namespace = obj.metadata?.namespace ?? 'default';
    this.core.createNamespacedEvent({
      namespace,
      body: {
        metadata: { generateName: `${obj.metadata?.name ?? 'object'}.`, namespace },
        involvedObject: { apiVersion: obj.apiVersion, kind: obj.kind, name: obj.metadata?.name, namespace, uid: obj.metadata?.uid },
        reason, message: note, type, firstTimestamp: now, lastTimestamp: now, count: 1,
        source: { component: FIELD_MANAGER }, reportingComponent: 'tessera.dev/operator',
      },
    }).catch((err: unknown) => this.log.warn({ err, reason }, 'cannot record event'));
  }
}
