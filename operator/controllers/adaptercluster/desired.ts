// Desired children of an AdapterCluster: a spec ConfigMap and a Job running `tessera-worker compress`.
// The run hash covers the spec and the resolved adapter inputs, so it is the bundle revision key.
import type { V1ConfigMap, V1Job } from '@kubernetes/client-node';
import type { AdapterCluster } from '../../api/v1alpha1/index.js';
import { contentHash } from '../common/hash.js';
import { childName } from '../common/names.js';
import { ownerInfo, specConfigMap } from '../common/spec-file.js';
import { childLabels, ownerReference, workerPodTemplate, type WorkerSettings } from '../common/worker-pod.js';

/** An adapter with its source resolved (a SparseFineTune reference becomes that run's adapter URI). */
export interface ResolvedAdapter {
  name: string;
  uri: string;
  sha256?: string;
  sparseFineTune?: string;
}

export interface AdapterClusterChildren {
  runHash: string;
  configMap: V1ConfigMap;
  job: V1Job;
}

export function desiredAdapterCluster(ac: AdapterCluster, adapters: ResolvedAdapter[], settings: WorkerSettings): AdapterClusterChildren {
  const owner = ownerInfo(ac);
  const runHash = contentHash({ spec: ac.spec, adapters });
  const name = childName(owner.name, `compress-${runHash.slice(0, 8)}`);
  const labels = { ...childLabels(owner, 'compress'), 'tessera.dev/run': runHash };
  const storage = [
    { uri: ac.spec.baseModel.uri, writable: false },
    ...adapters.map((a) => ({ uri: a.uri, writable: false })),
    { uri: ac.spec.output.uri, writable: true },
    ...(ac.spec.qualityGate?.evalUri ? [{ uri: ac.spec.qualityGate.evalUri, writable: false }] : []),
  ];
  const template = workerPodTemplate({
    owner, mode: 'compress', specConfigMap: name, storage, resources: ac.spec.resources, labels, restartPolicy: 'Never', settings,
  });
  const job: V1Job = {
    apiVersion: 'batch/v1', kind: 'Job',
    metadata: { name, namespace: owner.namespace, labels, annotations: { 'tessera.dev/generation': String(owner.generation) }, ownerReferences: [ownerReference(owner)] },
    spec: {
      backoffLimit: 2,
      podFailurePolicy: { rules: [{ action: 'FailJob', onExitCodes: { containerName: 'worker', operator: 'In', values: [3] } }] },
      template,
    },
  };
  return { runHash, configMap: specConfigMap(owner, name, labels, ac.spec, storage, { adapters }), job };
}
