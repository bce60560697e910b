// Automatic rank and cluster count: the cheapest (rank, clusters) by parameter count that meets the
// target mean error, and the least-bad candidate, flagged, when none does.
import assert from 'node:assert/strict';
import { chooseRankAndClusters } from '../../../worker/compress/auto.js';
import { JdKernels } from '../../../worker/compress/kernels.js';
import { packSlot } from '../../../worker/compress/slot.js';
import { clusteredAdapters, randomAdapters } from './builders.js';

describe('automatic rank and cluster count', function () {
  this.timeout(120_000);
  const kernels = new JdKernels();
  after(() => kernels.dispose());
  const search = { iterations: 20, tolerance: 1e-4, seed: 1 };

  it('picks 3 clusters at rank 4 for adapters drawn around 3 rank-3 centres: every cheaper candidate misses the target', async () => {
    const slot = await packSlot(kernels, 'q_proj', 32, 32, clusteredAdapters(12, 3, 32, 32, 3).adapters);
    const choice = await chooseRankAndClusters(kernels, [slot], { method: 'jd-full', targetErrorPercent: 10, maxRank: 16, ...search });
    assert.equal(choice.metTarget, true);
    assert.deepEqual([choice.rank, choice.clusters], [4, 3]);
    assert.ok(choice.meanError < 0.1, `mean error ${choice.meanError}`);
    // Parameters: C·r(m+k) + n·r² (jd-full): 448 for (4, 1), 704 for (4, 2), 960 for (4, 3).
    assert.deepEqual(choice.evaluated.map((e) => [e.rank, e.clusters, e.parameters.compressed]), [[4, 1, 448], [4, 2, 704], [4, 3, 960]]);
    for (const e of choice.evaluated.slice(0, -1)) assert.ok(e.meanError > 0.1, `rank ${e.rank}, ${e.clusters} cluster(s) met the target at ${e.meanError} but was not chosen`);
  });

  it('with jd-diag, counts r (not r²) per adapter and still finds the clusters', async () => {
    const slot = await packSlot(kernels, 'q_proj', 32, 32, clusteredAdapters(12, 3, 32, 32, 3, 5, { diagonal: true }).adapters);
    const choice = await chooseRankAndClusters(kernels, [slot], { method: 'jd-diag', targetErrorPercent: 10, maxRank: 8, ...search, iterations: 60 });
    assert.equal(choice.metTarget, true);
    assert.equal(choice.clusters, 3);
    assert.equal(choice.parameters.compressed, 3 * choice.rank * 64 + 12 * choice.rank);
  });

  it('when no candidate meets the target, returns the lowest-error one with metTarget false, and considers maxRank itself', async () => {
    const slot = await packSlot(kernels, 'q_proj', 32, 32, randomAdapters(12, 32, 32, 4, 31));
    const choice = await chooseRankAndClusters(kernels, [slot], { method: 'jd-full', targetErrorPercent: 1, maxRank: 6, ...search });
    assert.equal(choice.metTarget, false);
    assert.deepEqual([...new Set(choice.evaluated.map((e) => e.rank))].sort(), [4, 6], 'ranks 4 and the maximum 6; 8 and up are above it');
    assert.deepEqual([...new Set(choice.evaluated.map((e) => e.clusters))].sort(), [1, 2, 3, 5], 'at most n/2 = 6 clusters');
    assert.equal(choice.meanError, Math.min(...choice.evaluated.map((e) => e.meanError)));
    assert.ok(choice.meanError > 0.01);
  });

  it('rejects a target that is not above 0', async () => {
    const slot = await packSlot(kernels, 'q_proj', 8, 8, randomAdapters(2, 8, 8, 2));
    await assert.rejects(chooseRankAndClusters(kernels, [slot], { method: 'jd-full', targetErrorPercent: 0, maxRank: 4, ...search }), /targetErrorPercent 0 is invalid/);
  });
});
