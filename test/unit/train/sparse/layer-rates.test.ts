// LoSA's layer rates: the closed form is the linear program's optimum (checked by enumerating the
// program's vertices on small L), and the counts that realise the rates are exact.
import { strict as assert } from 'node:assert';
import { allocateLayerRates, layerZeroCounts, moduleZeroCounts } from '../../../../worker/train/sparse/layer-rates.js';
import { Rng } from '../../../../worker/train/rng.js';

const objective = (imp: readonly number[], x: readonly number[]): number => imp.reduce((s, v, i) => s + v * (x[i] as number), 0);

/**
 * min Σ imp_i·x_i s.t. mean(x) = s, s − δ ≤ x_i ≤ s + δ, by brute force: an optimum lies at a
 * vertex, where every coordinate but at most one sits on a bound and the equality fixes that one.
 */
function bruteForce(imp: readonly number[], s: number, delta: number): number {
  const l = imp.length;
  let best = Infinity;
  for (let free = -1; free < l; free++) {
    for (let bits = 0; bits < 1 << l; bits++) {
      const x = imp.map((_, i) => (bits & (1 << i) ? s + delta : s - delta));
      if (free >= 0) {
        const others = x.reduce((a, v, i) => (i === free ? a : a + v), 0);
        x[free] = l * s - others;
        if ((x[free] as number) < s - delta - 1e-12 || (x[free] as number) > s + delta + 1e-12) continue;
      } else if (Math.abs(x.reduce((a, v) => a + v, 0) - l * s) > 1e-9) continue;
      best = Math.min(best, objective(imp, x));
    }
  }
  return best;
}

describe('LoSA layer rates', () => {
  it('the closed form reaches the linear program\'s optimum, within the band and at the mean, for L = 1..7', () => {
    const rng = new Rng(11);
    for (let trial = 0; trial < 300; trial++) {
      const l = 1 + (trial % 7);
      const imp = Array.from({ length: l }, () => Math.exp(-rng.next()));
      const s = 0.2 + 0.6 * rng.next();
      const delta = [0.01, 0.02, 0.03][trial % 3] as number;
      const x = allocateLayerRates(imp, s, delta);
      assert.ok(Math.abs(x.reduce((a, v) => a + v, 0) / l - s) < 1e-12, `mean ${x} vs ${s}`);
      for (const v of x) assert.ok(v >= s - delta - 1e-12 && v <= s + delta + 1e-12, `${v} outside ${s} ± ${delta}`);
      assert.ok(Math.abs(objective(imp, x) - bruteForce(imp, s, delta)) < 1e-12, `trial ${trial}: ${objective(imp, x)} vs ${bruteForce(imp, s, delta)}`);
    }
  });

  it('the least important layers are pruned hardest, the most important least, the median keeps the mean', () => {
    assert.deepEqual(allocateLayerRates([0.9, 0.5, 0.7, 0.6, 0.8], 0.5, 0.03).map((x) => Math.round(x * 1e9) / 1e9), [0.47, 0.53, 0.5, 0.53, 0.47]);
  });

  it('equally important layers share their rates: two blocks, whose CKA is symmetric, both get the mean', () => {
    assert.deepEqual(allocateLayerRates([0.7, 0.7], 0.6, 0.02), [0.6, 0.6]);
    const x = allocateLayerRates([0.5, 0.9, 0.5, 0.8], 0.4, 0.01);
    assert.deepEqual(x.map((v) => Math.round(v * 1e9) / 1e9), [0.41, 0.39, 0.41, 0.39]);
    const tied = allocateLayerRates([0.5, 0.5, 0.5, 0.9], 0.4, 0.03);
    // One +δ and one 0 shared by the three tied layers (one −δ goes to the most important).
    assert.deepEqual(tied.map((v) => Math.round(v * 1e9) / 1e9), [0.41, 0.41, 0.41, 0.37]);
  });

  it('counts: exactly the total asked, each layer ⌊x·N⌋ or ⌈x·N⌉, modules at the layer\'s rate', () => {
    const sizes = [46080, 46080, 46080, 46080];
    const rates = allocateLayerRates([0.78, 0.77, 0.775, 0.776], 0.6552, 0.03);
    const total = Math.floor(0.6552 * 4 * 46080);
    const counts = layerZeroCounts(rates, sizes, total);
    assert.equal(counts.reduce((a, v) => a + v, 0), total);
    counts.forEach((z, i) => assert.ok(z >= Math.floor((rates[i] as number) * 46080) && z <= Math.ceil((rates[i] as number) * 46080), `layer ${i}: ${z} for ${rates[i]}`));
    // The tiny model's q, k, v, o, gate, up, down.
    const moduleSizes = [4096, 2048, 2048, 4096, 11264, 11264, 11264];
    const modules = moduleZeroCounts(counts[0] as number, moduleSizes);
    assert.equal(modules.reduce((a, v) => a + v, 0), counts[0]);
    modules.forEach((z, i) => assert.ok(Math.abs(z - ((counts[0] as number) * (moduleSizes[i] as number)) / 46080) < 1, `module ${i}: ${z}`));
  });

  it('a module without an adapter keeps the zeros it has (it cannot grow them back); the others share the rest at one rate', () => {
    // 300 of 1000: proportionally [60, 90, 150], but module 0 already holds 100 zeros.
    assert.deepEqual(moduleZeroCounts(300, [200, 300, 500], [100, 0, 0]), [100, 75, 125]);
    assert.deepEqual(moduleZeroCounts(300, [200, 300, 500], [40, 0, 0]), [60, 90, 150]);
  });

  it('names counts that cannot fit', () => {
    assert.throws(() => layerZeroCounts([0.5], [10], 11), /11 zeros do not fit 10 weights/);
    assert.throws(() => moduleZeroCounts(3.5, [4, 4]), /3\.5 zeros do not fit 8 weights/);
  });
});
