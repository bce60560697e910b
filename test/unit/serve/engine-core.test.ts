// The batching engine in process (no thread): every row of a batch gets exactly what its own
// adapter gives alone, whether it is a bundle adapter (JD branch), a raw one (gathered LoRA) or
// the base model, and whether it joined the batch first or mid-flight.
import assert from 'node:assert/strict';
import { materializeAdapter, readJdBundle, type JdBundle } from '../../../worker/formats/jd-bundle.js';
import { type LoraWeights } from '../../../worker/model/llama/index.js';
import { generate } from '../../../worker/modes/generate.js';
import { adapterToLora, loadAdapter, loadModel, type LoadedModel } from '../../../worker/modes/load-model.js';
import { SessionCache } from '../../../worker/onnx/session.js';
import { BASE_ROUTE, packAdapters, type PackedAdapters } from '../../../worker/serve/adapter-pack.js';
import { EngineCore, type EngineEvent, type SequenceSpec } from '../../../worker/serve/engine-core.js';
import { ModelRunner } from '../../../worker/serve/model-runner.js';
import { GREEDY } from '../../../worker/serve/sampling.js';
import { servingFixture } from './fixture.js';

describe('serve: batching engine', function () {
  this.timeout(60_000);
  let model: LoadedModel;
  let bundle: JdBundle;
  let diag: JdBundle;
  let raw: Map<string, LoraWeights>;
  let packed: PackedAdapters;
  const cache = new SessionCache({ intraOpThreads: 1 });

  before(async () => {
    const f = await servingFixture();
    model = await loadModel(f.modelDir);
    [bundle, diag] = await Promise.all(f.bundles.map((b) => readJdBundle(b.uri))) as [JdBundle, JdBundle];
    raw = new Map();
    for (const a of f.raw) raw.set(a.name, (await loadAdapter(a.dir, f.config)).lora);
    packed = packAdapters('rev1', [bundle, diag], raw);
  });
  after(() => cache.dispose());

  const prompts = [[1, 40, 41, 42, 43], [1, 50, 60], [1, 70, 71, 72, 73, 74, 75, 76]];

  /** What generate() gives for one prompt with the adapter as ordinary LoRA factors (the eval path). */
  async function reference(prompt: number[], name: string | null, maxNewTokens: number): Promise<number[]> {
    let lora: LoraWeights | undefined;
    if (name !== null) {
      const b = [bundle, diag].find((x) => x.manifest.adapters.some((a) => a.name === name));
      lora = b ? adapterToLora(materializeAdapter(b, name)) : raw.get(name);
    }
    const [out] = await generate({ config: model.config, weights: model.weights, prompts: [prompt], maxNewTokens, cache, ...(lora ? { lora } : {}) });
    return out as number[];
  }

  async function runEngine(seqs: Array<{ prompt: number[]; adapter: string | null; maxTokens: number; after?: number; pack?: PackedAdapters }>, limits = { maxBatchSize: 8, maxBatchTokens: 512, kvCacheTokens: 4096 }, order: EngineEvent[] = []): Promise<Map<number, number[]>> {
    const runner = new ModelRunner({ config: model.config, weights: model.weights, session: { intraOpThreads: 1 } });
    const tokens = new Map<number, number[]>();
    const finished = new Set<number>();
    const core = new EngineCore(runner, limits, (events: EngineEvent[]) => {
      order.push(...events);
      for (const e of events) {
        if (e.kind === 'token') tokens.set(e.id, [...(tokens.get(e.id) ?? []), e.token]);
        if (e.kind === 'finished') {
          assert.notEqual(e.reason, 'error', e.message);
          finished.add(e.id);
        }
      }
    });
    core.setPack(packed.pack);
    let posted = packed;
    const spec = (i: number): SequenceSpec => {
      const s = seqs[i] as (typeof seqs)[number];
      const p = s.pack ?? posted;
      // A sequence for another pack is submitted after that pack, as the serving adapters do.
      if (p !== posted) {
        core.setPack(p.pack);
        posted = p;
      }
      const route = s.adapter === null ? BASE_ROUTE : p.routes.get(s.adapter);
      assert.ok(route, `no route for ${s.adapter}`);
      return { id: i, prompt: s.prompt, maxTokens: s.maxTokens, sampling: GREEDY, stopTokenIds: [], packId: s.adapter === null ? null : p.pack.id, route };
    };
    let steps = 0;
    const submitted = new Set<number>();
    while (finished.size < seqs.length) {
      seqs.forEach((s, i) => {
        if (!submitted.has(i) && (s.after ?? 0) <= steps) {
          core.submit(spec(i));
          submitted.add(i);
        }
      });
      await core.step();
      steps++;
      assert.ok(steps < 500, 'the engine made no progress');
    }
    await runner.dispose();
    return tokens;
  }

  it('gives each row of a mixed batch what its adapter gives alone (base, JD-Full with 2 clusters, JD-Diag, raw)', async () => {
    const names = [null, 'p0', 'p3', 'n1', 'r0', 'r1', 'p1'];
    const seqs = names.map((adapter, i) => ({ prompt: prompts[i % prompts.length] as number[], adapter, maxTokens: 6 }));
    const got = await runEngine(seqs);
    for (const [i, s] of seqs.entries()) {
      assert.deepEqual(got.get(i), await reference(s.prompt, s.adapter, 6), `row ${i} (${s.adapter ?? 'base'})`);
    }
    assert.notDeepEqual(got.get(1), got.get(0), 'a bundle adapter changes the greedy output of the base model');
  });

  it('lets sequences join a running batch and leave it early without changing anyone\'s tokens', async () => {
    const seqs = [
      { prompt: prompts[0] as number[], adapter: 'p2', maxTokens: 10 },
      { prompt: prompts[1] as number[], adapter: null, maxTokens: 3 },
      { prompt: prompts[2] as number[], adapter: 'r1', maxTokens: 7, after: 2 },
      { prompt: prompts[1] as number[], adapter: 'n0', maxTokens: 5, after: 4 },
    ];
    const got = await runEngine(seqs, { maxBatchSize: 3, maxBatchTokens: 64, kvCacheTokens: 256 });
    for (const [i, s] of seqs.entries()) assert.deepEqual(got.get(i), await reference(s.prompt, s.adapter, s.maxTokens), `sequence ${i}`);
  });

  it('switches to a new adapter pack between batches: its sequences wait for the running ones to finish, and later arrivals queue behind them', async () => {
    // The next revision serves only the JD-Diag bundle, so its slots differ from rev1's.
    const next = packAdapters('rev2', [diag], new Map());
    const seqs = [
      { prompt: prompts[0] as number[], adapter: 'p1', maxTokens: 8 },
      { prompt: prompts[1] as number[], adapter: 'n1', maxTokens: 4, after: 2, pack: next },
      { prompt: prompts[2] as number[], adapter: null, maxTokens: 3, after: 3 },
    ];
    const order: EngineEvent[] = [];
    const got = await runEngine(seqs, undefined, order);
    for (const [i, s] of seqs.entries()) assert.deepEqual(got.get(i), await reference(s.prompt, s.adapter, s.maxTokens), `sequence ${i}`);
    const at = (kind: EngineEvent['kind'], id: number): number => order.findIndex((e) => e.kind === kind && e.id === id);
    assert.ok(at('started', 1) > at('finished', 0), 'the rev2 sequence starts once the rev1 one has finished');
    // Strict arrival order: the base-model sequence queued behind the rev2 one waits too (no starvation of a pack switch).
    assert.ok(at('started', 2) > at('started', 1));
  });
});
