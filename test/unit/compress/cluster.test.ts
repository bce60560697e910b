// Clustering: with JD-Diag the k-means features and the reassignment work from diagonal cores too;
// and k-means itself, which goes through the points' Gram matrix.
import assert from 'node:assert/strict';
import { meanOf } from '../../../worker/compress/auto.js';
import { clusterAdapters, clusterErrors, kmeans } from '../../../worker/compress/cluster.js';
import { JdKernels } from '../../../worker/compress/kernels.js';
import { gaussianArray } from '../../../worker/compress/random.js';
import { packSlot } from '../../../worker/compress/slot.js';
import { clusteredAdapters } from './builders.js';

describe('clustering with JD-Diag and k-means', function () {
  this.timeout(120_000);
  const kernels = new JdKernels();
  after(() => kernels.dispose());
  const opts = { rank: 3, iterations: 80, tolerance: 1e-6, seed: 2 };

  it('error falls with the number of clusters on clustered adapters with diagonal cores, and 3 clusters recover the groups', async () => {
    const { adapters, labels } = clusteredAdapters(12, 3, 32, 32, 3, 11, { diagonal: true });
    const slot = await packSlot(kernels, 'q_proj', 32, 32, adapters);
    const errs: number[] = [];
    let three: number[] = [];
    for (const clusters of [1, 2, 3]) {
      const res = await clusterAdapters(kernels, [slot], { method: 'jd-diag', clusters, ...opts });
      errs.push(meanOf(res));
      if (clusters === 3) {
        three = res.assignment;
        assert.equal(res.stable, true, 'the last reassignment moved nothing');
        for (const fit of res.clusters) assert.equal(fit.slots[0]!.sigma.length, 3 * fit.members.length, 'one diagonal of 3 per member');
      }
    }
    assert.ok(errs[1]! < errs[0]! && errs[2]! < errs[1]!, `errors by cluster count: ${errs.join(', ')}`);
    assert.ok(errs[2]! < 0.1, `3 clusters: mean error ${errs[2]}`);
    for (let i = 0; i < labels.length; i++) for (let j = 0; j < labels.length; j++) assert.equal(three[i] === three[j], labels[i] === labels[j], `adapters ${i} and ${j}`);
  });

  it("scores every adapter under every cluster's bases: its own cluster's score is its fit error squared, the others' far higher", async () => {
    const { adapters } = clusteredAdapters(9, 3, 24, 20, 2, 17, { diagonal: true });
    const slot = await packSlot(kernels, 'q_proj', 24, 20, adapters);
    const res = await clusterAdapters(kernels, [slot], { method: 'jd-diag', clusters: 3, ...opts, rank: 2 });
    const scores = await clusterErrors(kernels, [slot], res.clusters, 'jd-diag');
    res.clusters.forEach((fit, c) => fit.members.forEach((i, j) => {
      const own = fit.slots[0]!.errors[j]! ** 2;
      assert.ok(Math.abs(scores[c]![i]! - own) < 1e-4, `adapter ${i}: score ${scores[c]![i]} vs fit error² ${own}`);
      for (let other = 0; other < 3; other++) if (other !== c) assert.ok(scores[other]![i]! > 0.5, `adapter ${i} fits cluster ${other} too well: ${scores[other]![i]}`);
    }));
  });

  it('k-means splits 4 well-separated blobs exactly from every seed, and returns labels that are their own nearest means', () => {
    const d = 50;
    const centres = Array.from({ length: 4 }, (_, c) => gaussianArray(d, 100 + c, 3));
    const truth = Array.from({ length: 60 }, (_, i) => i % 4);
    const points = truth.map((c, i) => Float64Array.from(gaussianArray(d, 1000 + i, 0.3), (x, j) => x + centres[c]![j]!));
    for (let seed = 0; seed < 10; seed++) {
      const labels = kmeans(points, 4, seed);
      for (let i = 0; i < points.length; i++) for (let j = 0; j < points.length; j++) assert.equal(labels[i] === labels[j], truth[i] === truth[j], `seed ${seed}: points ${i} and ${j}`);
      // Lloyd's fixed point, checked with explicit Euclidean means (the implementation works through the Gram matrix).
      const means = [0, 1, 2, 3].map((c) => {
        const mine = points.filter((_, i) => labels[i] === c);
        return Float64Array.from({ length: d }, (_, j) => mine.reduce((acc, p) => acc + p[j]!, 0) / mine.length);
      });
      const dist2 = (p: Float64Array, m: Float64Array): number => p.reduce((acc, x, j) => acc + (x - m[j]!) ** 2, 0);
      points.forEach((p, i) => assert.equal(labels[i], means.map((m) => dist2(p, m)).indexOf(Math.min(...means.map((m) => dist2(p, m))))));
    }
  });
});
