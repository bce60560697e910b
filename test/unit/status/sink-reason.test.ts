// Worker failure reasons become valid Kubernetes condition reasons.
import assert from 'node:assert/strict';
import { conditionReason } from '../../../operator/status/sink.js';

describe('condition reasons from worker failures', () => {
  it('keep a CamelCase reason as it is', () => assert.equal(conditionReason('NotImplemented'), 'NotImplemented'));
  it('fold free text into one CamelCase word', () => assert.equal(conditionReason('bad adapter: shape mismatch'), 'BadAdapterShapeMismatch'));
  it('fall back to WorkerFailed when nothing is left', () => assert.equal(conditionReason('  --  '), 'WorkerFailed'));
  it('never start with a digit', () => assert.equal(conditionReason('404 not found'), 'NotFound'));
});
