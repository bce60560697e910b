// Serving statistics for the status hub: rates over a sliding window, latency percentiles.
import assert from 'node:assert/strict';
import { percentile, ServingStats } from '../../../worker/serve/stats.js';

const idle = { queuedRequests: () => 0, runningSequences: () => 0, adapterLoad: () => ({ running: [], waiting: [] }), maxLora: () => 0 };

describe('serve: statistics', () => {
  it('reports requests/s, tokens/s and p50/p99 latency over the last window only', () => {
    let now = 1_000_000;
    const stats = new ServingStats(idle, { windowMs: 10_000, now: () => now });
    now += 20_000;
    for (let i = 1; i <= 100; i++) stats.requestFinished({ model: 'm', latencyMs: i, promptTokens: 3, completionTokens: 5, finishReason: 'length' });
    stats.tokensGenerated(500);
    assert.deepEqual(stats.snapshot(), { requestsPerSecond: 10, tokensPerSecond: 50, p50LatencyMs: 50, p99LatencyMs: 99 });
    now += 10_001;
    assert.deepEqual(stats.snapshot(), { requestsPerSecond: 0, tokensPerSecond: 0, p50LatencyMs: 0, p99LatencyMs: 0 });
  });

  it('divides by the time since start while that is shorter than the window', () => {
    let now = 0;
    const stats = new ServingStats(idle, { windowMs: 60_000, now: () => now });
    now = 2_000;
    stats.tokensGenerated(10);
    assert.equal(stats.snapshot().tokensPerSecond, 5);
  });

  it('takes nearest-rank percentiles', () => {
    assert.equal(percentile([], 0.5), 0);
    assert.equal(percentile([7], 0.99), 7);
    assert.equal(percentile([1, 2, 3, 4], 0.5), 2);
    assert.equal(percentile([1, 2, 3, 4], 0.99), 4);
  });
});
