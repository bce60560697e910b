// The default mapping from worker state to .status fields.
import assert from 'node:assert/strict';
import { defaultStatusMapper, setCondition } from '../../../operator/status/sink.js';
import { emptyState, foldReport } from '../../../operator/status/state.js';
import type { WorkerReport } from '../../../operator/status/wire.js';
import { objectRef } from './harness.js';

const header = { seq: 1, object: objectRef('a', { generation: 2 }), pod: 'p0', unixMs: 5 };

describe('the default status mapping', () => {
  it('rounds percent down and ETA up to integers and sets the stage', () => {
    const state = emptyState(objectRef('a'));
    foldReport(state, { ...header, body: 'progress', progress: { step: 3, totalSteps: 7, percent: 42.86, etaSeconds: 12.2, stage: 'Pruning' } }, 'p0', 0);
    assert.deepEqual(defaultStatusMapper(state), { progress: { step: 3, totalSteps: 7, percent: 42, etaSeconds: 13 }, stage: 'Pruning' });
  });

  it('drops non-finite metrics and sorts layers by index', () => {
    const state = emptyState(objectRef('a'));
    foldReport(state, {
      ...header, body: 'metrics',
      metrics: { values: { loss: 1.5, perplexityAfter: Number.NaN }, layers: [{ index: 1, sparsityPercent: 70, rank: 8, reconstructionError: 0.1 }, { index: 0, sparsityPercent: 69.9999, rank: 4, reconstructionError: 0.2 }] },
    }, 'p0', 0);
    assert.deepEqual(defaultStatusMapper(state).metrics, {
      loss: 1.5,
      layers: [{ index: 0, sparsityPercent: 70, rank: 4, reconstructionError: 0.2 }, { index: 1, sparsityPercent: 70, rank: 8, reconstructionError: 0.1 }],
    });
  });

  it('sums serving rates over replicas, takes the worst latency and lists active revisions and counts adapters', () => {
    const state = emptyState(objectRef('s', { kind: 'LoRAServer' }));
    const serving = (pod: string, rps: number, p99: number, revision: string, adapters: string[]): WorkerReport => ({
      ...header, pod, body: 'serving',
      serving: { loadedAdapters: adapters, activeRevision: revision, queueDepth: 2, requestsPerSecond: rps, tokensPerSecond: rps * 10, p50LatencyMs: 10, p99LatencyMs: p99 },
    });
    foldReport(state, serving('p1', 1.5, 80, '3', ['b', 'a']), 'p1', 0);
    foldReport(state, serving('p0', 2, 120.4, '4', ['a']), 'p0', 0);
    const status = defaultStatusMapper(state);
    assert.deepEqual(status.serving, { requestsPerSecond: 3.5, tokensPerSecond: 35, p50LatencyMs: 10, p99LatencyMs: 120, queueDepth: 4 });
    assert.deepEqual(status.bundleRevision, { active: [{ pod: 'p0', revision: '4' }, { pod: 'p1', revision: '3' }] });
    assert.equal(status.servedAdapters, 2);
  });

  it('lists outputs with well-formed artifact digests, and a completion clears an earlier failure', () => {
    const state = emptyState(objectRef('a'));
    const sha = 'AB'.repeat(32);
    foldReport(state, { ...header, body: 'failure', failure: { reason: 'Throttled', message: 'm', retryable: true } }, 'p0', 0);
    assert.equal(state.failure?.generation, 2);
    foldReport(state, { ...header, body: 'completion', completion: { outputs: { adapterUri: 'file:///a' }, artifacts: [{ name: 'adapter', uri: 'file:///a', sha256: sha, sizeBytes: 9 }, { name: 'log', uri: 'file:///l', sha256: 'not-a-digest', sizeBytes: 1 }] } }, 'p0', 0);
    assert.equal(state.failure, undefined);
    assert.deepEqual(defaultStatusMapper(state).outputs, { adapterUri: 'file:///a', digests: [{ name: 'adapter', uri: 'file:///a', sha256: sha.toLowerCase(), sizeBytes: 9 }] });
  });

  it('heartbeats and acks change nothing', () => {
    const state = emptyState(objectRef('a'));
    assert.equal(foldReport(state, { ...header, body: 'heartbeat', heartbeat: {} }, 'p0', 0), false);
    assert.equal(foldReport(state, { ...header, body: 'ack', ack: { directiveId: 'x', ok: true, message: '' } }, 'p0', 0), false);
  });
});

describe('setCondition', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const t1 = new Date('2026-01-02T00:00:00Z');
  // Condition times are metav1.Time: RFC 3339 to the second.
  const rfc3339 = (d: Date): string => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
  it('keeps lastTransitionTime when only the reason or message changes', () => {
    const first = setCondition([], { type: 'Degraded', status: 'True', reason: 'A', message: 'a', observedGeneration: 1 }, t0);
    const second = setCondition(first, { type: 'Degraded', status: 'True', reason: 'B', message: 'b', observedGeneration: 2 }, t1);
    assert.deepEqual(second, [{ type: 'Degraded', status: 'True', reason: 'B', message: 'b', observedGeneration: 2, lastTransitionTime: rfc3339(t0) }]);
    const third = setCondition(second, { type: 'Degraded', status: 'False', reason: 'C', message: 'c' }, t1);
    assert.equal(third[0]?.lastTransitionTime, rfc3339(t1));
  });
});
