import assert from 'node:assert/strict';
import { clusterAdapters } from '../../../worker/compress/cluster.js';
import { meanOf } from '../../../worker/compress/auto.js';
import { diagErrors, jdDiag } from '../../../worker/compress/jd-diag.js';
import { jdFull } from '../../../worker/compress/jd-full.js';
import { JdKernels } from '../../../worker/compress/kernels.js';
import { countParameters } from '../../../worker/compress/params.js';
import { incrementalDecision, projectAdapters } from '../../../worker/compress/project.js';
import { packSlot, type Slot } from '../../../worker/compress/slot.js';
import { perAdapterSvd } from '../../../worker/compress/svd.js';
import { theorem1Bounds } from '../../../worker/compress/theory.js';
import { type JdOptions } from '../../../worker/compress/types.js';
import { clusteredAdapters, mm, randomAdapters, sharedBasisAdapters, transpose } from './builders.js';

const opts = (rank: number, extra: Partial<JdOptions> = {}): JdOptions => ({ rank, iterations: 10, tolerance: 1e-3, seed: 1, ...extra });

/** Σ of squared principal-angle sines between the column spans of two orthonormal p×r matrices. */
function subspaceGap(a: Float32Array, b: Float32Array, p: number, r: number): number {
  const c = mm(transpose(a, p, r), b, r, p, r);
  return r - c.reduce((s, x) => s + x * x, 0);
}

