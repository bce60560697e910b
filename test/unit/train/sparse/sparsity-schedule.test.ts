// LoSA's rounds: the cubic (and linear, oneshot) mean sparsity and the ±δ band by the table.
import { strict as assert } from 'node:assert';
import { deltaAt, FIRST_DELTA, pruningRounds, sparsityAt } from '../../../../worker/train/sparse/sparsity-schedule.js';

const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} vs ${b}`);

describe('LoSA sparsity schedule', () => {
  it('cubic: S_t = S − S·(1 − t/T)³, most of the pruning in the first rounds, exactly S in the last', () => {
    const rounds = pruningRounds('cubic', 70, 5);
    [34.16, 54.88, 65.52, 69.44, 70].forEach((p, i) => close(rounds[i]?.percent as number, p, `round ${i + 1}`));
    assert.equal(rounds.at(-1)?.percent, 70);
  });

  it('linear: S_t = S·t/T; oneshot: S in every round', () => {
    assert.deepEqual(pruningRounds('linear', 60, 4).map((r) => r.percent), [15, 30, 45, 60]);
    assert.deepEqual(pruningRounds('oneshot', 50, 3).map((r) => r.percent), [50, 50, 50]);
    assert.equal(sparsityAt('cubic', 50, 1, 1), 50);
  });

  it('δ_t is 0.01 up to a mean of 0.5, 0.02 up to 0.6, 0.03 up to 0.7', () => {
    assert.deepEqual([0.3, 0.5, 0.55, 0.6, 0.65, 0.7].map((s) => deltaAt(s, 0.5)), [0.01, 0.01, 0.02, 0.02, 0.03, 0.03]);
    assert.deepEqual(pruningRounds('cubic', 70, 5).map((r) => r.delta), [0.01, 0.02, 0.03, 0.03, 0.03]);
  });

  it('above a mean of 0.7 δ keeps the previous round\'s value, and the first round starts from the widest band', () => {
    // 90 % cubic over 5: 43.9, 70.6, 84.2, 89.3, 90 — from round 2 on the mean is above 0.7, so every round keeps round 1's 0.01.
    const rounds = pruningRounds('cubic', 90, 5);
    assert.deepEqual(rounds.map((r) => r.delta), [0.01, 0.01, 0.01, 0.01, 0.01]);
    assert.deepEqual(pruningRounds('linear', 80, 2).map((r) => r.delta), [0.01, 0.01]);
    assert.deepEqual(pruningRounds('oneshot', 80, 2).map((r) => r.delta), [FIRST_DELTA, FIRST_DELTA]);
  });

  it('the band never reaches below zero sparsity: δ_t ≤ S_t', () => {
    const rounds = pruningRounds('cubic', 2, 5);
    for (const r of rounds) assert.ok(r.delta <= r.percent / 100 + 1e-15 && r.percent / 100 - r.delta >= 0, JSON.stringify(r));
    close(rounds[0]?.delta as number, 0.02 * 0.488, 'round 1 of 2 %');
  });

  it('names a bad schedule', () => {
    assert.throws(() => sparsityAt('cubic', 70, 0, 5), /step must be an integer in \[1, 5\], got 0/);
    assert.throws(() => sparsityAt('cubic', 100, 1, 5), /target must be a percent in \[0, 100\), got 100/);
    assert.throws(() => sparsityAt('exponential' as 'cubic', 70, 1, 5), /invalid sparsity schedule "exponential": expected one of cubic, linear, oneshot/);
  });
});
