// The train workload as the SparseFineTune Job runs it: spec file in; adapter and merged model out
// under the output folder; reports that become the object's status; clear failures for bad input.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { pino } from 'pino';
import { type SparseFineTuneSpec, SparseFineTuneStatus } from '../../../operator/api/v1alpha1/index.js';
import { tesseraStatusMapper } from '../../../operator/status/kind-mappers.js';
import { emptyState, foldReport } from '../../../operator/status/state.js';
import type { Artifact, Completion, LayerMetric, Progress } from '../../../operator/status/wire.js';
import { loadBrown } from '../../../worker/data/corpora.js';
import { numParameters } from '../../../worker/model/llama/weights.js';
import { readSafetensors } from '../../../worker/formats/safetensors.js';
import { adapterToLora, loadAdapter, loadModel } from '../../../worker/modes/load-model.js';
import { runTrain } from '../../../worker/modes/train.js';
import { type TrainSpecFile } from '../../../worker/modes/train-inputs.js';
import { WorkloadError } from '../../../worker/modes/workload.js';
import type { Reporter } from '../../../worker/report/reporter.js';
import { modelSparsity } from '../../../worker/train/sparse/prune-model.js';
import { objectRef } from '../status/harness.js';
import { pretrainedTiny, type TinyFixture } from '../train/sparse/fixture.js';

/** Records what the workload reports; the rest of the Reporter is not used by train. */
class RecordingReporter {
  readonly stages: string[] = [];
  readonly progressSent: Partial<Progress>[] = [];
  readonly metricsSent: { values: Record<string, number>; layers: LayerMetric[] }[] = [];
  readonly artifacts: Artifact[] = [];
  readonly completions: Completion[] = [];
  progress(p: Partial<Progress>): void {
    this.progressSent.push(p);
    if (p.stage && this.stages.at(-1) !== p.stage) this.stages.push(p.stage);
  }
  metrics(values: Record<string, number>, layers: LayerMetric[] = []): void {
    this.metricsSent.push({ values, layers });
  }
  artifact(a: Artifact): void {
    this.artifacts.push(a);
  }
  completion(c: Completion): void {
    this.completions.push(c);
  }
}

