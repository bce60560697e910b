// Conditions follow the API conventions; semantic equality decides whether status is written.
import assert from 'node:assert/strict';
import { conditionsEqual, ConditionTypes, initConditions, setCondition, type Condition } from '../../../operator/runtime/conditions.js';
import { statusUnchanged } from '../../../operator/runtime/apply.js';
import { deepCopy, deepFreeze, semanticEqual } from '../../../operator/runtime/semantic.js';
import { formatMicroTime } from '../../../operator/runtime/clock.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const T1 = Date.parse('2026-01-01T00:05:00.250Z');

describe('setCondition', () => {
  it('stamps a new condition with the current time in whole seconds', () => {
    const list = setCondition([], { type: ConditionTypes.Ready, status: 'False', reason: 'Pending', message: 'Waiting.', observedGeneration: 1 }, T0);
    assert.deepEqual(list, [{ type: 'Ready', status: 'False', reason: 'Pending', message: 'Waiting.', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z' }]);
  });

  it('keeps lastTransitionTime when only reason, message or generation change', () => {
    const first = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: 'Waiting.' }, T0);
    const second = setCondition(first, { type: 'Ready', status: 'False', reason: 'JobCreated', message: 'Job created.', observedGeneration: 2 }, T1);
    assert.equal(second[0]?.lastTransitionTime, '2026-01-01T00:00:00Z');
    assert.equal(second[0]?.reason, 'JobCreated');
  });

  it('moves lastTransitionTime when the status flips', () => {
    const first = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: '' }, T0);
    const second = setCondition(first, { type: 'Ready', status: 'True', reason: 'Completed', message: '' }, T1);
    assert.equal(second[0]?.lastTransitionTime, '2026-01-01T00:05:00Z');
  });

  it('leaves the input list and other types untouched', () => {
    const input = deepFreeze(setCondition([], { type: 'Progressing', status: 'True', reason: 'Running', message: '' }, T0));
    const out = setCondition(input, { type: 'Ready', status: 'False', reason: 'Running', message: '' }, T1);
    assert.equal(input.length, 1);
    assert.deepEqual(out.map((c) => c.type), ['Progressing', 'Ready']);
  });

  it('rejects a reason that is not one CamelCase word, naming it', () => {
    assert.throws(() => setCondition([], { type: 'Ready', status: 'False', reason: 'job created', message: '' }, T0), /invalid condition reason "job created" for Ready/);
  });

  it('sets missing types to Unknown on the first visit and keeps existing ones', () => {
    const existing = setCondition([], { type: 'Ready', status: 'True', reason: 'Completed', message: '' }, T0);
    const list = initConditions(existing, ['Ready', 'Progressing'], T1, 3);
    assert.equal(list.find((c) => c.type === 'Ready')?.status, 'True');
    assert.equal(list.find((c) => c.type === 'Progressing')?.status, 'Unknown');
    assert.equal(list.find((c) => c.type === 'Progressing')?.observedGeneration, 3);
  });
});

describe('semantic equality', () => {
  it('ignores key order and absent-versus-undefined fields', () => {
    assert.ok(semanticEqual({ a: 1, b: { c: [1, { d: 2, e: 3 }] } }, { b: { c: [1, { e: 3, d: 2 }] }, a: 1, f: undefined }));
  });

  it('tells apart different values, list orders and null from absent', () => {
    assert.ok(!semanticEqual({ a: [1, 2] }, { a: [2, 1] }));
    assert.ok(!semanticEqual({ a: null }, {}));
    assert.ok(!semanticEqual({ a: '1' }, { a: 1 }));
  });

  it('compares condition lists as sets keyed by type', () => {
    const a: Condition[] = [
      { type: 'Ready', status: 'True', reason: 'Completed', message: '', lastTransitionTime: 'x' },
      { type: 'Progressing', status: 'False', reason: 'Completed', message: '', lastTransitionTime: 'x' },
    ];
    const b = [a[1], { lastTransitionTime: 'x', message: '', reason: 'Completed', status: 'True', type: 'Ready' }] as Condition[];
    assert.ok(conditionsEqual(a, b));
    assert.ok(!conditionsEqual(a, [a[0] as Condition]));
  });

  it('finds a status patch that changes nothing unchanged, and null on an absent field too', () => {
    const current = { observedGeneration: 2, stage: 'Training', conditions: [{ type: 'Ready', status: 'False' }] };
    assert.ok(statusUnchanged(current, { stage: 'Training', conditions: [{ status: 'False', type: 'Ready' }], jobName: null }));
    assert.ok(!statusUnchanged(current, { observedGeneration: 3 }));
    assert.ok(!statusUnchanged(current, { stage: null }));
  });

  it('freezes cached objects deeply and copies them mutable', () => {
    const obj = deepFreeze({ metadata: { labels: { a: 'b' } }, list: [{ x: 1 }] });
    assert.throws(() => {
      (obj.metadata.labels as Record<string, string>).a = 'c';
    }, TypeError);
    const copy = deepCopy(obj);
    copy.metadata.labels.a = 'c';
    assert.equal(obj.metadata.labels.a, 'b');
  });

  it('formats MicroTime with exactly six fractional digits', () => {
    assert.equal(formatMicroTime(T1), '2026-01-01T00:05:00.250000Z');
  });
});
