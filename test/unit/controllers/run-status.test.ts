// How a run-to-completion object's conditions follow its Job and its worker's reports.
import assert from 'node:assert/strict';
import type { V1Job } from '@kubernetes/client-node';
import type { Condition } from '../../../operator/api/v1alpha1/index.js';
import { runStatus } from '../../../operator/controllers/common/run-status.js';

const now = new Date('2026-11-23T12:00:00Z');
const later = new Date('2026-11-23T12:05:00Z');
const job = (status: V1Job['status']): V1Job => ({ metadata: { name: 'x-train-abc' }, status });
const get = (conds: Condition[], type: string) => conds.find((c) => c.type === type);

describe('run status', () => {
  it('says Progressing while the Job is being created, with every condition at this generation', () => {
    const s = runStatus({ generation: 2, job: undefined, conditions: [], stage: undefined, now });
    assert.equal(get(s.conditions, 'Progressing')?.status, 'True');
    assert.equal(get(s.conditions, 'Progressing')?.reason, 'JobCreated');
    assert.equal(get(s.conditions, 'Ready')?.status, 'False');
    assert.ok(s.conditions.every((c) => c.observedGeneration === 2));
    assert.equal(s.stage, 'Pending');
  });

  it('says Pending while the Job\'s pod exists but is not ready yet', () => {
    const s = runStatus({ generation: 1, job: job({ active: 1, ready: 0 }), conditions: [], stage: undefined, now });
    assert.equal(s.stage, 'Pending');
    assert.match(get(s.conditions, 'Progressing')?.message ?? '', /waiting for its pod/);
  });

  it('keeps the stage the worker reports while its pod runs', () => {
    const s = runStatus({ generation: 1, job: job({ active: 1 }), conditions: [], stage: 'Pruning', now });
    assert.equal(s.stage, 'Pruning');
    assert.equal(get(s.conditions, 'Progressing')?.reason, 'Running');
  });

  it('marks a retried pod as Degraded but still Progressing', () => {
    const s = runStatus({ generation: 1, job: job({ active: 1, failed: 1 }), conditions: [], stage: undefined, now });
    assert.equal(get(s.conditions, 'Degraded')?.status, 'True');
    assert.equal(get(s.conditions, 'Progressing')?.status, 'True');
  });

  it('turns a complete Job into Succeeded and Ready with the result generation', () => {
    const s = runStatus({ generation: 3, job: job({ conditions: [{ type: 'Complete', status: 'True' }], completionTime: later }), conditions: [], stage: 'Training', now });
    assert.equal(get(s.conditions, 'Succeeded')?.status, 'True');
    assert.equal(get(s.conditions, 'Ready')?.status, 'True');
    assert.equal(s.resultGeneration, 3);
    assert.equal(s.completionTime, later.toISOString());
    assert.equal(s.stage, 'Succeeded');
  });

  it('prefers the worker\'s failure reason over the Job\'s', () => {
    const reported: Condition = { type: 'Failed', status: 'True', reason: 'NotImplemented', message: 'train is not implemented yet', lastTransitionTime: now.toISOString(), observedGeneration: 1 };
    const s = runStatus({ generation: 1, job: job({ conditions: [{ type: 'Failed', status: 'True', reason: 'PodFailurePolicy', message: 'exit code 3' }] }), conditions: [reported], stage: undefined, now: later });
    assert.equal(get(s.conditions, 'Failed')?.reason, 'NotImplemented');
    assert.equal(get(s.conditions, 'Ready')?.message, 'train is not implemented yet');
    assert.equal(get(s.conditions, 'Failed')?.lastTransitionTime, now.toISOString(), 'an unchanged status keeps its transition time');
    assert.equal(s.stage, 'Failed');
  });

  it('ignores a failure reported for an older generation once a new run starts', () => {
    const old: Condition = { type: 'Failed', status: 'True', reason: 'WorkerFailed', message: 'old', lastTransitionTime: now.toISOString(), observedGeneration: 1 };
    const s = runStatus({ generation: 2, job: job({ active: 1 }), conditions: [old], stage: undefined, now: later });
    assert.equal(get(s.conditions, 'Failed')?.status, 'False');
    assert.equal(get(s.conditions, 'Progressing')?.status, 'True');
  });

  it('uses the Job\'s reason when the worker reported nothing', () => {
    const s = runStatus({ generation: 1, job: job({ conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' }] }), conditions: [], stage: undefined, now });
    assert.equal(get(s.conditions, 'Failed')?.reason, 'BackoffLimitExceeded');
  });
});
