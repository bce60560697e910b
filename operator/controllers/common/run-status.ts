// Status of a run-to-completion kind (SparseFineTune, AdapterCluster) from its Job, level-triggered:
// the same observation always gives the same conditions. Worker-reported stage and failure
// (written by the status hub) are kept when they belong to this generation.
import type { V1Job } from '@kubernetes/client-node';
import { ConditionType, Reason, type Condition } from '../../api/v1alpha1/index.js';
import { setCondition } from '../../runtime/conditions.js';

export interface RunObservation {
  generation: number;
  /** The Job of the current run, as the cache holds it; undefined right after it was created. */
  job: V1Job | undefined;
  conditions: readonly Condition[];
  stage: string | undefined;
  now: Date;
}

export interface RunStatus {
  conditions: Condition[];
  stage: string;
  startTime?: string;
  completionTime?: string;
  /** Set when the run finished: the generation its results belong to. */
  resultGeneration?: number;
  finished: boolean;
}

const WORKER_STAGES_WHILE_RUNNING = (stage: string | undefined): stage is string =>
  stage !== undefined && !['Pending', 'Succeeded', 'Failed', 'Starting'].includes(stage);

/** Sets a condition, keeping lastTransitionTime when its status did not change (the runtime's rule). */
export function withCondition(conditions: readonly Condition[], next: Omit<Condition, 'lastTransitionTime'>, now: Date): Condition[] {
  return setCondition(conditions, next, now);
}

function jobCondition(job: V1Job | undefined, type: string) {
  return job?.status?.conditions?.find((c) => c.type === type && c.status === 'True');
}

export function runStatus(obs: RunObservation): RunStatus {
  const { generation, job, now } = obs;
  const set = (conds: Condition[], type: string, status: Condition['status'], reason: string, message: string) =>
    withCondition(conds, { type, status, reason, message, observedGeneration: generation }, now);
  // A Failed condition the worker reported for this generation says more than the Job's "BackoffLimitExceeded".
  const workerFailure = obs.conditions.find((c) => c.type === ConditionType.Failed && c.status === 'True' && c.observedGeneration === generation);
  let conditions = [...obs.conditions];
  const startTime = job?.status?.startTime ? new Date(job.status.startTime).toISOString() : undefined;
  const complete = jobCondition(job, 'Complete') ?? jobCondition(job, 'SuccessCriteriaMet');
  const failed = jobCondition(job, 'Failed') ?? jobCondition(job, 'FailureTarget');

  if (complete) {
    const completionTime = job?.status?.completionTime ? new Date(job.status.completionTime).toISOString() : now.toISOString();
    conditions = set(conditions, ConditionType.Succeeded, 'True', Reason.Completed, `Job ${job?.metadata?.name} completed.`);
    conditions = set(conditions, ConditionType.Failed, 'False', Reason.Completed, '');
    conditions = set(conditions, ConditionType.Progressing, 'False', Reason.Completed, 'The run finished.');
    conditions = set(conditions, ConditionType.Degraded, 'False', Reason.Completed, '');
    conditions = set(conditions, ConditionType.Ready, 'True', Reason.Completed, 'Results of this generation are available.');
    return { conditions, stage: 'Succeeded', startTime, completionTime, resultGeneration: generation, finished: true };
  }
  if (failed || workerFailure) {
    const reason = workerFailure?.reason ?? failed?.reason ?? Reason.WorkerFailed;
    const message = workerFailure?.message || failed?.message || `Job ${job?.metadata?.name} failed.`;
    conditions = set(conditions, ConditionType.Failed, 'True', reason, message);
    conditions = set(conditions, ConditionType.Succeeded, 'False', reason, message);
    conditions = set(conditions, ConditionType.Progressing, 'False', reason, 'The run stopped.');
    conditions = set(conditions, ConditionType.Ready, 'False', reason, message);
    return { conditions, stage: 'Failed', startTime, finished: Boolean(failed) };
  }
  // A Pending pod counts as active in a Job; ready is what says the worker runs (older servers lack it).
  const active = (job?.status?.ready ?? job?.status?.active ?? 0) > 0;
  const retries = job?.status?.failed ?? 0;
  conditions = set(conditions, ConditionType.Succeeded, 'Unknown', Reason.Running, '');
  conditions = set(conditions, ConditionType.Failed, 'False', Reason.Running, '');
  conditions = set(conditions, ConditionType.Progressing, 'True', job ? (active ? Reason.Running : Reason.Pending) : Reason.JobCreated,
    job ? `Job ${job.metadata?.name} is ${active ? 'running' : 'waiting for its pod'}.` : 'Creating the Job.');
  conditions = set(conditions, ConditionType.Degraded, retries > 0 ? 'True' : 'False', retries > 0 ? Reason.WorkerFailed : Reason.Running,
    retries > 0 ? `${retries} worker pod(s) failed; retrying within backoffLimit.` : '');
  conditions = set(conditions, ConditionType.Ready, 'False', active ? Reason.Running : Reason.Pending, 'The run has not finished.');
  const stage = active ? (WORKER_STAGES_WHILE_RUNNING(obs.stage) ? obs.stage : 'Running') : 'Pending';
  return { conditions, stage, startTime, finished: false };
}
