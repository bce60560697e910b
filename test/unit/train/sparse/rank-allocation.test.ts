// LoSA's rank allocation by reconstruction error: ranks in proportion to e_l, clipped to
// [1, r_max], and the budget Σ r_l = L·r̄ met exactly; e_l normalised per channel.
import { strict as assert } from 'node:assert';
import { allocateRanks, channelNorms, reconstructionError } from '../../../../worker/train/sparse/rank-allocation.js';
import { Rng } from '../../../../worker/train/rng.js';

describe('LoSA rank allocation', () => {
  it('gives each layer round(e_l / mean(e) · r̄) when that already meets the budget', () => {
    // 24 · [0.1, 0.2, 0.3, 0.4] = [2.4, 4.8, 7.2, 9.6] → [2, 5, 7, 10], which sums to 24.
    assert.deepEqual(allocateRanks([0.1, 0.2, 0.3, 0.4], 6, 16), [2, 5, 7, 10]);
  });

  it('rounds halves to even, as the reference\'s np.round does', () => {
    // 8 · [0.3125, 0.6875] = [2.5, 5.5] → [2, 6].
    assert.deepEqual(allocateRanks([0.3125, 0.6875], 4, 16), [2, 6]);
  });

  it('an excess comes off the layers above 1 with the smallest errors first, a deficit goes to the largest below r_max', () => {
    // 12 · [0.04, 0.48, 0.48] = [0.48, 5.76, 5.76] → [1, 6, 6] = 13: one too many, taken from the smallest error above 1.
    assert.deepEqual(allocateRanks([0.04, 0.48, 0.48], 4, 16), [1, 5, 6]);
    // 9 · [0.9, 0.05, 0.05] = [8.1, .45, .45] → [8, 1, 1] clipped to r_max 6 → [6, 1, 1] = 8: one short, given to the largest error below 6.
    assert.deepEqual(allocateRanks([0.9, 0.05, 0.05], 3, 6), [6, 2, 1]);
  });

  it('meets Σ r_l = L·r̄ within [1, r_max] for any errors, even when one layer holds nearly all of them', () => {
    const rng = new Rng(5);
    for (let trial = 0; trial < 500; trial++) {
      const l = 1 + (trial % 9);
      const maxRank = 4 + (trial % 13);
      const mean = 1 + rng.int(maxRank);
      const errors = Array.from({ length: l }, () => (rng.next() < 0.3 ? rng.next() * 1e-6 : rng.next() ** 4));
      const ranks = allocateRanks(errors, mean, maxRank);
      assert.equal(ranks.reduce((a, r) => a + r, 0), l * mean, `errors ${errors} r̄ ${mean} r_max ${maxRank}: ${ranks}`);
      for (const r of ranks) assert.ok(Number.isInteger(r) && r >= 1 && r <= maxRank, `${ranks}`);
    }
    // One pass of ±1 cannot close this gap: [16, 1, 1] is 12 short of 30.
    assert.deepEqual(allocateRanks([1, 0, 0], 10, 16), [16, 7, 7]);
  });

  it('with no error anywhere (nothing pruned) every layer gets the mean rank', () => {
    assert.deepEqual(allocateRanks([0, 0, 0], 6, 16), [6, 6, 6]);
  });

  it("e_l = (1/d) Σ ((Yd − Ys) / σ_c)² with σ_c the dense output's norm over all tokens of channel c", () => {
    // Two tokens, two channels: channel 0 of size 5 (3, 4), channel 1 of size 10 (6, 8).
    const dense = Float32Array.from([3, 6, 4, 8]);
    const sparse = Float32Array.from([3, 7, 2, 8]);
    const sigma = channelNorms(dense, 2);
    assert.deepEqual([...sigma], [5, 10]);
    // ((0/5)² + (−1/10)² + (2/5)² + (0/10)²) / 2 = (0.01 + 0.16) / 2
    assert.ok(Math.abs(reconstructionError(dense, sparse, sigma) - 0.085) < 1e-12);
  });

  it('names a mean rank the bound cannot hold', () => {
    assert.throws(() => allocateRanks([1, 2], 17, 16), /the mean rank 17 must be an integer in \[1, maxRank 16\]/);
    assert.throws(() => allocateRanks([1, Number.NaN], 4, 16), /errors must be finite and ≥ 0/);
  });
});
