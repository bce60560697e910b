// Linear CKA and LoSA's layer importance: the Gram graph against the host's H K H, CKA's
// invariances, and imp_i = exp(−m_i / Σ m) on a hand-made matrix.
import { strict as assert } from 'node:assert';
import { matmulF64, transposeF64 } from '../../../../worker/onnx/linalg.js';
import { SessionCache } from '../../../../worker/onnx/session.js';
import { CenteredGram, centerGram, cka, ckaMatrix, rmiImportance } from '../../../../worker/train/sparse/cka.js';
import { Rng } from '../../../../worker/train/rng.js';

const N = 12;
const WIDTH = 40;

function features(seed: number, offset = 0): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: N * WIDTH }, () => r.normal() + offset);
}

/** X Xᵀ on the host, uncentred. */
function hostGram(x: Float32Array, n: number, width: number): Float64Array {
  const f = Float64Array.from(x);
  return matmulF64(f, transposeF64(f, n, width), n, width, n);
}

/** X·Q for an orthogonal Q made by Gram–Schmidt: rotations must not change CKA. */
function rotate(x: Float32Array, seed: number): Float32Array {
  const r = new Rng(seed);
  const q: number[][] = [];
  while (q.length < WIDTH) {
    const v = Array.from({ length: WIDTH }, () => r.normal());
    for (const u of q) {
      const dot = v.reduce((s, x, i) => s + x * (u[i] as number), 0);
      for (let i = 0; i < WIDTH; i++) v[i] = (v[i] as number) - dot * (u[i] as number);
    }
    const norm = Math.hypot(...v);
    q.push(v.map((x) => x / norm));
  }
  const out = new Float32Array(N * WIDTH);
  for (let i = 0; i < N; i++) for (let j = 0; j < WIDTH; j++) {
    let s = 0;
    for (let k = 0; k < WIDTH; k++) s += (x[i * WIDTH + k] as number) * (q[k]?.[j] as number);
    out[i * WIDTH + j] = s;
  }
  return out;
}

describe('linear CKA and layer importance', () => {
  const cache = new SessionCache({ intraOpThreads: 1 });
  const gram = new CenteredGram(cache);
  after(() => cache.dispose());

  it('the graph\'s Gram of centred features is H·XXᵀ·H computed on the host', async () => {
    const x = features(1, 5); // a large common offset: what centring the features first is for
    const fromGraph = await gram.of(x, N);
    const fromHost = centerGram(hostGram(x, N, WIDTH), N);
    const scale = Math.max(...fromHost.map(Math.abs));
    fromGraph.forEach((v, i) => assert.ok(Math.abs(v - (fromHost[i] as number)) <= 1e-4 * scale, `entry ${i}: ${v} vs ${fromHost[i]}`));
  });

  it('CKA of a representation with itself is 1, and stays 1 under rotation, scaling and translation', async () => {
    const x = features(2);
    const k = await gram.of(x, N);
    assert.ok(Math.abs(cka(k, k) - 1) < 1e-12);
    const moved = rotate(x, 3).map((v) => 3 * v + 7);
    assert.ok(Math.abs(cka(k, await gram.of(moved, N)) - 1) < 1e-4, `${cka(k, await gram.of(moved, N))}`);
  });

  it('CKA of independent representations is below that of a noisy copy, and symmetric', async () => {
    const x = features(4);
    const a = await gram.of(x, N);
    const b = await gram.of(features(5), N);
    const noise = features(7);
    const near = await gram.of(x.map((v, i) => v + 0.3 * (noise[i] as number)), N);
    const v = cka(a, b);
    // Few samples for the width bias linear CKA upwards (≈0.7 here), but not to a copy's level.
    assert.ok(v < 0.9 && cka(a, near) > 0.95, `independent ${v}, noisy copy ${cka(a, near)}`);
    assert.equal(cka(b, a), v);
    const m = ckaMatrix([a, b, a]);
    assert.deepEqual([m[0], m[4], m[8]].map((x) => Math.round((x as number) * 1e12) / 1e12), [1, 1, 1]);
    assert.equal(m[1], m[3]);
    assert.ok(Math.abs((m[2] as number) - 1) < 1e-12, 'a representation repeated two blocks later');
  });

  it('a representation without spread over the samples shares nothing: CKA 0', async () => {
    const constant = new Float32Array(N * WIDTH).fill(2);
    const flat = await gram.of(constant, N);
    assert.equal(cka(flat, await gram.of(features(6), N)), 0);
  });

  it('imp_i = exp(−m_i / Σ_k m_k) with m_i the CKA of block i with every other block', () => {
    // Blocks 0 and 1 alike (0.9), block 2 apart from both (0.2, 0.3).
    const m = [1, 0.9, 0.2, 0.9, 1, 0.3, 0.2, 0.3, 1];
    const { redundancy, importance } = rmiImportance(m, 3);
    assert.deepEqual(redundancy.map((x) => Math.round(x * 1e12) / 1e12), [1.1, 1.2, 0.5]);
    const total = 2.8;
    importance.forEach((v, i) => assert.ok(Math.abs(v - Math.exp(-(redundancy[i] as number) / total)) < 1e-15));
    // The block that shares least is the most important; the most redundant the least.
    assert.deepEqual([...importance.keys()].sort((a, b) => (importance[b] as number) - (importance[a] as number)), [2, 0, 1]);
  });

  it('with nothing shared at all, every block is equally important', () => {
    assert.deepEqual(rmiImportance([1, 0, 0, 1], 2).importance, [1, 1]);
    assert.deepEqual(rmiImportance([1], 1).importance, [1]);
  });
});
