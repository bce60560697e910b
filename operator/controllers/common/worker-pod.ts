// The pod every worker runs in: the project image running one tessera-worker mode, its spec as a
// mounted file, a projected token for the status hub (audience tessera.dev), the hub's CA, and
// the volumes its storage URIs need. Hardened by default: non-root, read-only root, no capabilities.
import type { V1Container, V1EnvVar, V1OwnerReference, V1PodTemplateSpec, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { storageVolumes, type StorageUse } from './storage.js';

/** What the operator hands every worker. */
export interface WorkerSettings {
  image: string;
  /** host:port of the gRPC status hub as workers reach it. */
  statusAddress: string;
  /** ConfigMap in the workload's namespace holding the hub's CA bundle (key ca.crt). */
  caConfigMap: string;
  tokenAudience: string;
}

export const SPEC_DIR = '/etc/tessera/spec';
export const TOKEN_DIR = '/var/run/secrets/tessera.dev';
export const CA_DIR = '/etc/tessera/ca';
const TOKEN_SECONDS = 3600;

export interface OwnerInfo {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid: string;
  generation: number;
}

export interface WorkerPodInput {
  owner: OwnerInfo;
  mode: 'train' | 'compress' | 'serve';
  specConfigMap: string;
  storage: StorageUse[];
  /**
   * Put the object's generation into the pod's environment (default true). A long-running
   * Deployment leaves it out: a spec change that needs no new process must not restart pods.
   */
  generationInEnv?: boolean;
  resources: { gpus: number; cpu?: string; memory?: string; image?: string; nodeSelector?: Record<string, string>; tolerations?: Record<string, unknown>[]; affinity?: Record<string, unknown> };
  labels: Record<string, string>;
  restartPolicy: 'Never' | 'OnFailure' | 'Always';
  ports?: { name: string; containerPort: number }[];
  probes?: Pick<V1Container, 'readinessProbe' | 'livenessProbe' | 'startupProbe'>;
  settings: WorkerSettings;
}

export function ownerReference(owner: OwnerInfo): V1OwnerReference {
  return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid, controller: true, blockOwnerDeletion: true };
}

export function workerPodTemplate(input: WorkerPodInput): V1PodTemplateSpec {
  const { owner, settings } = input;
  const storage = storageVolumes(input.storage);
  const env: V1EnvVar[] = [
    { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    { name: 'TESSERA_STATUS_ADDRESS', value: settings.statusAddress },
    { name: 'TESSERA_CA_FILE', value: `${CA_DIR}/ca.crt` },
    { name: 'TESSERA_TOKEN_FILE', value: `${TOKEN_DIR}/token` },
    { name: 'TESSERA_OBJECT_API_VERSION', value: owner.apiVersion },
    { name: 'TESSERA_OBJECT_KIND', value: owner.kind },
    { name: 'TESSERA_OBJECT_NAMESPACE', value: owner.namespace },
    { name: 'TESSERA_OBJECT_NAME', value: owner.name },
    { name: 'TESSERA_OBJECT_UID', value: owner.uid },
    ...(input.generationInEnv === false ? [] : [{ name: 'TESSERA_OBJECT_GENERATION', value: String(owner.generation) }]),
    // Servers bind their pod IP rather than every address (on the process node pods share a host).
    { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
  ];
  const mounts: V1VolumeMount[] = [
    { name: 'spec', mountPath: SPEC_DIR, readOnly: true },
    { name: 'tessera-token', mountPath: TOKEN_DIR, readOnly: true },
    { name: 'tessera-ca', mountPath: CA_DIR, readOnly: true },
    { name: 'scratch', mountPath: '/tmp' },
    ...storage.mounts,
  ];
  const volumes: V1Volume[] = [
    { name: 'spec', configMap: { name: input.specConfigMap } },
    {
      name: 'tessera-token',
      projected: { sources: [{ serviceAccountToken: { audience: settings.tokenAudience, expirationSeconds: TOKEN_SECONDS, path: 'token' } }] },
    },
    { name: 'tessera-ca', configMap: { name: settings.caConfigMap, optional: true } },
    { name: 'scratch', emptyDir: {} },
    ...storage.volumes,
  ];
  const requests: Record<string, string> = {};
  if (input.resources.cpu) requests.cpu = input.resources.cpu;
  if (input.resources.memory) requests.memory = input.resources.memory;
  const limits: Record<string, string> = input.resources.gpus > 0 ? { 'nvidia.com/gpu': String(input.resources.gpus) } : {};
  const container: V1Container = {
    name: 'worker',
    image: input.resources.image ?? settings.image,
    command: ['tessera-worker'],
    args: [input.mode, '--spec', `${SPEC_DIR}/spec.json`],
    env,
    ports: input.ports,
    resources: { requests, limits },
    volumeMounts: mounts,
    securityContext: {
      runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
    },
    ...input.probes,
  };
  return {
    metadata: { labels: input.labels },
    spec: {
      restartPolicy: input.restartPolicy,
      // Workers talk to the hub, not the API server: no API credentials in the pod.
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      securityContext: { fsGroup: 65532 },
      containers: [container],
      volumes,
      nodeSelector: input.resources.nodeSelector,
      tolerations: input.resources.tolerations,
      affinity: input.resources.affinity,
    },
  };
}

/** Labels every child carries: who manages it and which object it belongs to. */
export function childLabels(owner: OwnerInfo, component: string): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'tessera',
    'app.kubernetes.io/component': component,
    'app.kubernetes.io/managed-by': 'tessera-operator',
    'tessera.dev/kind': owner.kind.toLowerCase(),
    'tessera.dev/name': owner.name.slice(0, 63),
  };
}
