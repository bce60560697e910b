// tessera-worker train: the SparseFineTune Job. Reads the spec and the files it names, runs the
// method (lora, sparsepeft, qa-sparsepeft, losa, shears, loram or spallm; a method the CRD adds
// before its engine exists fails with NotImplemented, naming it), and writes under spec.output.uri,
// each folder atomically (written aside, then renamed into place):
//   adapter/  adapter_config.json + adapter_model.safetensors (PEFT); spallm: sketch.safetensors,
//             the tuned lookup tables and the codes (it trains no adapter)
//   model/    the merged checkpoint: config.json, model.safetensors, the base's tokenizer files;
//             qa-sparsepeft also quantization.safetensors, the merged 4-bit codes, scales and zeros
//             (model.safetensors holds their dequantized float32 values)
// Progress (stages Pruning, Quantizing, Sketching, Evaluating, Training, Merging), metrics (loss, perplexity before and
// after, achieved sparsity, per-block sparsity, rank and reconstruction error; shears also the
// perplexity of each extracted sub-adapter; qa-sparsepeft the pruned base's before quantization; spallm the
// dense base's and the trained table count), every file's
// sha256 and the output URIs go to the status hub. A restarted pod resumes from the newest
// training checkpoint under <output>/.checkpoints/<spec hash>, removed once the outputs are written.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SPARSE_METHODS, type SparseFineTuneSpec } from '../../operator/api/v1alpha1/index.js';
import type { LayerMetric } from '../../operator/status/wire.js';
import { writeHfCheckpoint } from '../formats/hf-checkpoint.js';
import { saveLoraAdapter } from '../formats/peft.js';
import { writeSafetensors } from '../formats/safetensors.js';
import { makeTensor, type Tensor } from '../formats/tensor.js';
import { SessionCache } from '../onnx/session.js';
import { FINETUNE_METHODS, type FineTuneMethod, fineTune, type FineTuneOptions, type FineTuneResult } from '../train/sparse/finetune.js';
import { fineTuneLoram, type LoramResult, loramMetrics } from '../train/sparse/loram.js';
import { DEFAULT_QUANTIZATION, QUANTIZATION_FILE, quantizationTensors, type QaSparsePeftResult } from '../train/sparse/qa-sparsepeft.js';
import { elasticMetrics, type ShearsResult, type SubAdapter } from '../train/sparse/shears.js';
import { DEFAULT_SPALLM, SKETCH_FILE, sketchFile, spallmFineTune, type SpallmRunResult } from '../train/sparse/spallm.js';
import { loadLoramInputs } from './train-loram.js';
import { loadTrainInputs, parseTrainSpec, type TrainInputs, type TrainSpecFile } from './train-inputs.js';
import { WorkloadError, type WorkloadContext } from './workload.js';

/** Completion.outputs keys: the SparseFineTune's status.outputs fields the operator reads. */
export const TRAIN_OUTPUT_KEYS = { model: 'modelUri', adapter: 'adapterUri' } as const;
export const ADAPTER_FOLDER = 'adapter';
export const MODEL_FOLDER = 'model';
/** The methods train runs; the CRD's others fail NotImplemented. */
const TRAIN_METHODS: readonly string[] = [...FINETUNE_METHODS, 'loram', 'spallm'];

