// The adapter whose per-module rank LoSA changes between rounds: what the model sees at rank r,
// what a cut rank gives up, and the PEFT adapter it writes (rank_pattern, alpha_pattern).
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadLoraAdapter, saveLoraAdapter } from '../../../../worker/formats/peft.js';
import { loraInputNames } from '../../../../worker/model/llama/params.js';
import { DynamicRankAdapter } from '../../../../worker/train/sparse/dynamic-rank.js';
import { Rng } from '../../../../worker/train/rng.js';

const Q = 'model.layers.0.self_attn.q_proj';
const D = 'model.layers.1.mlp.down_proj';

function adapter(): DynamicRankAdapter {
  const r = new Rng(1);
  return new DynamicRankAdapter(new Map([[Q, [6, 4] as const], [D, [4, 10] as const]]), 5, 3, 2, () => r.next());
}

/** Trained-looking factors: every entry of A and B set to a recognizable value. */
function train(a: DynamicRankAdapter, value: number): void {
  const params = new Map<string, Float32Array>();
  for (const [path, m] of a.active()) {
    params.set(loraInputNames(path).A, new Float32Array(m.A.data.length).fill(value));
    params.set(loraInputNames(path).B, new Float32Array(m.B.data.length).fill(value));
  }
  a.absorb(params);
}

describe('dynamic-rank adapter', () => {
  it('shows A[:r] and B[:, :r] at the module\'s rank with one fixed scaling; −1 unmerges', () => {
    const a = adapter();
    const q = a.active().get(Q);
    assert.deepEqual([q?.A.shape, q?.B.shape, q?.scaling], [[3, 4], [6, 3], 2]);
    assert.ok(q?.B.data.every((x) => x === 0), 'B starts at zero');
    assert.ok(q?.A.data.every((x) => Math.abs(x) <= 0.5) && q.A.data.some((x) => x !== 0), 'A kaiming-uniform, bound 1/√in');
    a.setRanks(new Map([[Q, 5]]));
    assert.deepEqual(a.active(-1).get(Q)?.B.shape, [6, 5]);
    assert.equal(a.active(-1).get(Q)?.scaling, -2);
  });

  it('growing a rank adds zero columns of B, so the update B·A is unchanged', () => {
    const a = adapter();
    train(a, 0.5);
    a.setRanks(new Map([[Q, 5]]));
    const q = a.active().get(Q);
    for (let o = 0; o < 6; o++) assert.deepEqual([...(q?.B.data.subarray(o * 5, o * 5 + 5) ?? [])], [0.5, 0.5, 0.5, 0, 0]);
  });

  it('a cut rank gives its columns up (discard, the paper) or keeps them for later (keep, the reference code)', () => {
    for (const rule of ['discard', 'keep'] as const) {
      const a = adapter();
      train(a, 0.5);
      a.setRanks(new Map([[Q, 1]]), rule);
      a.setRanks(new Map([[Q, 3]]), rule);
      const b = a.active().get(Q)?.B.data as Float32Array;
      assert.deepEqual([...b.subarray(0, 3)], rule === 'discard' ? [0.5, 0, 0] : [0.5, 0.5, 0.5], rule);
      const A = a.active().get(Q)?.A.data as Float32Array;
      assert.equal(A.subarray(4).every((x) => x === 0.5), rule === 'keep', `${rule}: A's cut rows ${rule === 'keep' ? 'kept' : 'drawn anew'}`);
    }
  });

  it('writes a PEFT adapter with per-module ranks that loads back with alpha/r at the fixed scaling', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-dynrank-'));
    try {
      const a = adapter();
      train(a, 0.25);
      a.setRanks(new Map([[Q, 2], [D, 4]]));
      const peft = a.toPeft(['q_proj', 'down_proj'], 'tiny');
      assert.equal(peft.config.r, 4);
      assert.deepEqual(peft.config.rankPattern, { 'layers.0.self_attn.q_proj': 2 });
      await saveLoraAdapter(dir, peft);
      const back = await loadLoraAdapter(dir);
      assert.deepEqual([back.modules.get(Q)?.rank, back.modules.get(D)?.rank], [2, 4]);
      assert.deepEqual([back.modules.get(Q)?.scaling, back.modules.get(D)?.scaling], [2, 2]);
      assert.deepEqual([...(back.modules.get(D)?.B.data ?? [])].slice(0, 4), [0.25, 0.25, 0.25, 0]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
