// Task adapters for JD compression, end to end on the tiny pretrained base: one LoRA per Brown
// document (six genres), each helping on its own held-out paragraphs; JD-Full keeps most of
// that help; and, as in the paper's appendix G.9, trained adapters compress with lower error
// than random adapters of the same shapes and norms.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { pino } from 'pino';
import { compressAdapters, type CompressSummary } from '../../../worker/compress/run.js';
import { loadLoraAdapter, saveLoraAdapter } from '../../../worker/formats/peft.js';
import { JD_BUNDLE_SOURCE } from '../../../worker/modes/jd-adapter-source.js';
import { loadModel } from '../../../worker/modes/load-model.js';
import { pretrain } from '../../../worker/modes/pretrain.js';
import { brownTasks, randomAdapterLike, registerTaskAdapters, relativePerformance, splitTaskText, type TaskAdaptersResult, taskPerplexities, trainTaskAdapters } from '../../../worker/modes/task-adapters.js';
import { SessionCache } from '../../../worker/onnx/session.js';

const frobenius = (x: Float32Array): number => Math.sqrt(x.reduce((s, v) => s + v * v, 0));

describe('task adapters', function () {
  this.timeout(120_000);
  let dir: string;
  let model: string;
  let trained: TaskAdaptersResult;
  const cache = new SessionCache({ intraOpThreads: 1 });
  const tasks = brownTasks(6);
  const RANK = 8;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-task-adapters-'));
    model = join(dir, 'tiny');
    await pretrain({ output: model, size: 'tiny', seed: 0, threads: 1, log: pino({ level: 'silent' }) });
    trained = await trainTaskAdapters({ model, tasks, rank: 4, steps: 40, learningRate: 1e-2, output: join(dir, 'adapters'), seed: 0, log: pino({ level: 'silent' }), cache });
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await cache.dispose();
  });

  it('builds Brown tasks one document per genre, the same on every call, holding out whole paragraphs', () => {
    const genres = tasks.map((t) => t.name.slice('brown-c'.length, 'brown-c'.length + 1));
    assert.deepEqual(genres, ['a', 'b', 'c', 'd', 'e', 'f']);
    assert.deepEqual(brownTasks(6), tasks);
    for (const t of tasks) {
      assert.ok(t.evalText.length > 0.1 * (t.trainText.length + t.evalText.length), `${t.name}: held-out ${t.evalText.length} of ${t.trainText.length + t.evalText.length} characters`);
      for (const p of t.evalText.split('\n\n')) assert.ok(!t.trainText.includes(p), `${t.name}: a held-out paragraph is also in the training text`);
    }
    // Too few paragraphs to interleave: a tail cut at a space.
    assert.deepEqual(splitTaskText('one two three four five', 0.2), { trainText: 'one two three four', evalText: 'five' });
  });

  it('relative performance is the share of the adapter’s perplexity gain the compressed adapter keeps', () => {
    assert.equal(relativePerformance(100, 90, 80), 0.5);
    assert.equal(relativePerformance(100, 80, 80), 1);
    assert.ok(Number.isNaN(relativePerformance(100, 90, 101)), 'undefined when the adapter does not help');
  });

  it('saves one PEFT adapter per task on q_proj and v_proj of every layer, and each lowers held-out perplexity on its own task', async () => {
    assert.equal(trained.adapters.length, 6);
    for (const a of trained.adapters) {
      const adapter = await loadLoraAdapter(a.dir);
      assert.deepEqual([...adapter.modules.keys()].sort(), ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']);
      assert.ok(a.pplLora < a.pplBase, `${a.name}: perplexity ${a.pplBase.toFixed(2)} → ${a.pplLora.toFixed(2)}`);
    }
    // Independent of the training run: the saved directory reproduces the reported perplexity.
    const loaded = await loadModel(model);
    const ppl = await taskPerplexities({ model: loaded, tasks, adapter: (t) => join(dir, 'adapters', t.name), sequenceLength: trained.sequenceLength, cache });
    ppl.forEach((p, i) => assert.ok(Math.abs(p - (trained.adapters[i]?.pplLora as number)) < 1e-3 * p));
  });

  describe('compressed with JD-Full', () => {
    let jd: CompressSummary;
    before(async () => {
      jd = await compressAdapters({ adapters: trained.adapters.map((a) => ({ name: a.name, dir: a.dir })), method: 'jd-full', rank: RANK, clusters: 1, output: join(dir, 'jd') });
    });

    it(`at rank ${RANK} keeps a mean relative performance in (0, 1.2] while saving parameters`, async () => {
      const loaded = await loadModel(model);
      const ppl = await taskPerplexities({ model: loaded, tasks, adapter: (t) => `${join(dir, 'jd')}#${t.name}`, sources: [JD_BUNDLE_SOURCE], sequenceLength: trained.sequenceLength, cache });
      const rel = trained.adapters.map((a, i) => relativePerformance(a.pplBase, ppl[i] as number, a.pplLora));
      const mean = rel.reduce((s, x) => s + x, 0) / rel.length;
      assert.ok(mean > 0 && mean <= 1.2, `mean relative performance ${mean} (${rel.map((x) => x.toFixed(2)).join(', ')})`);
      assert.ok(jd.meanErrorPercent > 0 && jd.meanErrorPercent < 100, `error ${jd.meanErrorPercent}%`);
      assert.ok(jd.parameters.savedRatio > 0.4, `saved ${jd.parameters.savedRatio}`);
    });

    it('compresses the trained adapters with lower reconstruction error than random adapters of the same shapes and norms (G.9)', async () => {
      const random = [];
      for (const [i, a] of trained.adapters.entries()) {
        const original = await loadLoraAdapter(a.dir);
        const r = randomAdapterLike(original, i + 1);
        for (const [name, m] of original.modules) {
          const rm = r.modules.get(name);
          assert.ok(rm && Math.abs(frobenius(rm.A.data) - frobenius(m.A.data)) < 1e-3 * frobenius(m.A.data));
          assert.deepEqual([rm.A.shape, rm.B.shape], [m.A.shape, m.B.shape]);
        }
        const d = join(dir, 'random', a.name);
        await saveLoraAdapter(d, r);
        random.push({ name: a.name, dir: d });
      }
      const rjd = await compressAdapters({ adapters: random, method: 'jd-full', rank: RANK, clusters: 1, output: join(dir, 'jd-random') });
      assert.ok(jd.meanErrorPercent < rjd.meanErrorPercent - 5, `trained ${jd.meanErrorPercent.toFixed(1)}% vs random ${rjd.meanErrorPercent.toFixed(1)}%`);
    });
  });

  it('registers a task-adapters command that rejects an unknown corpus', async () => {
    const program = new Command('tessera-worker').exitOverride().configureOutput({ writeErr: () => undefined });
    registerTaskAdapters(program);
    assert.ok(program.commands.some((c) => c.name() === 'task-adapters'));
    await assert.rejects(program.parseAsync(['task-adapters', '--model', model, '--output', join(dir, 'x'), '--corpus', 'moby'], { from: 'user' }), /moby/);
  });
});