describe('JD compression of a module slot', function () {
  this.timeout(60_000);
  const kernels = new JdKernels();
  after(() => kernels.dispose());
  const m = 48;
  const k = 40;

  it('JD-Full reconstructs adapters that share a rank-r basis to ~1e-5 relative error at rank r', async () => {
    const slot = await packSlot(kernels, 'q_proj', m, k, sharedBasisAdapters(8, m, k, 6));
    const res = await jdFull(kernels, slot, opts(6, { iterations: 20, tolerance: 1e-6 }));
    assert.ok(Math.max(...res.errors) < 1e-5, `max error ${Math.max(...res.errors)}`);
  });

  it('JD-Diag reconstructs adapters with a shared basis and diagonal cores to ~1e-5 at rank r', async () => {
    const slot = await packSlot(kernels, 'q_proj', m, k, sharedBasisAdapters(12, m, k, 6, { diagonal: true }));
    const res = await jdDiag(kernels, slot, opts(6, { iterations: 300, tolerance: 0 }));
    assert.ok(Math.max(...res.errors) < 1e-5, `max error ${Math.max(...res.errors)}`);
  });

  it('JD-Full is exact when r ≥ min(n·r₀, m, k), with adapters of different ranks', async () => {
    const slot = await packSlot(kernels, 'v_proj', m, k, randomAdapters(3, m, k, (i) => 1 + i));
    const res = await jdFull(kernels, slot, opts(6, { iterations: 20 }));
    assert.ok(Math.max(...res.errors) < 1e-5, `max error ${Math.max(...res.errors)}`);
  });

  it('the alternating JD-Full objective never increases across iterations', async () => {
    const slot = await packSlot(kernels, 'q_proj', 64, 64, randomAdapters(20, 64, 64, 4));
    const res = await jdFull(kernels, slot, opts(8, { iterations: 15, tolerance: 0 }));
    assert.equal(res.history.length, res.iterations + 1);
    for (let t = 1; t < res.history.length; t++) assert.ok(res.history[t]! <= res.history[t - 1]! + 1e-5 * slot.n, `objective rose at ${t}: ${res.history[t - 1]} → ${res.history[t]}`);
    assert.ok(res.history.at(-1)! < res.history[0]!);
  });

  it('the JD-Diag objective never increases across iterations', async () => {
    const slot = await packSlot(kernels, 'q_proj', 64, 64, randomAdapters(20, 64, 64, 4));
    const res = await jdDiag(kernels, slot, opts(8, { iterations: 15, tolerance: 0 }));
    for (let t = 1; t < res.history.length; t++) assert.ok(res.history[t]! <= res.history[t - 1]! + 1e-5 * slot.n, `objective rose at ${t}: ${res.history[t - 1]} → ${res.history[t]}`);
  });

  it('stops at the tolerance and reports iterations used, convergence and the final objective', async () => {
    const slot = await packSlot(kernels, 'q_proj', m, k, sharedBasisAdapters(8, m, k, 4));
    const res = await jdFull(kernels, slot, opts(4, { iterations: 50, tolerance: 1e-2 }));
    assert.equal(res.converged, true);
    assert.ok(res.iterations < 50);
    assert.ok(Math.abs(res.objective - res.errors.reduce((a, e) => a + e * e, 0)) < 1e-9);
  });

  it('the eigen-iteration and the alternating JD-Full reach the same subspace', async () => {
    const slot = await packSlot(kernels, 'q_proj', m, k, clusteredAdapters(8, 1, m, k, 4).adapters);
    const alt = await jdFull(kernels, slot, opts(4, { iterations: 100, tolerance: 1e-5 }));
    const eig = await jdFull(kernels, slot, opts(4, { iterations: 200, tolerance: 1e-5, variant: 'eigen', seed: 2 }));
    assert.ok(subspaceGap(alt.U, eig.U, m, 4) < 1e-4, `U gap ${subspaceGap(alt.U, eig.U, m, 4)}`);
    assert.ok(subspaceGap(alt.V, eig.V, k, 4) < 1e-4, `V gap ${subspaceGap(alt.V, eig.V, k, 4)}`);
    assert.ok(Math.abs(alt.objective - eig.objective) < 1e-4);
  });

  it('JD-Diag error is at least JD-Full error at equal rank, and both fall as the rank grows', async () => {
    const slot = await packSlot(kernels, 'q_proj', 64, 64, randomAdapters(16, 64, 64, 4, 9));
    let prevFull = Infinity;
    let prevDiag = Infinity;
    for (const r of [2, 4, 8, 16]) {
      const full = await jdFull(kernels, slot, opts(r, { iterations: 30 }));
      const diag = await jdDiag(kernels, slot, opts(r, { iterations: 60 }));
      assert.ok(diag.objective >= full.objective - 1e-4, `rank ${r}: diag ${diag.objective} < full ${full.objective}`);
      assert.ok(full.objective < prevFull && diag.objective < prevDiag, `rank ${r}: error did not fall`);
      [prevFull, prevDiag] = [full.objective, diag.objective];
    }
  });

  it("Theorem 1's bounds hold for JD-Full on random adapters", async () => {
    for (const [n, r] of [[6, 2], [10, 3], [5, 4]] as const) {
      const slot = await packSlot(kernels, 'q_proj', 24, 20, randomAdapters(n, 24, 20, 2, 20 + n));
      const res = await jdFull(kernels, slot, opts(r, { iterations: 50 }));
      const captured = n - res.objective;
      const { lower, upper } = await theorem1Bounds(slot, r);
      assert.ok(captured >= lower - 1e-4, `n=${n} r=${r}: captured ${captured} < lower ${lower}`);
      assert.ok(captured <= upper + 1e-4, `n=${n} r=${r}: captured ${captured} > upper ${upper}`);
    }
  });

  it('error falls with the number of clusters on clustered adapters, and clustering recovers the groups', async () => {
    const { adapters, labels } = clusteredAdapters(12, 3, 32, 32, 3);
    const slot = await packSlot(kernels, 'q_proj', 32, 32, adapters);
    const errs: number[] = [];
    let three: number[] = [];
    for (const clusters of [1, 2, 3]) {
      const res = await clusterAdapters(kernels, [slot], { method: 'jd-full', clusters, ...opts(3, { iterations: 20 }) });
      errs.push(meanOf(res));
      if (clusters === 3) three = res.assignment;
    }
    assert.ok(errs[1]! < errs[0]! && errs[2]! < errs[1]!, `errors by cluster count: ${errs.join(', ')}`);
    assert.ok(errs[2]! < 0.1, `3 clusters: mean error ${errs[2]}`);
    for (let i = 0; i < labels.length; i++) for (let j = 0; j < labels.length; j++) assert.equal(three[i] === three[j], labels[i] === labels[j], `adapters ${i} and ${j}`);
  });

  it('the per-adapter SVD baseline equals the dense truncated SVD error, computed from thin factors', async () => {
    const adapters = randomAdapters(3, 20, 16, 5, 4);
    const slot = await packSlot(kernels, 'q_proj', 20, 16, adapters);
    const res = await perAdapterSvd(kernels, slot, 3);
    for (let i = 0; i < 3; i++) {
      const a = adapters[i]!;
      // Dense check: the error of U_i diag(σ) V_iᵀ against the normalized B·A.
      const dense = mm(a.B, a.A, 20, 5, 16);
      const norm = Math.sqrt(dense.reduce((s, x) => s + x * x, 0));
      const u = res.U.subarray(i * 20 * 3, (i + 1) * 20 * 3);
      const v = res.V.subarray(i * 16 * 3, (i + 1) * 16 * 3);
      const us = Float32Array.from(u, (x, j) => x * res.sigma[i * 3 + (j % 3)]!);
      const rec = mm(us, transpose(v, 16, 3), 20, 3, 16);
      const err = Math.sqrt(dense.reduce((s, x, j) => s + (x / norm - rec[j]!) ** 2, 0));
      assert.ok(Math.abs(err - res.errors[i]!) < 1e-4, `adapter ${i}: dense ${err} vs thin ${res.errors[i]}`);
    }
  });

  it('projecting an adapter already in the span of the bases gives ~0 error and passes the incremental rule', async () => {
    const all = sharedBasisAdapters(9, m, k, 5);
    const base = await packSlot(kernels, 'q_proj', m, k, all.slice(0, 8));
    const fit = await jdFull(kernels, base, opts(5, { iterations: 20 }));
    const fresh: Slot = await packSlot(kernels, 'q_proj', m, k, [all[8]!, ...randomAdapters(1, m, k, 5, 77)]);
    const proj = await projectAdapters(kernels, [fresh], [{ slots: [{ U: fit.U, V: fit.V, rank: 5 }] }], 'jd-full');
    assert.ok(proj[0]!.meanError < 1e-5, `in-span error ${proj[0]!.meanError}`);
    assert.ok(proj[1]!.meanError > 0.5, `random adapter error ${proj[1]!.meanError}`);
    assert.equal(incrementalDecision(proj.slice(0, 1), 1).action, 'project');
    assert.deepEqual(incrementalDecision(proj, 40), { action: 'recompress', worst: { index: 1, meanError: proj[1]!.meanError } });
  });

  it('reports the same errors as the explicit residuals when it takes them from the captured energy (errors ≥ 0.3)', async () => {
    const slot = await packSlot(kernels, 'q_proj', 64, 48, randomAdapters(12, 64, 48, 4, 11));
    const I = (r: number): Float64Array => Float64Array.from({ length: r * r }, (_, j) => (j % (r + 1) === 0 ? 1 : 0));
    for (const r of [3, 8]) {
      const full = await jdFull(kernels, slot, opts(r, { iterations: 6, tolerance: 0 }));
      const explicit = await kernels.errors(slot, r, { q: full.U, R: I(r) }, { q: full.V, R: I(r) });
      full.errors.forEach((e, i) => assert.ok(e > 0.3 && Math.abs(e - Math.sqrt(explicit.err2[i]!)) < 1e-5, `jd-full rank ${r}, adapter ${i}: ${e} vs ${Math.sqrt(explicit.err2[i]!)}`));
      const diag = await jdDiag(kernels, slot, opts(r, { iterations: 6, tolerance: 0 }));
      const U = { q: diag.U, R: I(r) };
      const V = { q: diag.V, R: I(r) };
      const { gu, gv } = await kernels.project(slot, r, U, V, ['gu', 'gv']);
      const err2 = await diagErrors(kernels, slot, r, U, V, gu!, gv!, diag.sigma);
      diag.errors.forEach((e, i) => assert.ok(e > 0.3 && Math.abs(e - Math.sqrt(err2[i]!)) < 1e-5, `jd-diag rank ${r}, adapter ${i}: ${e} vs ${Math.sqrt(err2[i]!)}`));
    }
  });

  it("counts parameters as the paper's saved ratio does (JD-Full rank 256, 100 adapters: 0.50 / 0.34)", () => {
    const p = countParameters('jd-full', 1, [{ m: 4096, k: 4096, rank: 256, ranks: new Array<number>(100).fill(16) }]);
    assert.equal(p.perAdapterSavedRatio.toFixed(2), '0.50');
    assert.equal(p.savedRatio.toFixed(2), '0.34');
  });
});
