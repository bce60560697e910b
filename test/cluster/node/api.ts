// The calls the process node makes to the API server, as a kubelet would make them.
import {
  CoordinationV1Api, CoreV1Api, PatchStrategy, StorageV1Api, setHeaderOptions,
  type KubeConfig, type V1ConfigMap, type V1Node, type V1PersistentVolumeClaim, type V1Pod, type V1PodStatus, type V1Secret,
} from '@kubernetes/client-node';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** HTTP status of a failed client-node call, if it carries one. */
export function statusCode(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof (err as { code: unknown }).code === 'number') {
    return (err as { code: number }).code;
  }
  return undefined;
}

export class NodeApi {
  readonly core: CoreV1Api;
  readonly coordination: CoordinationV1Api;
  readonly storage: StorageV1Api;

  constructor(readonly kubeConfig: KubeConfig) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.coordination = kubeConfig.makeApiClient(CoordinationV1Api);
    this.storage = kubeConfig.makeApiClient(StorageV1Api);
  }

  async registerNode(node: V1Node): Promise<void> {
    const name = node.metadata?.name ?? '';
    try {
      await this.core.createNode({ body: node });
    } catch (err) {
      if (statusCode(err) !== 409) throw err;
      await this.core.patchNode({ name, body: { metadata: { labels: node.metadata?.labels ?? {} } } }, mergePatch);
    }
  }

  async patchNodeStatus(name: string, status: V1Node['status']): Promise<void> {
    await this.core.patchNodeStatus({ name, body: { status } }, mergePatch);
  }

  async renewLease(nodeName: string, durationSeconds: number, now: Date): Promise<void> {
    const namespace = 'kube-node-lease';
    // Lease times are MicroTime: the apiserver insists on six fractional digits.
    const renewTime = now.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    const patch = { spec: { holderIdentity: nodeName, leaseDurationSeconds: durationSeconds, renewTime } };
    try {
      await this.coordination.patchNamespacedLease({ name: nodeName, namespace, body: patch }, mergePatch);
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
      await this.coordination.createNamespacedLease({
        namespace,
        body: { metadata: { name: nodeName, namespace }, spec: { holderIdentity: nodeName, leaseDurationSeconds: durationSeconds } },
      });
      await this.coordination.patchNamespacedLease({ name: nodeName, namespace, body: patch }, mergePatch);
    }
  }

  async patchPodStatus(pod: V1Pod, status: V1PodStatus): Promise<void> {
    await this.core.patchNamespacedPodStatus(
      { name: pod.metadata?.name ?? '', namespace: pod.metadata?.namespace ?? '', body: { status } },
      mergePatch,
    );
  }

  /** The kubelet's final delete once containers are gone; the uid precondition spares a same-named successor. */
  async finalizePodDeletion(pod: V1Pod): Promise<void> {
    try {
      await this.core.deleteNamespacedPod({
        name: pod.metadata?.name ?? '',
        namespace: pod.metadata?.namespace ?? '',
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata?.uid } },
      });
    } catch (err) {
      const code = statusCode(err);
      if (code !== 404 && code !== 409) throw err;
    }
  }

  async secret(namespace: string, name: string): Promise<V1Secret | undefined> {
    try {
      return await this.core.readNamespacedSecret({ name, namespace });
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
  }

  async configMap(namespace: string, name: string): Promise<V1ConfigMap | undefined> {
    try {
      return await this.core.readNamespacedConfigMap({ name, namespace });
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
  }

  async claim(namespace: string, name: string): Promise<V1PersistentVolumeClaim | undefined> {
    try {
      return await this.core.readNamespacedPersistentVolumeClaim({ name, namespace });
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
  }

  /** TokenRequest for a pod-bound token, as the kubelet mints projected serviceAccountToken volumes. */
  async requestToken(pod: V1Pod, audience: string | undefined, expirationSeconds: number): Promise<{ token: string; expiresAt: Date; lifetimeSeconds: number }> {
    const namespace = pod.metadata?.namespace ?? '';
    const result = await this.core.createNamespacedServiceAccountToken({
      name: pod.spec?.serviceAccountName ?? 'default',
      namespace,
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          audiences: audience ? [audience] : [],
          expirationSeconds,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata?.name, uid: pod.metadata?.uid },
        },
      },
    });
    const token = result.status?.token;
    if (!token) throw new Error(`TokenRequest for ${namespace}/${pod.spec?.serviceAccountName ?? 'default'} returned no token`);
    // The granted lifetime is in the response's spec: the apiserver caps it at --service-account-max-token-expiration.
    const lifetimeSeconds = result.spec?.expirationSeconds ?? expirationSeconds;
    return { token, expiresAt: new Date(result.status?.expirationTimestamp ?? Date.now() + lifetimeSeconds * 1000), lifetimeSeconds };
  }
}