export async function runTrain(ctx: WorkloadContext<TrainSpecFile>): Promise<void> {
  const method = ctx.spec?.spec?.method;
  if (typeof method === 'string' && (SPARSE_METHODS as readonly string[]).includes(method) && !TRAIN_METHODS.includes(method)) {
    throw new WorkloadError('NotImplemented', `method ${method} is not implemented yet: tessera-worker train runs ${TRAIN_METHODS.join(', ')}`);
  }
  const spec = parseTrainSpec(ctx.spec, ctx.specFile);
  const report = ctx.reporter;
  const log = ctx.log.child({ mode: 'train', method: spec.method });
  const cache = new SessionCache({ spinning: false });
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGTERM', stop);
  try {
    const inputs = await loadTrainInputs(spec, ctx.specFile, ctx.spec.locations ?? {}, log);
    const outputRoot = inputs.outputDir;
    await mkdir(outputRoot, { recursive: true });
    const runKey = createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16);
    const checkpointRoot = join(outputRoot, '.checkpoints');
    const checkpointDir = join(checkpointRoot, runKey);

    const started = Date.now();
    const layers = new Map<number, LayerMetric>();
    const values: Record<string, number> = {};
    const sendMetrics = (): void => report?.metrics({ ...values }, [...layers.values()].sort((a, b) => a.index - b.index));
    let stageStarted = { stage: '', at: Date.now() };
    const progress = (stage: string, step: number, totalSteps: number, etaSeconds?: number): void => {
      if (stageStarted.stage !== stage) stageStarted = { stage, at: Date.now() };
      const percent = totalSteps > 0 ? Math.floor((100 * step) / totalSteps) : 0;
      const elapsed = (Date.now() - stageStarted.at) / 1000;
      const eta = etaSeconds ?? (step > 0 ? (elapsed * (totalSteps - step)) / step : 0);
      report?.progress({ stage, step, totalSteps, percent, etaSeconds: Math.round(eta) });
    };

    const { training } = spec;
    const logEvery = Math.max(1, Math.floor(training.steps / 10));
    const loram = spec.method === 'loram' ? await loadLoramInputs(spec, inputs, ctx.specFile, ctx.spec.locations ?? {}, log) : undefined;
    const run: (o: FineTuneOptions) => Promise<FineTuneResult | LoramResult | ShearsResult | QaSparsePeftResult | SpallmRunResult> = loram
      ? (o) => fineTuneLoram({ ...o, ...(loram.calibration ? { calibration: loram.calibration } : {}), loram: loram.settings, onAlignProgress: (p) => progress('Aligning', p.step, p.totalSteps, p.etaSeconds) })
      : spec.method === 'spallm'
        ? (o) => spallmFineTune({ ...o, spallm: spec.spallm ?? DEFAULT_SPALLM })
        : fineTune;
    const result = await run({
      method: spec.method as FineTuneMethod,
      config: inputs.model.config,
      weights: inputs.model.weights,
      train: inputs.train,
      eval: inputs.eval,
      ...(inputs.calibration ? { calibration: inputs.calibration } : {}),
      ...(inputs.sparsity ? { sparsity: inputs.sparsity } : {}),
      adapter: { rank: spec.adapter.rank, alpha: spec.adapter.alpha, targetModules: inputs.targetModules, ...(spec.adapter.maxRank ? { maxRank: spec.adapter.maxRank } : {}), rankAllocation: spec.adapter.rankAllocation },
      ...(spec.method === 'qa-sparsepeft' ? { quantization: spec.quantization ?? DEFAULT_QUANTIZATION } : {}),
      ...(spec.elastic ? { elastic: { rankChoices: spec.elastic.rankChoices, subAdapter: spec.elastic.subAdapter as SubAdapter } } : {}),
      training: {
        steps: training.steps, batchSize: training.batchSize, microBatches: training.gradientAccumulation, sequenceLength: inputs.sequenceLength,
        learningRate: Number(training.learningRate), schedule: training.scheduler, warmupSteps: Math.round((training.steps * training.warmupPercent) / 100),
        minLrRatio: 0, weightDecay: Number(training.weightDecay), maxGradNorm: Number(training.maxGradNorm), seed: training.seed,
        // 0 means "only at the end" in the CRD: the loop then also checkpoints when stopped by SIGTERM.
        checkpointEvery: training.checkpointEvery > 0 ? training.checkpointEvery : training.steps, checkpointDir,
      },
      seed: training.seed,
      baseModelName: spec.baseModel.uri,
      cache, log, signal: controller.signal,
      onStage: (stage, step, total) => {
        if (stage !== 'Training') progress(stage, step, total);
      },
      onPruned: (layer) => {
        layers.set(layer.index, { index: layer.index, sparsityPercent: layer.sparsityPercent, rank: layer.rank ?? spec.adapter.rank, reconstructionError: layer.reconstructionError });
        sendMetrics();
      },
      onTrainProgress: (p) => {
        progress('Training', p.step, p.totalSteps, p.etaSeconds);
        values.loss = p.loss;
        if (p.step % logEvery === 0 || p.step === p.totalSteps) {
          sendMetrics();
          log.info({ step: p.step, totalSteps: p.totalSteps, loss: round(p.loss), lr: p.lr, tokensPerSecond: Math.round(p.tokensPerSecond) }, 'training');
        }
      },
    });
    if (result.interrupted) {
      throw new WorkloadError('Interrupted', `stopped by SIGTERM after step ${result.losses.length} of ${training.steps}; a restarted pod resumes from ${checkpointDir}`, true);
    }
    values.perplexityBefore = result.perplexityBefore;
    values.perplexityAfter = result.perplexityAfter;
    values.achievedSparsityPercent = result.sparsity.percent;
    if ('loram' in result) Object.assign(values, loramMetrics(result.loram));
    if ('elastic' in result) Object.assign(values, elasticMetrics(result.elastic.configurations));
    if ('quantization' in result) values.perplexityPruned = result.quantization.perplexityPruned;
    if ('spallm' in result) Object.assign(values, { perplexityDense: result.spallm.perplexityDense, trainableParameters: result.spallm.trainableParameters });
    if (result.losses.length > 0) values.loss = result.losses.at(-1) as number;
    for (const l of result.sparsity.layers) {
      // spallm trains no adapter (rank 0); its blocks' error is the sketch's.
      const block = 'spallm' in result ? result.spallm.layers[l.index] : result.pruning?.layers[l.index];
      const rank = 'spallm' in result ? 0 : (result.ranks?.[l.index] ?? spec.adapter.rank);
      layers.set(l.index, { index: l.index, sparsityPercent: l.sparsityPercent, rank, reconstructionError: block?.reconstructionError ?? 0 });
    }
    sendMetrics();
    log.info({ perplexityBefore: round(result.perplexityBefore), perplexityAfter: round(result.perplexityAfter), achievedSparsityPercent: round(result.sparsity.percent), seconds: Math.round((Date.now() - started) / 1000) }, 'fine-tuned');

    const written = await writeOutputs(result, inputs, spec, outputRoot);
    const uriOf = (folder: string): string => `${spec.output.uri.replace(/\/+$/, '')}/${folder}`;
    const artifacts = written.map((f) => ({ name: f.name, uri: uriOf(f.name), sha256: f.sha256, sizeBytes: f.sizeBytes }));
    for (const a of artifacts) report?.artifact(a);
    const outputs: Record<string, string> = {};
    if (spec.output.mergedModel) outputs[TRAIN_OUTPUT_KEYS.model] = uriOf(MODEL_FOLDER);
    if (spec.output.adapter) outputs[TRAIN_OUTPUT_KEYS.adapter] = uriOf(ADAPTER_FOLDER);
    report?.completion({ outputs, artifacts });
    await rm(checkpointDir, { recursive: true, force: true });
    if ((await readdir(checkpointRoot).catch(() => [])).length === 0) await rm(checkpointRoot, { recursive: true, force: true });
    log.info({ outputs, files: artifacts.length }, 'outputs written');
    report?.progress({ step: 1, totalSteps: 1, percent: 100, etaSeconds: 0, stage: 'Succeeded' });
  } finally {
    process.off('SIGTERM', stop);
    await cache.dispose();
  }
}

