// NSGA-II's parts on hand-made points (exact fronts, crowding with infinite ends) and the whole
// search on a cheap synthetic objective: deterministic for a seed, one evaluation per distinct
// configuration, and a front that covers everything it evaluated.
import { strict as assert } from 'node:assert';
import { crowdingDistance, dominates, genesKey, nonDominatedSort, nsga2, type Nsga2Options } from '../../../../worker/train/sparse/nsga2.js';

describe('NSGA-II over discrete genes', () => {
  it('sorts points into exact non-dominated fronts (minimizing both objectives); equal points share a front', () => {
    const points = [[1, 5], [2, 3], [3, 1], [2, 4], [4, 4], [3, 3], [5, 5], [2, 3]];
    assert.deepEqual(nonDominatedSort(points), [[0, 1, 2, 7], [3, 5], [4], [6]]);
    assert.ok(dominates([2, 3], [3, 3]) && !dominates([2, 3], [2, 3]) && !dominates([1, 5], [2, 3]));
    assert.deepEqual(nonDominatedSort([]), []);
  });

  it('gives the ends of a front infinite crowding and an interior point the sum of its neighbours\' gaps over each range', () => {
    const points = [[0, 4], [1, 2], [3, 1], [4, 0]];
    assert.deepEqual(crowdingDistance(points, [0, 1, 2, 3]), [Infinity, 0.75 + 0.75, 0.75 + 0.5, Infinity]);
    // Aligned with the front's order, not the points'.
    assert.deepEqual(crowdingDistance(points, [2, 0, 1]), [Infinity, Infinity, 2]);
    assert.deepEqual(crowdingDistance([[1, 1]], [0]), [Infinity]);
  });

  describe('a search on a synthetic objective (6 genes × 3 choices)', () => {
    const calls: string[] = [];
    // Rank choices 8, 6, 4 per gene: "parameters" grow with the rank, "loss" falls with it (gene 2
    // not at all), so the front trades one against the other.
    const ranks = [8, 6, 4];
    const options = (seed: number): Nsga2Options => ({
      choices: [3, 3, 3, 3, 3, 3], initial: [[0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2]], population: 8, generations: 4, seed,
      evaluate: (genes) => {
        calls.push(genesKey(genes));
        const r = genes.map((g) => ranks[g] as number);
        return Promise.resolve([r.reduce((s, x, i) => s + (i === 2 ? 0 : (1 + i) / x), 0), r.reduce((s, x) => s + x, 0)]);
      },
    });

    it('is deterministic for a seed, evaluates each configuration once, and its front covers everything evaluated', async () => {
      calls.length = 0;
      const a = await nsga2(options(5));
      const first = [...calls];
      const b = await nsga2(options(5));
      assert.deepEqual(b, a);
      assert.deepEqual(calls.slice(first.length), first);
      assert.equal(new Set(first).size, first.length, 'a configuration was evaluated twice');
      assert.deepEqual(a.evaluated.slice(0, 3).map((e) => genesKey(e.genes)), ['0,0,0,0,0,0', '1,1,1,1,1,1', '2,2,2,2,2,2']);
      assert.ok(a.evaluated.length > 8 && a.evaluated.length <= 8 * 5, `${a.evaluated.length} evaluations`);
      assert.equal(a.population.length, 8);
      for (const f of a.front) for (const g of a.front) assert.ok(!dominates(f.objectives, g.objectives), 'two front members dominate one another');
      for (const e of a.evaluated) assert.ok(a.front.some((f) => f === e || dominates(f.objectives, e.objectives)), `${genesKey(e.genes)} is neither on the front nor dominated by it`);
      const other = await nsga2(options(6));
      assert.notDeepEqual(other.evaluated.map((e) => genesKey(e.genes)), a.evaluated.map((e) => genesKey(e.genes)), 'another seed searched the same configurations');
    });
  });
});
