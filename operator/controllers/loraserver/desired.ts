// Desired children of a LoRAServer: a spec ConfigMap, a Deployment running `tessera-worker serve`
// and a Service. Bundle revisions are not part of the pod template: they reach running replicas
// as gRPC directives, so a new revision never restarts a pod.
import type { V1ConfigMap, V1Deployment, V1Service } from '@kubernetes/client-node';
import type { LoRAServer } from '../../api/v1alpha1/index.js';
import { contentHash } from '../common/hash.js';
import { childName } from '../common/names.js';
import { ownerInfo, specConfigMap } from '../common/spec-file.js';
import { resolveStorage, type StorageUse } from '../common/storage.js';
import { childLabels, ownerReference, workerPodTemplate, type WorkerSettings } from '../common/worker-pod.js';

export const SERVE_PORT = 8000;

export interface ServedBundle {
  adapterCluster: string;
  revision: string;
  uri: string;
  /** sha256 of its bundle.safetensors (the AdapterCluster's bundleDigest), when known. */
  sha256?: string;
}

/** A revision of the whole set of bundles a LoRAServer serves: one per AdapterCluster. */
export interface BundleSet {
  /** Content hash of the (AdapterCluster, revision) pairs; '' for the empty set. */
  revision: string;
  bundles: ServedBundle[];
}

export function bundleSet(bundles: readonly ServedBundle[]): BundleSet {
  const sorted = [...bundles].sort((a, b) => a.adapterCluster.localeCompare(b.adapterCluster));
  return { revision: sorted.length > 0 ? contentHash(sorted.map((b) => [b.adapterCluster, b.revision])) : '', bundles: sorted };
}

/** The set with each bundle's location as a replica sees it, as the spec file and directives carry it. */
export function inPodBundleSet(set: BundleSet): { revision: string; bundles: { adapterCluster: string; revision: string; uri: string; sha256: string }[] } {
  return {
    revision: set.revision,
    bundles: set.bundles.map((b) => ({ adapterCluster: b.adapterCluster, revision: b.revision, uri: resolveStorage(b.uri, false).location, sha256: b.sha256 ?? '' })),
  };
}

export interface LoRAServerInputs {
  /** The set a replica loads when it starts. */
  startSet: BundleSet;
  /** Output URIs of the referenced AdapterClusters: mounted as folders, so new revisions appear in running pods. */
  bundleRoots: string[];
}

export interface LoRAServerChildren {
  templateHash: string;
  configMap: V1ConfigMap;
  deployment: V1Deployment;
  service: V1Service;
}

export function desiredLoRAServer(ls: LoRAServer, inputs: LoRAServerInputs, settings: WorkerSettings): LoRAServerChildren {
  const owner = ownerInfo(ls);
  const { adapterClusters: _clusters, adapters: _adapters, replicas: _replicas, autoscaling: _autoscaling, ...podShaping } = ls.spec;
  // Only what needs new processes goes into the template hash; adapters and revisions are hot-swapped.
  const templateHash = contentHash(podShaping);
  const name = childName(owner.name, 'server');
  const labels = childLabels(owner, 'server');
  const storage: StorageUse[] = [
    { uri: ls.spec.baseModel.uri, writable: false },
    ...[...new Set(inputs.bundleRoots)].sort().map((uri) => ({ uri, writable: false, folder: true })),
    ...ls.spec.adapters.map((a) => ({ uri: a.uri, writable: false })),
  ];
  const template = workerPodTemplate({
    owner, mode: 'serve', specConfigMap: name, storage, resources: ls.spec.resources, labels, restartPolicy: 'Always', settings, generationInEnv: false,
    ports: [{ name: 'http', containerPort: SERVE_PORT }],
    probes: {
      readinessProbe: { httpGet: { path: '/health', port: 'http' }, periodSeconds: 2, failureThreshold: 2 },
      livenessProbe: { httpGet: { path: '/health', port: 'http' }, periodSeconds: 10, failureThreshold: 6, initialDelaySeconds: 10 },
    },
  });
  template.metadata = { ...template.metadata, annotations: { 'tessera.dev/template-hash': templateHash } };
  const deployment: V1Deployment = {
    apiVersion: 'apps/v1', kind: 'Deployment',
    metadata: { name, namespace: owner.namespace, labels, ownerReferences: [ownerReference(owner)] },
    spec: {
      replicas: ls.spec.replicas,
      selector: { matchLabels: { 'tessera.dev/kind': labels['tessera.dev/kind'] ?? '', 'tessera.dev/name': labels['tessera.dev/name'] ?? '' } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: ls.spec.rollout.maxUnavailable, maxSurge: 1 } },
      template,
    },
  };
  const service: V1Service = {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: owner.name, namespace: owner.namespace, labels, ownerReferences: [ownerReference(owner)] },
    spec: {
      type: ls.spec.service.type,
      selector: deployment.spec?.selector.matchLabels,
      ports: [{ name: 'http', port: ls.spec.service.port, targetPort: 'http', protocol: 'TCP' }],
    },
  };
  const serveInputs = { bundleSet: inPodBundleSet(inputs.startSet), port: SERVE_PORT };
  return { templateHash, configMap: specConfigMap(owner, name, labels, ls.spec, storage, serveInputs), deployment, service };
}
