// The AdapterCluster's own status fields, mapped from its compress worker's reports.
import assert from 'node:assert/strict';
import { tesseraStatusMapper } from '../../../operator/status/kind-mappers.js';
import { emptyState, foldReport, type ObjectState } from '../../../operator/status/state.js';
import type { Completion } from '../../../operator/status/wire.js';
import { objectRef } from './harness.js';

const DIGEST = 'ab'.repeat(32);

function completed(kind: string, outputs: Record<string, string>, metrics: Record<string, number> = {}): ObjectState {
  const state = emptyState(objectRef('pool', { kind }));
  const header = { seq: 1, object: state.ref, pod: 'p0', unixMs: 5 };
  foldReport(state, { ...header, body: 'metrics', metrics: { values: metrics, layers: [] } }, 'p0', 0);
  const completion: Completion = { outputs, artifacts: [] };
  foldReport(state, { ...header, seq: 2, body: 'completion', completion }, 'p0', 0);
  return state;
}

describe('the AdapterCluster status mapping', () => {
  it('puts revision, bundle URI, bundle digest, parameters saved and per-adapter and per-cluster results in their own fields', () => {
    const summaryJson = JSON.stringify({
      adapters: [{ name: 'a', cluster: 0, reconstructionErrorPercent: 12.34567 }, { name: 'b', cluster: 1, reconstructionErrorPercent: 40 }],
      clusters: [{ id: 0, size: 1, rank: 4, meanErrorPercent: 12.34567 }, { id: 1, size: 1, rank: 4, meanErrorPercent: 40 }],
    });
    const status = tesseraStatusMapper(completed('AdapterCluster', { revision: 'r1', bundleUri: 'file:///b/r1', bundleDigest: DIGEST, updatePath: 'projected', summaryJson }, { parameterSavedPercent: 91.23456, convergedSlots: 4 }));
    assert.equal(status.revision, 'r1');
    assert.equal(status.bundleUri, 'file:///b/r1');
    assert.equal(status.bundleDigest, DIGEST);
    assert.equal(status.parameterSavedPercent, 91.23);
    assert.equal(status.adapterCount, 2);
    assert.deepEqual(status.adapters, [{ name: 'a', cluster: 0, reconstructionErrorPercent: 12.346, servedAs: 'compressed' }, { name: 'b', cluster: 1, reconstructionErrorPercent: 40, servedAs: 'compressed' }]);
    assert.deepEqual(status.clusters, [{ id: 0, size: 1, rank: 4, meanErrorPercent: 12.346 }, { id: 1, size: 1, rank: 4, meanErrorPercent: 40 }]);
    // The CRD declares neither outputs nor metrics for this kind: they stay out of the patch.
    assert.equal(status.outputs, undefined);
    assert.equal(status.metrics, undefined);
  });

  it('leaves out a bundle digest that is not 64 lowercase hex characters, which the API server would reject', () => {
    for (const bad of ['abc', DIGEST.toUpperCase(), `${DIGEST}00`]) {
      assert.equal(tesseraStatusMapper(completed('AdapterCluster', { revision: 'r1', bundleDigest: bad })).bundleDigest, undefined, bad);
    }
  });

  it('maps other kinds generically: their outputs keep the digest under outputs', () => {
    const status = tesseraStatusMapper(completed('SparseFineTune', { adapterUri: 'file:///a', bundleDigest: DIGEST }));
    assert.equal(status.bundleDigest, undefined);
    assert.deepEqual(status.outputs, { adapterUri: 'file:///a', bundleDigest: DIGEST, digests: [] });
  });
});
