// From a pod to the Tessera object that owns it, by controller ownerReferences:
//   Pod → Job → SparseFineTune | AdapterCluster
//   Pod → ReplicaSet → Deployment → LoRAServer
// Only controller references count: any object may add a plain ownerReference to a pod,
// but only the controlling owner created it.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ApiException, AppsV1Api, BatchV1Api, CoreV1Api, type KubeConfig, type V1ObjectMeta, type V1OwnerReference } from '@kubernetes/client-node';
import { AuthError, describe, type PodIdentity } from './auth.js';

export const TESSERA_GROUP = 'tessera.dev';
export const TESSERA_KINDS = ['SparseFineTune', 'AdapterCluster', 'LoRAServer'] as const;

/** The custom resource a pod works for. */
export interface OwnerRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid: string;
}

/** Finds the object a pod may report for; throws AuthError. */
export interface OwnerResolver {
  resolve(pod: PodIdentity): Promise<OwnerRef>;
}

export interface KubeOwnerResolverOptions {
  /** Kinds in group tessera.dev that may own workers. */
  kinds?: readonly string[];
}

type Step = (namespace: string, name: string) => Promise<V1ObjectMeta | undefined>;

/** Reads the chain through the API server; needs get on pods, jobs, replicasets, deployments. */
export class KubeOwnerResolver implements OwnerResolver {
  private readonly core: CoreV1Api;
  private readonly steps: Record<string, Step>;
  private readonly kinds: ReadonlySet<string>;

  constructor(kubeConfig: KubeConfig, options: KubeOwnerResolverOptions = {}) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    const batch = kubeConfig.makeApiClient(BatchV1Api);
    const apps = kubeConfig.makeApiClient(AppsV1Api);
    this.kinds = new Set(options.kinds ?? TESSERA_KINDS);
    // The intermediate owners we are willing to walk through, keyed by apiVersion/kind.
    this.steps = {
      'batch/v1/Job': (namespace, name) => batch.readNamespacedJob({ namespace, name }).then((o) => o.metadata),
      'apps/v1/ReplicaSet': (namespace, name) => apps.readNamespacedReplicaSet({ namespace, name }).then((o) => o.metadata),
      'apps/v1/Deployment': (namespace, name) => apps.readNamespacedDeployment({ namespace, name }).then((o) => o.metadata),
    };
  }

  async resolve(pod: PodIdentity): Promise<OwnerRef> {
    const podMeta = await this.read(`Pod ${pod.namespace}/${pod.podName}`, () =>
      this.core.readNamespacedPod({ namespace: pod.namespace, name: pod.podName }).then((p) => p.metadata),
    );
    // A token outlives nothing: if the pod was replaced by a namesake, the token is not its.
    if (!podMeta || podMeta.uid !== pod.podUid) {
      throw new AuthError(GrpcStatus.UNAUTHENTICATED, `pod ${pod.namespace}/${pod.podName} with uid ${pod.podUid} no longer exists`);
    }
    let meta: V1ObjectMeta = podMeta;
    let path = `Pod/${pod.podName}`;
    // Pod → ReplicaSet → Deployment → owner is the longest chain; allow one spare hop.
    for (let depth = 0; depth < 4; depth++) {
      const ref = controllerOf(meta);
      if (!ref) break;
      const group = ref.apiVersion.split('/')[0];
      if (group === TESSERA_GROUP && this.kinds.has(ref.kind)) {
        return { apiVersion: ref.apiVersion, kind: ref.kind, namespace: pod.namespace, name: ref.name, uid: ref.uid };
      }
      const step = this.steps[`${ref.apiVersion}/${ref.kind}`];
      if (!step) break;
      path += ` → ${ref.kind}/${ref.name}`;
      const next = await this.read(`${ref.kind} ${pod.namespace}/${ref.name}`, () => step(pod.namespace, ref.name));
      if (!next || next.uid !== ref.uid) break;
      meta = next;
    }
    throw new AuthError(
      GrpcStatus.PERMISSION_DENIED,
      `pod ${pod.namespace}/${pod.podName} is not owned by a ${[...this.kinds].join(', ')} (${TESSERA_GROUP}); owner chain: ${path}`,
    );
  }

  /** A missing object ends the walk; any other API failure is UNAVAILABLE, so the worker retries. */
  private async read(what: string, get: () => Promise<V1ObjectMeta | undefined>): Promise<V1ObjectMeta | undefined> {
    try {
      return await get();
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw new AuthError(GrpcStatus.UNAVAILABLE, `cannot read ${what}: ${describe(err)}`, { cause: err });
    }
  }
}

function controllerOf(meta: V1ObjectMeta): V1OwnerReference | undefined {
  return meta.ownerReferences?.find((r) => r.controller === true);
}
