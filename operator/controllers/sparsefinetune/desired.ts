// Desired children of a SparseFineTune: a spec ConfigMap and a Job running `tessera-worker train`.
// The Job name carries a hash of the spec, so a spec change starts a new run and the old result
// stays attributable to its generation.
import type { V1ConfigMap, V1Job } from '@kubernetes/client-node';
import type { SparseFineTune } from '../../api/v1alpha1/index.js';
import { contentHash } from '../common/hash.js';
import { childName } from '../common/names.js';
import { ownerInfo, specConfigMap } from '../common/spec-file.js';
import { childLabels, ownerReference, workerPodTemplate, type WorkerSettings } from '../common/worker-pod.js';

export interface SparseFineTuneChildren {
  runHash: string;
  configMap: V1ConfigMap;
  job: V1Job;
}

export function storageOf(sft: SparseFineTune): { uri: string; writable: boolean }[] {
  const { spec } = sft;
  const uris = [
    { uri: spec.baseModel.uri, writable: false },
    { uri: spec.dataset.uri, writable: false },
    { uri: spec.output.uri, writable: true },
  ];
  if (spec.dataset.evalUri) uris.push({ uri: spec.dataset.evalUri, writable: false });
  if (spec.calibration?.uri) uris.push({ uri: spec.calibration.uri, writable: false });
  if (spec.loram?.align) uris.push({ uri: spec.loram.align.uri, writable: false });
  return uris;
}

export function desiredSparseFineTune(sft: SparseFineTune, settings: WorkerSettings): SparseFineTuneChildren {
  const owner = ownerInfo(sft);
  const runHash = contentHash(sft.spec);
  const name = childName(owner.name, `train-${runHash.slice(0, 8)}`);
  const labels = { ...childLabels(owner, 'train'), 'tessera.dev/run': runHash };
  const storage = storageOf(sft);
  const template = workerPodTemplate({
    owner, mode: 'train', specConfigMap: name, storage, resources: sft.spec.resources, labels,
    restartPolicy: 'Never', settings,
  });
  const job: V1Job = {
    apiVersion: 'batch/v1', kind: 'Job',
    metadata: { name, namespace: owner.namespace, labels, annotations: { 'tessera.dev/generation': String(owner.generation) }, ownerReferences: [ownerReference(owner)] },
    spec: {
      backoffLimit: sft.spec.backoffLimit,
      activeDeadlineSeconds: sft.spec.activeDeadlineSeconds,
      // A crashed pod is retried per backoffLimit; a worker that reports a permanent failure exits 3 and is not.
      podFailurePolicy: { rules: [{ action: 'FailJob', onExitCodes: { containerName: 'worker', operator: 'In', values: [3] } }] },
      template,
    },
  };
  return { runHash, configMap: specConfigMap(owner, name, labels, sft.spec, storage), job };
}
