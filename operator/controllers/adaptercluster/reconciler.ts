// AdapterCluster reconciler: resolve the adapters (URIs, SparseFineTune outputs, runs enrolling
// into it), wait for inputs that are not ready, then one compress Job per input set.
import type { AdapterCluster, SparseFineTune } from '../../api/v1alpha1/index.js';
import { ConditionType, Reason } from '../../api/v1alpha1/index.js';
import { statusUnchanged, type ReconcileDeps, type Result } from '../common/deps.js';
import { runStatus, withCondition } from '../common/run-status.js';
import { desiredAdapterCluster, type ResolvedAdapter } from './desired.js';

interface Resolution {
  adapters: ResolvedAdapter[];
  /** SparseFineTunes whose adapter does not exist yet. */
  waitingFor: string[];
}

function succeeded(sft: SparseFineTune | undefined): boolean {
  return sft?.status?.conditions?.some((c) => c.type === ConditionType.Succeeded && c.status === 'True' && c.observedGeneration === sft.metadata.generation) ?? false;
}

/** spec.adapters plus every SparseFineTune in the namespace that enrolls into this cluster. */
export function resolveAdapters(ac: AdapterCluster, deps: Pick<ReconcileDeps, 'sparseFineTune' | 'sparseFineTunes'>): Resolution {
  const namespace = ac.metadata.namespace ?? '';
  const entries = [...ac.spec.adapters.map((a) => ({ ...a }))];
  for (const sft of deps.sparseFineTunes(namespace)) {
    const enroll = sft.spec.output.enrollInto;
    if (enroll && enroll.adapterCluster === ac.metadata.name && !entries.some((e) => e.name === enroll.adapterName)) {
      entries.push({ name: enroll.adapterName, sparseFineTune: sft.metadata.name ?? '' });
    }
  }
  const adapters: ResolvedAdapter[] = [];
  const waitingFor: string[] = [];
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.uri) {
      adapters.push({ name: entry.name, uri: entry.uri, ...(entry.sha256 ? { sha256: entry.sha256 } : {}) });
      continue;
    }
    const sft = deps.sparseFineTune(namespace, entry.sparseFineTune ?? '');
    const uri = sft?.status?.outputs?.adapterUri;
    if (!succeeded(sft) || !uri) {
      waitingFor.push(entry.sparseFineTune ?? '');
      continue;
    }
    adapters.push({ name: entry.name, uri, sparseFineTune: entry.sparseFineTune });
  }
  return { adapters, waitingFor };
}

export async function reconcileAdapterCluster(ac: AdapterCluster, deps: ReconcileDeps): Promise<Result> {
  if (ac.metadata.deletionTimestamp) return {};
  const namespace = ac.metadata.namespace ?? '';
  const generation = ac.metadata.generation ?? 0;
  const now = deps.now();
  const { adapters, waitingFor } = resolveAdapters(ac, deps);
  const lineage = adapters.filter((a) => a.sparseFineTune).map((a) => ({ name: a.name, sparseFineTune: a.sparseFineTune }));

  if (waitingFor.length > 0) {
    const message = `Waiting for the adapters of SparseFineTune ${waitingFor.join(', ')} to be trained.`;
    let conditions = ac.status?.conditions ?? [];
    conditions = withCondition(conditions, { type: ConditionType.Progressing, status: 'True', reason: Reason.InputNotReady, message, observedGeneration: generation }, now);
    conditions = withCondition(conditions, { type: ConditionType.Ready, status: ac.status?.revision ? 'True' : 'False', reason: Reason.InputNotReady, message, observedGeneration: generation }, now);
    const status = { observedGeneration: generation, conditions, stage: 'WaitingForInputs' };
    if (!statusUnchanged(ac.status as Record<string, unknown> | undefined, status)) await deps.patchStatus(ac, status);
    return {};
  }

  const children = desiredAdapterCluster(ac, adapters, deps.settings);
  const jobName = children.job.metadata?.name ?? '';
  for (const stale of deps.jobsOf(namespace, 'AdapterCluster', ac.metadata.name ?? '')) {
    const name = stale.metadata?.name ?? '';
    if (name !== jobName && !stale.metadata?.deletionTimestamp && !stale.status?.completionTime) await deps.deleteJob(namespace, name);
  }
  const job = deps.job(namespace, jobName);
  if (!job) {
    await deps.apply(children.configMap);
    await deps.apply(children.job);
    deps.event(ac, 'Normal', 'JobCreated', `Created Job ${jobName} to compress ${adapters.length} adapters.`);
  }
  const run = runStatus({ generation, job, conditions: ac.status?.conditions ?? [], stage: ac.status?.stage, now });
  const status: Record<string, unknown> = {
    observedGeneration: generation,
    conditions: run.conditions,
    stage: run.stage === 'Running' ? 'Compressing' : run.stage,
    jobName,
    ...(run.startTime ? { startTime: run.startTime } : {}),
    ...(run.completionTime ? { completionTime: run.completionTime } : {}),
    ...(run.resultGeneration !== undefined ? { resultGeneration: run.resultGeneration } : {}),
  };
  if (lineage.length > 0 && !ac.status?.adapters) status.adapters = lineage;
  if (!statusUnchanged(ac.status as Record<string, unknown> | undefined, status)) await deps.patchStatus(ac, status);
  return {};
}
