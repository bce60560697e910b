import { strict as assert } from 'node:assert';
import { accumulate, AdamW, clipGradNorm, globalNorm } from '../../../worker/train/optimizer.js';
import { Rng } from '../../../worker/train/rng.js';
import { learningRate, type Schedule } from '../../../worker/train/schedule.js';

const close = (a: number, b: number, tol: number, what: string): void => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

describe('AdamW', () => {
  it('matches two steps computed by hand (decoupled decay, bias correction)', () => {
    const p = new Float32Array([1, -2]);
    const params = new Map([['w', p]]);
    const opt = new AdamW({ weightDecay: 0.01 });
    opt.step(params, new Map([['w', new Float32Array([0.5, -0.1])]]), 0.1);
    // Step 1: m̂ = g and v̂ = g², so the update is lr·sign(g) after p·(1 − lr·λ).
    close(p[0]!, 0.899000002, 1e-6, 'p0 after step 1');
    close(p[1]!, -1.89800001, 1e-6, 'p1 after step 1');
    opt.step(params, new Map([['w', new Float32Array([0.2, 0.3])]]), 0.1);
    close(p[0]!, 0.8082434839009282, 1e-6, 'p0 after step 2');
    close(p[1]!, -1.9455209911100655, 1e-6, 'p1 after step 2');
    assert.equal(opt.state.t, 2);
  });

  it('does not decay parameters listed in noDecay', () => {
    const a = new Float32Array([1]);
    const b = new Float32Array([1]);
    const opt = new AdamW({ weightDecay: 0.5, noDecay: new Set(['b']) });
    const zero = new Float32Array([0]);
    opt.step(new Map([['a', a], ['b', b]]), new Map([['a', zero], ['b', zero]]), 0.1);
    close(a[0]!, 0.95, 1e-7, 'decayed');
    assert.equal(b[0], 1);
  });

  it('names a parameter that has no gradient', () => {
    assert.throws(() => new AdamW().step(new Map([['w', new Float32Array(1)]]), new Map(), 0.1), /no gradient for parameter w/);
  });
});

describe('gradient clipping by global norm', () => {
  it('scales every gradient by maxNorm / norm when the norm is above maxNorm', () => {
    const grads = new Map([['a', new Float32Array([3, 0])], ['b', new Float32Array([4])]]);
    const norm = clipGradNorm(grads, 1);
    assert.equal(norm, 5);
    close(globalNorm(grads), 1, 1e-6, 'clipped norm');
    close(grads.get('a')![0]!, 0.6, 1e-6, 'a[0]');
    close(grads.get('b')![0]!, 0.8, 1e-6, 'b[0]');
  });

  it('leaves gradients below maxNorm untouched', () => {
    const grads = new Map([['a', new Float32Array([0.3, 0.4])]]);
    clipGradNorm(grads, 1);
    assert.deepEqual([...grads.get('a')!], [...new Float32Array([0.3, 0.4])]);
  });
});

describe('gradient accumulation helper', () => {
  it('sums gradients per parameter and copies on first use', () => {
    const sum = new Map<string, Float32Array>();
    const g = new Float32Array([1, 2]);
    accumulate(sum, new Map([['w', g]]));
    accumulate(sum, new Map([['w', new Float32Array([0.5, 0.5])]]));
    assert.deepEqual([...sum.get('w')!], [1.5, 2.5]);
    assert.deepEqual([...g], [1, 2]);
  });
});

describe('learning-rate schedules', () => {
  const base = { peakLr: 1e-3, warmupSteps: 10, totalSteps: 110, minLrRatio: 0 };

  it('warms up linearly from 0 to the peak', () => {
    const s: Schedule = { ...base, kind: 'cosine' };
    assert.equal(learningRate(s, 0), 0);
    close(learningRate(s, 5), 5e-4, 1e-12, 'half warmup');
    close(learningRate(s, 10), 1e-3, 1e-12, 'end of warmup');
  });

  it('cosine decays to half the peak halfway and to the floor at the end', () => {
    const s: Schedule = { ...base, kind: 'cosine', minLrRatio: 0.1 };
    close(learningRate(s, 60), 1e-4 + 0.9e-3 * 0.5, 1e-12, 'halfway');
    close(learningRate(s, 110), 1e-4, 1e-12, 'end');
    close(learningRate(s, 500), 1e-4, 1e-12, 'past the end');
  });

  it('linear decays to zero at totalSteps', () => {
    const s: Schedule = { ...base, kind: 'linear' };
    close(learningRate(s, 60), 5e-4, 1e-12, 'halfway');
    close(learningRate(s, 85), 2.5e-4, 1e-12, 'three quarters');
    assert.equal(learningRate(s, 110), 0);
  });

  it('constant stays at the peak after warmup', () => {
    assert.equal(learningRate({ ...base, kind: 'constant' }, 100), 1e-3);
  });
});

describe('seeded RNG', () => {
  it('continues the same sequence from a saved state', () => {
    const a = new Rng(42);
    a.next();
    const b = Rng.fromState(a.state);
    assert.deepEqual([a.next(), a.int(10), a.normal()], [b.next(), b.int(10), b.normal()]);
  });
});