describe('the train workload', function () {
  this.timeout(120_000);
  let tiny: TinyFixture;
  let root: string;

  before(async () => {
    tiny = await pretrainedTiny();
    root = await fsp.mkdtemp(join(tmpdir(), 'tessera-train-mode-'));
    await fsp.mkdir(join(root, 'data'));
    await fsp.writeFile(join(root, 'data', 'train.jsonl'), tiny.paragraphs.map((text) => JSON.stringify({ text })).join('\n'));
  });
  after(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  const spec = (over: Partial<SparseFineTuneSpec> = {}): SparseFineTuneSpec => ({
    baseModel: { uri: 'file:///models/tiny' },
    dataset: { uri: 'file:///data/train.jsonl', format: 'jsonl', textField: 'text' },
    calibration: { samples: 16, sequenceLength: 64 },
    method: 'sparsepeft',
    sparsity: { targetPercent: 50, pattern: 'unstructured', pruner: 'sparsegpt', layerwise: 'uniform', schedule: { kind: 'oneshot', steps: 1 } },
    adapter: { rank: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'], rankAllocation: 'uniform' },
    training: { steps: 20, batchSize: 4, gradientAccumulation: 2, sequenceLength: 64, learningRate: '5e-3', warmupPercent: 10, scheduler: 'cosine', maxGradNorm: '1', weightDecay: '0', seed: 1, checkpointEvery: 0 },
    output: { uri: 'file:///out/run', mergedModel: true, adapter: true },
    resources: { gpus: 0 },
    backoffLimit: 0,
    ...over,
  });
  /** Runs the workload as the Job would, with the operator's resolved locations (file:// → path). */
  const run = async (s: unknown): Promise<RecordingReporter> => {
    const locations: Record<string, string> = { 'file:///models/tiny': tiny.dir, 'file:///data/train.jsonl': join(root, 'data', 'train.jsonl'), 'file:///out/run': join(root, 'out', 'run') };
    const reporter = new RecordingReporter();
    await runTrain({ spec: { spec: s, locations } as TrainSpecFile, specFile: 'spec.json', reporter: reporter as unknown as Reporter, log: pino({ level: 'silent' }) });
    return reporter;
  };
  const failure = async (s: unknown, reason: string, message: RegExp): Promise<void> => {
    await assert.rejects(run(s), (err: unknown) => {
      assert.ok(err instanceof WorkloadError, String(err));
      assert.equal(err.reason, reason, err.message);
      assert.match(err.message, message);
      return true;
    });
  };

  it('prunes, trains and writes a PEFT adapter and a merged model whose sparsity is the target, reporting what the status shows', async () => {
    const reporter = await run(spec());
    const out = join(root, 'out', 'run');
    assert.deepEqual((await fsp.readdir(out)).sort(), ['adapter', 'model'], 'no .pending or .checkpoints folder is left behind');
    const model = await loadModel(join(out, 'model'));
    assert.ok(model.tokenizer, 'the merged model carries the base\'s tokenizer');
    assert.equal(modelSparsity(model.config, model.weights).percent, 50);
    const adapter = await loadAdapter(join(out, 'adapter'), model.config);
    assert.equal(adapter.adapter.config.r, 4);
    assert.equal(adapter.adapter.modules.size, 2 * 3);

    assert.deepEqual(reporter.stages, ['Pruning', 'Evaluating', 'Training', 'Merging', 'Evaluating', 'Succeeded']);
    const state = emptyState(objectRef('run', { kind: 'SparseFineTune' }));
    let seq = 0;
    const fold = (body: Parameters<typeof foldReport>[1]['body'], value: object): void => {
      foldReport(state, { seq: ++seq, object: state.ref, pod: 'p', unixMs: seq, body, [body]: value } as Parameters<typeof foldReport>[1], 'p', seq);
    };
    fold('metrics', reporter.metricsSent.at(-1) as object);
    for (const a of reporter.artifacts) fold('artifact', a);
    fold('completion', reporter.completions.at(-1) as object);
    const status = tesseraStatusMapper(state) as { metrics: { loss: number; perplexityBefore: number; perplexityAfter: number; achievedSparsityPercent: number; layers: LayerMetric[] }; outputs: { modelUri: string; adapterUri: string; digests: { name: string; sha256: string }[] } };
    assert.ok(Value.Check(SparseFineTuneStatus, status), JSON.stringify([...Value.Errors(SparseFineTuneStatus, status)].map((e) => `${e.path}: ${e.message}`)));
    assert.equal(status.metrics.achievedSparsityPercent, 50);
    assert.ok(status.metrics.perplexityAfter < status.metrics.perplexityBefore, `${status.metrics.perplexityBefore} → ${status.metrics.perplexityAfter}`);
    assert.ok(Number.isFinite(status.metrics.loss));
    assert.deepEqual(status.metrics.layers.map((l) => [l.index, l.sparsityPercent, l.rank]), [[0, 50, 4], [1, 50, 4]]);
    assert.ok(status.metrics.layers.every((l) => l.reconstructionError > 0));
    assert.equal(status.outputs.modelUri, 'file:///out/run/model');
    assert.equal(status.outputs.adapterUri, 'file:///out/run/adapter');
    const names = status.outputs.digests.map((d) => d.name);
    for (const f of ['adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'model/config.json', 'model/model.safetensors', 'model/tokenizer.json']) assert.ok(names.includes(f), `${f} in ${names.join(', ')}`);
    for (const d of status.outputs.digests) {
      assert.equal(d.sha256, createHash('sha256').update(await fsp.readFile(join(out, d.name))).digest('hex'), d.name);
    }
  });

  it('a second run replaces the outputs of the first, and lora with only the adapter writes no model', async () => {
    const reporter = await run(spec({ method: 'lora', sparsity: undefined, output: { uri: 'file:///out/run', mergedModel: false, adapter: true } }));
    assert.deepEqual(Object.keys(reporter.completions.at(-1)?.outputs ?? {}), ['adapterUri']);
    assert.equal(reporter.metricsSent.at(-1)?.values.achievedSparsityPercent, 0);
    assert.ok(!reporter.stages.includes('Pruning'));
    const out = join(root, 'out', 'run');
    // The first run's merged model stays: this run did not write one, and outputs are the user's data.
    assert.deepEqual((await fsp.readdir(out)).sort(), ['adapter', 'model']);
    const digest = reporter.artifacts.find((a) => a.name === 'adapter/adapter_model.safetensors')?.sha256;
    assert.equal(digest, createHash('sha256').update(await fsp.readFile(join(out, 'adapter', 'adapter_model.safetensors'))).digest('hex'));
  });

  it('shears writes the heuristic sub-adapter (rank 6, lora_alpha 12: the scale stays alpha/r_max) and its masked merge, and reports each cut\'s perplexity', async () => {
    const reporter = await run(spec({ method: 'shears', adapter: { ...spec().adapter, rank: 8, alpha: 16 }, elastic: { rankChoices: [8, 6, 4], subAdapter: 'heuristic' } }));
    const out = join(root, 'out', 'run');
    const model = await loadModel(join(out, 'model'));
    assert.equal(modelSparsity(model.config, model.weights).percent, 50);
    const adapter = await loadAdapter(join(out, 'adapter'), model.config);
    assert.equal(adapter.adapter.config.r, 6);
    assert.equal(adapter.adapter.config.loraAlpha, 12);
    const values = reporter.metricsSent.at(-1)?.values ?? {};
    for (const k of ['perplexityMaximal', 'perplexityHeuristic', 'perplexityMinimal']) assert.ok(Number.isFinite(values[k]) && (values[k] as number) < (values.perplexityBefore as number), `${k}: ${values[k]} vs pruned ${values.perplexityBefore}`);
    assert.equal(values.perplexityAfter, values.perplexityHeuristic);
    assert.deepEqual(reporter.metricsSent.at(-1)?.layers.map((l) => l.rank), [6, 6]);
  });

  it('shears with subAdapter search writes the searched sub-adapter, no larger than the heuristic and no worse on held-out perplexity, and still reports each cut', async () => {
    const reporter = await run(spec({ method: 'shears', adapter: { ...spec().adapter, rank: 8, alpha: 16 }, elastic: { rankChoices: [8, 6, 4], subAdapter: 'search' } }));
    const out = join(root, 'out', 'run');
    const model = await loadModel(join(out, 'model'));
    assert.equal(modelSparsity(model.config, model.weights).percent, 50);
    const adapter = await loadAdapter(join(out, 'adapter'), model.config);
    const lora = adapterToLora(adapter.adapter);
    let parameters = 0;
    for (const m of lora.values()) {
      assert.ok([8, 6, 4].includes(m.A.shape[0] as number), `rank ${m.A.shape[0]}`);
      assert.ok(Math.abs(m.scaling - 2) < 1e-12, `scaling ${m.scaling}: alpha/r_max at every rank`);
      parameters += (m.A.shape[0] as number) * ((m.A.shape[1] as number) + (m.B.shape[0] as number));
    }
    const heuristic = [...lora.values()].reduce((n, m) => n + 6 * ((m.A.shape[1] as number) + (m.B.shape[0] as number)), 0);
    assert.ok(parameters <= heuristic, `${parameters} parameters vs the heuristic's ${heuristic}`);
    const values = reporter.metricsSent.at(-1)?.values ?? {};
    for (const k of ['perplexityMaximal', 'perplexityHeuristic', 'perplexityMinimal']) assert.ok(Number.isFinite(values[k]), `${k}: ${values[k]}`);
    assert.ok((values.perplexityAfter as number) <= (values.perplexityHeuristic as number), `search ${values.perplexityAfter} vs heuristic ${values.perplexityHeuristic}`);
    // Each block reports its q/k/v group's rank.
    assert.deepEqual(reporter.metricsSent.at(-1)?.layers.map((l) => l.rank), [0, 1].map((l) => lora.get(`model.layers.${l}.self_attn.q_proj`)?.A.shape[0]));
  });

  it('qa-sparsepeft writes the merged model dequantized and its 4-bit codes, scales and zeros beside it, and reports the pruned and quantized perplexities', async () => {
    const reporter = await run(spec({ method: 'qa-sparsepeft', quantization: { bits: 4, groupSize: 128 } }));
    const out = join(root, 'out', 'run');
    const model = await loadModel(join(out, 'model'));
    assert.ok(modelSparsity(model.config, model.weights).percent >= 50);
    const { metadata, tensors } = await readSafetensors(join(out, 'model', 'quantization.safetensors'));
    assert.equal(metadata.bits, '4');
    const path = 'model.layers.1.mlp.down_proj';
    const [codes, scales, zeros] = [tensors.get(`${path}.qweight`), tensors.get(`${path}.scales`), tensors.get(`${path}.qzeros`)];
    assert.equal(codes?.dtype, 'U8');
    const groupSize = (JSON.parse(metadata.group_sizes as string) as Record<string, number>)[path] as number;
    const [rows, cols] = codes?.shape as [number, number];
    const groups = (scales?.shape as number[])[1] as number;
    const w = model.weights.get(`${path}.weight`)?.data as Float32Array;
    for (let i = 0; i < rows * cols; i++) {
      const g = Math.floor(i / cols) * groups + Math.floor((i % cols) / groupSize);
      assert.equal(w[i], Math.fround((scales?.data[g] as number) * ((codes?.data[i] as number) - (zeros?.data[g] as number))), `${path}[${i}]`);
    }
    const values = reporter.metricsSent.at(-1)?.values ?? {};
    assert.ok((values.perplexityAfter as number) < (values.perplexityBefore as number), `quantized ${values.perplexityBefore} → ${values.perplexityAfter}`);
    assert.ok(Number.isFinite(values.perplexityPruned));
    assert.deepEqual(reporter.stages, ['Pruning', 'Evaluating', 'Quantizing', 'Evaluating', 'Training', 'Merging', 'Evaluating', 'Succeeded']);
  });

  it('spallm writes the sketch (tables and codes) as its adapter and the model it decodes to, and reports the dense, sketched and tuned perplexities', async () => {
    const reporter = await run(spec({ method: 'spallm', sparsity: undefined, spallm: { bits: 2, groupsPerRow: 4 } }));
    const out = join(root, 'out', 'run');
    const model = await loadModel(join(out, 'model'));
    const { metadata, tensors } = await readSafetensors(join(out, 'adapter', 'sketch.safetensors'));
    assert.deepEqual([metadata.method, metadata.bits, metadata.groups_per_row], ['spallm', '2', '4']);
    const path = 'model.layers.1.mlp.down_proj';
    const [lut, codes] = [tensors.get(`${path}.lut`), tensors.get(`${path}.codes`)];
    assert.equal(codes?.dtype, 'U8');
    assert.deepEqual(lut?.shape, [64, 4, 4]);
    const groupSize = (JSON.parse(metadata.group_sizes as string) as Record<string, number>)[path] as number;
    const [rows, cols] = codes?.shape as [number, number];
    const w = model.weights.get(`${path}.weight`)?.data as Float32Array;
    for (let i = 0; i < rows * cols; i++) {
      const g = Math.min(3, Math.floor((i % cols) / groupSize));
      assert.equal(w[i], lut?.data[(Math.floor(i / cols) * 4 + g) * 4 + (codes?.data[i] as number)], `${path}[${i}]`);
    }
    const values = reporter.metricsSent.at(-1)?.values ?? {};
    assert.ok((values.perplexityAfter as number) < (values.perplexityBefore as number), `sketch ${values.perplexityBefore} → tuned ${values.perplexityAfter}`);
    assert.ok(Number.isFinite(values.perplexityDense));
    // Rows per block: q 64, k 32, v 32, o 64, gate 176, up 176, down 64; 4 groups of 2^2 values each.
    assert.equal(values.trainableParameters, 2 * (64 + 32 + 32 + 64 + 176 + 176 + 64) * 4 * 4);
    assert.deepEqual(reporter.metricsSent.at(-1)?.layers.map((l) => l.rank), [0, 0]);
    assert.deepEqual(reporter.stages, ['Evaluating', 'Sketching', 'Evaluating', 'Training', 'Evaluating', 'Succeeded']);
  });

  it('refuses spallm settings on another method and groups per row beyond the schema, naming the field', async () => {
    await failure({ ...spec(), spallm: { bits: 4, groupsPerRow: 4 } }, 'SpecInvalid', /spec\.spallm .* applies only to method spallm, not sparsepeft/);
    await failure({ ...spec(), method: 'spallm', sparsity: undefined, spallm: { bits: 4, groupsPerRow: 65 } }, 'SpecInvalid', /spec\.spallm\.groupsPerRow: Expected integer to be less or equal to 64/);
  });

  it('names the field of a spec that does not fit the SparseFineTune schema', async () => {
    await failure({ ...spec(), training: { ...spec().training, steps: 0 } }, 'SpecInvalid', /spec file spec\.json: spec\.training\.steps: Expected integer to be greater or equal to 1/);
    await failure({ ...spec(), sparsity: undefined }, 'SpecInvalid', /method sparsepeft needs spec\.sparsity/);
    await failure({ ...spec(), training: { ...spec().training, batchSize: 3 } }, 'SpecInvalid', /batchSize 3 must be a multiple of spec\.training\.gradientAccumulation 2/);
    // d = 64 and ffn 176 do not divide by 3: caught before any pruning, as a bad spec rather than a crash to retry.
    await failure({ ...spec(), sparsity: { ...spec().sparsity, pattern: '1:3', targetPercent: 66 } }, 'SpecInvalid', /spec\.sparsity\.pattern 1:3 cannot tile q_proj, which has 64 inputs/);
  });

  it('refuses what sparsepeft does not do, naming the field: structured pruning is not built, rounds and per-layer rates and ranks are losa\'s', async () => {
    await failure({ ...spec(), sparsity: { ...spec().sparsity, pattern: 'structured' } }, 'NotImplemented', /spec\.sparsity\.pattern structured/);
    await failure({ ...spec(), sparsity: { ...spec().sparsity, schedule: { kind: 'cubic', steps: 5 } } }, 'SpecInvalid', /spec\.sparsity\.schedule cubic with 5 steps \(progressive pruning\) is method losa's/);
    await failure({ ...spec(), sparsity: { ...spec().sparsity, layerwise: 'rmi' } }, 'SpecInvalid', /spec\.sparsity\.layerwise rmi .* is method losa's/);
    await failure({ ...spec(), adapter: { ...spec().adapter, maxRank: 8, rankAllocation: 'reconstruction-error' } }, 'SpecInvalid', /spec\.adapter\.rankAllocation reconstruction-error \(per-layer ranks\) is method losa's/);
  });

  const losaSpec = (over: Partial<SparseFineTuneSpec> = {}): SparseFineTuneSpec => ({
    ...spec(), method: 'losa',
    sparsity: { targetPercent: 50, pattern: 'unstructured', pruner: 'wanda', layerwise: 'rmi', schedule: { kind: 'cubic', steps: 3 } },
    adapter: { rank: 4, maxRank: 8, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'], rankAllocation: 'reconstruction-error' },
    training: { ...spec().training, steps: 12 },
    ...over,
  });

  it('losa: prunes and trains in rounds, writes a merged model exactly as sparse as asked and an adapter with each block\'s rank, and reports them', async () => {
    const reporter = await run(losaSpec());
    const out = join(root, 'out', 'run');
    assert.deepEqual((await fsp.readdir(out)).sort(), ['adapter', 'model'], 'no .pending or .checkpoints folder is left behind');
    const model = await loadModel(join(out, 'model'));
    assert.equal(modelSparsity(model.config, model.weights).percent, 50);
    assert.deepEqual(reporter.stages, ['Evaluating', 'Pruning', 'Training', 'Pruning', 'Training', 'Pruning', 'Training', 'Merging', 'Evaluating', 'Succeeded']);
    const last = reporter.metricsSent.at(-1) as { values: Record<string, number>; layers: LayerMetric[] };
    assert.equal(last.values.achievedSparsityPercent, 50);
    assert.ok(Number.isFinite(last.values.perplexityAfter) && Number.isFinite(last.values.perplexityBefore));
    // The mean rank starts at 4 and grows by one per round: the last of 3 trains at 6, over 2 blocks.
    assert.equal(last.layers.reduce((s, l) => s + l.rank, 0), 2 * 6);
    assert.ok(last.layers.every((l) => l.sparsityPercent === 50 && l.reconstructionError > 0), JSON.stringify(last.layers));
    const adapter = await loadAdapter(join(out, 'adapter'), model.config);
    for (const m of adapter.adapter.modules.values()) {
      assert.equal(m.rank, last.layers[Number(/layers\.(\d+)\./.exec(m.name)?.[1])]?.rank, m.name);
      assert.equal(m.scaling, 2, `${m.name}: alpha/rank stays 8/4 whatever the block's rank`);
    }
  });

  it('losa: refuses a maxRank the growing mean rank would pass, fewer steps than rounds, and RMI on one calibration sequence', async () => {
    await failure(losaSpec({ adapter: { ...losaSpec().adapter, maxRank: 5 } }), 'SpecInvalid', /spec\.adapter\.maxRank 5 is below the mean rank losa reaches in its last round: rank 4 grows by one in each of 3 rounds to 6/);
    await failure(losaSpec({ training: { ...losaSpec().training, steps: 2 } }), 'SpecInvalid', /spec\.training\.steps 2 must be at least spec\.sparsity\.schedule\.steps 3/);
    await failure(losaSpec({ calibration: { samples: 1, sequenceLength: 64 } }), 'SpecInvalid', /spec\.calibration\.samples must be at least 2, got 1/);
  });

  it('names the base model folder it cannot load', async () => {
    const empty = join(root, 'empty-model');
    await fsp.mkdir(empty, { recursive: true });
    await assert.rejects(
      runTrain({ spec: { spec: { ...spec(), baseModel: { uri: `file://${empty}` } } }, specFile: 'spec.json', reporter: undefined, log: pino({ level: 'silent' }) }),
      (err: unknown) => err instanceof WorkloadError && err.reason === 'ModelUnreadable' && err.message.includes(`cannot load the base model file://${empty}`) && err.message.includes('config.json'),
    );
  });

  it('names the dataset file and line it cannot read', async () => {
    await fsp.writeFile(join(root, 'data', 'bad.jsonl'), '{"text": "fine"}\n{"text": 3}\n');
    await assert.rejects(
      runTrain({ spec: { spec: { ...spec(), dataset: { ...spec().dataset, uri: `file://${join(root, 'data', 'bad.jsonl')}` } }, locations: { 'file:///models/tiny': tiny.dir } }, specFile: 'spec.json', reporter: undefined, log: pino({ level: 'silent' }) }),
      (err: unknown) => err instanceof WorkloadError && err.reason === 'DatasetUnreadable' && /spec\.dataset\.uri .*bad\.jsonl:2: field "text" must be a string/.test(err.message),
    );
  });

  const loramSpec = (loram: NonNullable<SparseFineTuneSpec['loram']>, over: Partial<SparseFineTuneSpec> = {}): SparseFineTuneSpec => ({ ...spec(), method: 'loram', sparsity: undefined, loram, output: { uri: 'file:///out/run', mergedModel: true, adapter: true }, ...over });

  it('loram: trains on a pruned model, aligned first, and writes an adapter and a merged model of the original model\'s shapes, reporting each stage\'s perplexity', async () => {
    const general = join(root, 'data', 'general.txt');
    await fsp.writeFile(general, loadBrown().slice(0, 20).map((d) => d.text).join('\n\n'));
    const reporter = await run(loramSpec({ pruning: 'structured', prunePercent: 50, keepFirstLayers: 0, keepLastLayers: 1, align: { uri: `file://${general}`, steps: 6, learningRate: '1e-4' } }));
    const out = join(root, 'out', 'run');
    assert.deepEqual((await fsp.readdir(out)).sort(), ['adapter', 'model'], 'no .pending or .checkpoints folder is left behind');
    // The outputs are for the original model: its config, every module at its full shape.
    const model = await loadModel(join(out, 'model'));
    assert.deepEqual({ ...model.config, extra: {} }, { ...tiny.model.config, torchDtype: 'float32', extra: {} });
    const adapter = await loadAdapter(join(out, 'adapter'), tiny.model.config);
    assert.equal(adapter.adapter.modules.size, 2 * 3);
    assert.deepEqual(adapter.adapter.modules.get('model.layers.0.mlp.down_proj')?.A.shape, [4, 176]);

    // W₀ first; then the pruned model, its LoRA merged into it, and the original with the recovered adapter.
    assert.deepEqual(reporter.stages, ['Evaluating', 'Pruning', 'Aligning', 'Evaluating', 'Training', 'Merging', 'Evaluating', 'Merging', 'Evaluating', 'Succeeded']);
    const values = reporter.metricsSent.at(-1)?.values ?? {};
    for (const k of ['perplexityBefore', 'perplexityAfter', 'prunedParameters', 'parameterReductionRatio', 'perplexityPruned', 'perplexityAligned', 'perplexityPrunedLora', 'loss']) assert.ok(Number.isFinite(values[k]), `${k}: ${values[k]}`);
    // Block 0 loses 88 of 176 neurons and one of two KV heads: 3·64·88 + 96·64 weights.
    assert.equal(values.prunedParameters, numParameters(tiny.model.config) - (3 * 64 * 88 + 96 * 64));
    assert.equal(values.achievedSparsityPercent, 0);
    const state = emptyState(objectRef('loram', { kind: 'SparseFineTune' }));
    foldReport(state, { seq: 1, object: state.ref, pod: 'p', unixMs: 1, body: 'metrics', metrics: reporter.metricsSent.at(-1) } as Parameters<typeof foldReport>[1], 'p', 1);
    const status = tesseraStatusMapper(state);
    assert.ok(Value.Check(SparseFineTuneStatus, status), JSON.stringify([...Value.Errors(SparseFineTuneStatus, status)].map((e) => `${e.path}: ${e.message}`)));
  });

  it('loram: refuses settings that leave nothing to prune, naming the fields, before any compute', async () => {
    await failure(loramSpec({ pruning: 'structured', prunePercent: 50, keepFirstLayers: 1, keepLastLayers: 1 }), 'SpecInvalid', /spec\.loram\.keepFirstLayers 1 and keepLastLayers 1 keep all 2 blocks of the model whole/);
    await failure(loramSpec({ pruning: 'random', prunePercent: 50, keepFirstLayers: 0, keepLastLayers: 0, align: { uri: 'file:///data/none.txt', steps: 1, learningRate: '5e-5' } }), 'DatasetUnreadable', /spec\.loram\.align\.uri file:\/\/\/data\/none\.txt/);
  });
});