interface WrittenFile {
  /** Relative to the output folder, e.g. model/model.safetensors. */
  name: string;
  sha256: string;
  sizeBytes: number;
}

/** Writes the adapter and merged model beside the output folders, hashes them, then renames them in. */
async function writeOutputs(result: FineTuneResult | QaSparsePeftResult | SpallmRunResult, inputs: TrainInputs, spec: SparseFineTuneSpec, outputRoot: string): Promise<WrittenFile[]> {
  const pending = join(outputRoot, `.pending-${randomBytes(6).toString('hex')}`);
  const folders: string[] = [];
  try {
    if (spec.output.adapter) {
      // SpaLLM's trained parameters are the sketch's tables (with their codes), not a LoRA adapter.
      if ('spallm' in result) {
        const f = sketchFile(result.spallm);
        await mkdir(join(pending, ADAPTER_FOLDER), { recursive: true });
        await writeSafetensors(join(pending, ADAPTER_FOLDER, SKETCH_FILE), f.tensors, f.metadata);
      } else await saveLoraAdapter(join(pending, ADAPTER_FOLDER), result.adapter);
      folders.push(ADAPTER_FOLDER);
    }
    if (spec.output.mergedModel) {
      const tensors = new Map<string, Tensor>([...result.merged].map(([name, w]) => [name, makeTensor('F32', [...w.shape], w.data)]));
      await writeHfCheckpoint(join(pending, MODEL_FOLDER), {
        // The weights are written as float32, whatever the base was stored in.
        config: { ...inputs.model.config, torchDtype: 'float32' },
        tensors,
        ...(inputs.model.generationConfig ? { generationConfig: inputs.model.generationConfig } : {}),
        tokenizerDir: inputs.modelDir,
      });
      if ('quantization' in result) {
        const q = quantizationTensors(result.quantization.linears, result.quantization.settings);
        await writeSafetensors(join(pending, MODEL_FOLDER, QUANTIZATION_FILE), q.tensors, q.metadata);
      }
      folders.push(MODEL_FOLDER);
    }
    const written: WrittenFile[] = [];
    for (const folder of folders) {
      for (const file of (await readdir(join(pending, folder))).sort()) {
        const path = join(pending, folder, file);
        written.push({ name: `${folder}/${file}`, sha256: await sha256File(path), sizeBytes: (await stat(path)).size });
      }
    }
    for (const folder of folders) await replaceFolder(join(outputRoot, folder), join(pending, folder));
    return written;
  } catch (err) {
    throw new WorkloadError('OutputWriteFailed', `cannot write the outputs under ${outputRoot}: ${err instanceof Error ? err.message : String(err)}`, true, { cause: err });
  } finally {
    await rm(pending, { recursive: true, force: true });
  }
}

/** Moves `from` to `to`; an existing `to` (an earlier run's) is moved aside first and removed after. */
async function replaceFolder(to: string, from: string): Promise<void> {
  const aside = `${to}.old-${randomBytes(4).toString('hex')}`;
  const existed = await stat(to).then(() => true, () => false);
  if (existed) await rename(to, aside);
  await rename(from, to);
  if (existed) await rm(aside, { recursive: true, force: true });
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function round(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}
