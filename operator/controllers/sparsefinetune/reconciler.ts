// SparseFineTune reconciler: one Job per spec (named by its hash); status from the Job and the
// worker's reports. Level-triggered and idempotent: reconciling twice changes nothing.
import type { SparseFineTune } from '../../api/v1alpha1/index.js';
import { statusUnchanged, type ReconcileDeps, type Result } from '../common/deps.js';
import { runStatus } from '../common/run-status.js';
import { desiredSparseFineTune } from './desired.js';

export async function reconcileSparseFineTune(sft: SparseFineTune, deps: ReconcileDeps): Promise<Result> {
  if (sft.metadata.deletionTimestamp) return {};
  const namespace = sft.metadata.namespace ?? '';
  const generation = sft.metadata.generation ?? 0;
  const children = desiredSparseFineTune(sft, deps.settings);
  const jobName = children.job.metadata?.name ?? '';

  // A changed spec means a new run: stop the runs of older specs so they free their GPUs.
  for (const stale of deps.jobsOf(namespace, 'SparseFineTune', sft.metadata.name ?? '')) {
    const name = stale.metadata?.name ?? '';
    if (name !== jobName && !stale.metadata?.deletionTimestamp && !stale.status?.completionTime) {
      await deps.deleteJob(namespace, name);
      deps.event(sft, 'Normal', 'RunSuperseded', `Deleted Job ${name}: the spec changed and Job ${jobName} runs it now.`);
    }
  }

  const job = deps.job(namespace, jobName);
  if (!job) {
    await deps.apply(children.configMap);
    await deps.apply(children.job);
    deps.event(sft, 'Normal', 'JobCreated', `Created Job ${jobName} for generation ${generation}.`);
  }

  const run = runStatus({ generation, job, conditions: sft.status?.conditions ?? [], stage: sft.status?.stage, now: deps.now() });
  const enroll = sft.spec.output.enrollInto;
  const status: Record<string, unknown> = {
    observedGeneration: generation,
    conditions: run.conditions,
    stage: run.stage,
    jobName,
    ...(run.startTime ? { startTime: run.startTime } : {}),
    ...(run.completionTime ? { completionTime: run.completionTime } : {}),
    ...(run.resultGeneration !== undefined ? { resultGeneration: run.resultGeneration } : {}),
    ...(enroll ? { lineage: { ...sft.status?.lineage, adapterCluster: enroll.adapterCluster, adapterName: enroll.adapterName } } : {}),
  };
  if (!statusUnchanged(sft.status as Record<string, unknown> | undefined, status)) await deps.patchStatus(sft, status);
  if (run.finished && job?.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True')) {
    deps.event(sft, 'Warning', run.conditions.find((c) => c.type === 'Failed')?.reason ?? 'Failed', `Job ${jobName} failed.`);
  }
  return {};
}
