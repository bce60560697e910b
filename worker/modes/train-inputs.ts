// What tessera-worker train reads before any compute: the spec (defaulted and checked against the
// SparseFineTune schema, so a hand-written spec file gets the same defaults and the same field
// names in its errors as an applied object), the base model, the datasets as token streams, the
// calibration windows. Every failure is a WorkloadError whose message names the file or field.
import { Value } from '@sinclair/typebox/value';
import type { Logger } from 'pino';
import { SparseFineTuneSpec } from '../../operator/api/v1alpha1/index.js';
import { readDataset, tokenizeDataset } from '../data/datasets.js';
import { LINEAR_MODULES, type LinearModule, linearShape } from '../formats/hf-checkpoint.js';
import { Rng } from '../train/rng.js';
import { parsePattern, type SparsityPattern } from '../train/sparse/pattern.js';
import { type PrunerKind } from '../train/sparse/pruners.js';
import { type ScheduleKind } from '../train/sparse/sparsity-schedule.js';
import { type LoadedModel, loadModel } from './load-model.js';
import { WorkloadError } from './workload.js';

export interface TrainSpecFile {
  spec: SparseFineTuneSpec;
  /** URI → path in the pod; a local run may leave it out and use file:// URIs. */
  locations?: Record<string, string>;
}

/** Share of the training tokens held out for perplexity when spec.dataset.evalUri is absent. */
export const EVAL_HOLDOUT = 0.1;

const invalid = (specFile: string, message: string): WorkloadError => new WorkloadError('SpecInvalid', `spec file ${specFile}: ${message}`);

/** The spec with the CRD's defaults applied, checked against its schema and the rules train relies on. */
export function parseTrainSpec(file: TrainSpecFile, specFile: string): SparseFineTuneSpec {
  if (typeof file !== 'object' || file === null || typeof file.spec !== 'object' || file.spec === null) throw invalid(specFile, 'has no spec object');
  const spec = Value.Default(SparseFineTuneSpec, structuredClone(file.spec)) as SparseFineTuneSpec;
  const errors = [...Value.Errors(SparseFineTuneSpec, spec)].slice(0, 4);
  if (errors.length > 0) throw invalid(specFile, errors.map((e) => `spec${e.path.replace(/\//g, '.')}: ${e.message}${e.value === undefined ? '' : ` (got ${JSON.stringify(e.value)?.slice(0, 60)})`}`).join('; '));
  const t = spec.training;
  if (t.batchSize % t.gradientAccumulation !== 0) throw invalid(specFile, `spec.training.batchSize ${t.batchSize} must be a multiple of spec.training.gradientAccumulation ${t.gradientAccumulation}`);
  for (const k of ['learningRate', 'maxGradNorm', 'weightDecay'] as const) {
    if (!Number.isFinite(Number(t[k]))) throw invalid(specFile, `spec.training.${k} ${JSON.stringify(t[k])} is not a decimal number`);
  }
  if (!(Number(t.learningRate) > 0 && Number(t.learningRate) < 1)) throw invalid(specFile, `spec.training.learningRate must be a decimal in (0, 1), e.g. "2e-4", not ${t.learningRate}`);
  const losa = spec.method === 'losa';
  if (spec.adapter.rankAllocation !== 'uniform' && !losa) throw invalid(specFile, `spec.adapter.rankAllocation ${spec.adapter.rankAllocation} (per-layer ranks) is method losa's; method ${spec.method} trains rank ${spec.adapter.rank} in every layer (rankAllocation: uniform)`);
  if (spec.method === 'sparsepeft' || spec.method === 'qa-sparsepeft' || spec.method === 'shears' || losa) {
    const s = spec.sparsity;
    if (!s) throw invalid(specFile, `method ${spec.method} needs spec.sparsity (targetPercent, pattern, pruner)`);
    if (!losa && s.layerwise !== 'uniform') throw invalid(specFile, `spec.sparsity.layerwise ${s.layerwise} (per-layer sparsity by representation mutual information) is method losa's; ${spec.method} prunes every layer to targetPercent (layerwise: uniform)`);
    if (!losa && (s.schedule.kind !== 'oneshot' || s.schedule.steps !== 1)) throw invalid(specFile, `spec.sparsity.schedule ${s.schedule.kind} with ${s.schedule.steps} steps (progressive pruning) is method losa's; ${spec.method} prunes once (schedule: {kind: oneshot, steps: 1})`);
    if (losa) checkLosa(spec, specFile);
  } else if (spec.sparsity) throw invalid(specFile, `spec.sparsity applies only to pruning methods; method ${spec.method} does not prune`);
  if (spec.quantization && spec.method !== 'qa-sparsepeft') throw invalid(specFile, `spec.quantization (the GPTQ grid of the base) applies only to method qa-sparsepeft, not ${spec.method}`);
  if (spec.spallm && spec.method !== 'spallm') throw invalid(specFile, `spec.spallm (the sketch's bits and groups per row) applies only to method spallm, not ${spec.method}`);
  if (spec.method === 'shears') checkElastic(spec, specFile);
  else if (spec.elastic) throw invalid(specFile, `spec.elastic (elastic adapters) applies only to method shears, not ${spec.method}`);
  return spec;
}

/** What Shears needs of spec.elastic: choices the super-adapter (rank adapter.rank) can be cut to. */
function checkElastic(spec: SparseFineTuneSpec, specFile: string): void {
  const e = spec.elastic;
  if (!e) throw invalid(specFile, `method shears needs spec.elastic.rankChoices, the ranks the super-adapter of rank spec.adapter.rank ${spec.adapter.rank} is trained to be cut to (e.g. [${spec.adapter.rank}, ${Math.max(1, Math.round((spec.adapter.rank * 3) / 4))}, ${Math.max(1, Math.round(spec.adapter.rank / 2))}])`);
  const { rankChoices } = e;
  const above = rankChoices.filter((r) => r > spec.adapter.rank);
  if (above.length > 0) throw invalid(specFile, `spec.elastic.rankChoices [${rankChoices.join(', ')}]: ${above.join(', ')} above spec.adapter.rank ${spec.adapter.rank}, the rank of the super-adapter; every choice must be at most it`);
  if (new Set(rankChoices).size !== rankChoices.length) throw invalid(specFile, `spec.elastic.rankChoices [${rankChoices.join(', ')}] repeats a rank: the choices are a set`);
}

/** What LoSA's rounds need of the spec, checked before any file is read. */
function checkLosa(spec: SparseFineTuneSpec, specFile: string): void {
  const s = spec.sparsity as NonNullable<SparseFineTuneSpec['sparsity']>;
  const rounds = s.schedule.steps;
  const { rank, maxRank } = spec.adapter;
  // The mean rank grows by one per round (r̄ += 1): the last round trains at rank + rounds − 1.
  if (maxRank !== undefined && rank + rounds - 1 > maxRank) {
    throw invalid(specFile, `spec.adapter.maxRank ${maxRank} is below the mean rank losa reaches in its last round: rank ${rank} grows by one in each of ${rounds} rounds to ${rank + rounds - 1} (raise maxRank or lower rank or spec.sparsity.schedule.steps)`);
  }
  if (spec.training.steps < rounds) throw invalid(specFile, `spec.training.steps ${spec.training.steps} must be at least spec.sparsity.schedule.steps ${rounds}: losa trains in every round`);
  if (s.layerwise === 'rmi' && spec.calibration && spec.calibration.samples < 2) {
    throw invalid(specFile, `spec.sparsity.layerwise rmi compares calibration sequences with each other: spec.calibration.samples must be at least 2, got ${spec.calibration.samples}`);
  }
}

export interface TrainInputs {
  modelDir: string;
  model: LoadedModel;
  outputDir: string;
  train: number[];
  eval: number[];
  /** sparsepeft, qa-sparsepeft, shears, losa, spallm: calibration windows for the pruner or the sketch (and losa's layer importance), all of one length. */
  calibration?: number[][];
  sparsity?: { pruner: PrunerKind; pattern: SparsityPattern; schedule: { kind: ScheduleKind; steps: number }; layerwise: 'rmi' | 'uniform' };
  targetModules: LinearModule[];
  /** Training and evaluation window: spec.training.sequenceLength, at most the model's context. */
  sequenceLength: number;
}

/** URI → local path: the operator's location map, or the path of a file:// URI in a local run. */
export function locate(uri: string, locations: Record<string, string>, specFile: string, field: string): string {
  const path = locations[uri] ?? /^file:\/\/(\/.*)$/.exec(uri)?.[1];
  if (path === undefined) throw invalid(specFile, `${field} ${uri} has no location: the operator resolves pvc:// URIs, a local run needs file:///path`);
  if (/^https?:\/\//.test(path)) throw new WorkloadError('NotImplemented', `${field}: fetching ${uri} over http(s) is not implemented yet; use pvc:// or file://`);
  return path;
}

export async function loadTrainInputs(spec: SparseFineTuneSpec, specFile: string, locations: Record<string, string>, log: Logger): Promise<TrainInputs> {
  const where = (uri: string, field: string): string => locate(uri, locations, specFile, field);
  const modelDir = where(spec.baseModel.uri, 'spec.baseModel.uri');
  const outputDir = where(spec.output.uri, 'spec.output.uri');
  const prunes = spec.method === 'sparsepeft' || spec.method === 'qa-sparsepeft' || spec.method === 'shears' || spec.method === 'losa';
  const sparsity = prunes && spec.sparsity ? { pruner: spec.sparsity.pruner, pattern: patternOf(spec, specFile), schedule: spec.sparsity.schedule, layerwise: spec.sparsity.layerwise } : undefined;
  const targetModules = spec.adapter.targetModules.map((m) => {
    if (!(LINEAR_MODULES as readonly string[]).includes(m)) throw invalid(specFile, `spec.adapter.targetModules: ${JSON.stringify(m)} is not one of ${LINEAR_MODULES.join(', ')}`);
    return m as LinearModule;
  });

  let model: LoadedModel;
  try {
    model = await loadModel(modelDir);
  } catch (err) {
    throw new WorkloadError('ModelUnreadable', `cannot load the base model ${spec.baseModel.uri} (${modelDir}): ${(err as Error).message}`, false, { cause: err });
  }
  const tokenizer = model.tokenizer;
  if (!tokenizer) throw new WorkloadError('ModelUnreadable', `the base model ${spec.baseModel.uri} (${modelDir}) has no tokenizer.json, which text datasets need`);
  const c = model.config;
  for (const m of targetModules) {
    if (spec.adapter.rank > Math.min(...linearShape(c, m))) log.warn({ module: m, rank: spec.adapter.rank }, 'the adapter rank exceeds the module\'s smaller dimension: the update cannot use all of it');
  }
  const pattern = sparsity?.pattern;
  if (pattern?.kind === 'n:m') {
    // Checked here, before any compute, so a pattern that cannot tile the model fails as a bad spec, not a retried crash.
    for (const m of LINEAR_MODULES) {
      const cols = linearShape(c, m)[1];
      if (cols % pattern.m !== 0) throw invalid(specFile, `spec.sparsity.pattern ${pattern.n}:${pattern.m} cannot tile ${m}, which has ${cols} inputs: the input count of every linear layer must be a multiple of ${pattern.m}`);
    }
    if (spec.method === 'losa' && sparsity?.schedule.kind !== 'oneshot') log.warn({ pattern: `${pattern.n}:${pattern.m}`, schedule: sparsity?.schedule.kind }, 'an N:M pattern fixes the sparsity of every round: losa prunes to it in each round, and the schedule only sets how many');
  }
  let sequenceLength = spec.training.sequenceLength;
  if (sequenceLength > c.maxPositionEmbeddings) {
    log.warn({ sequenceLength, maxPositionEmbeddings: c.maxPositionEmbeddings }, 'spec.training.sequenceLength exceeds the model\'s context: training on windows of max_position_embeddings tokens');
    sequenceLength = c.maxPositionEmbeddings;
  }

  const stream = async (uri: string, field: string): Promise<number[]> => {
    const file = where(uri, field);
    try {
      const ds = await readDataset(file, { format: spec.dataset.format, textField: spec.dataset.textField });
      return tokenizeDataset(ds, (text) => tokenizer.encode(text)).flat();
    } catch (err) {
      throw new WorkloadError('DatasetUnreadable', `${field} ${uri}: ${(err as Error).message}`, false, { cause: err });
    }
  };
  let train = await stream(spec.dataset.uri, 'spec.dataset.uri');
  let evalTokens: number[];
  if (spec.dataset.evalUri) evalTokens = await stream(spec.dataset.evalUri, 'spec.dataset.evalUri');
  else {
    // The tail: held-out text that follows the training text, as a document split would give.
    const cut = Math.floor(train.length * (1 - EVAL_HOLDOUT));
    evalTokens = train.slice(cut);
    train = train.slice(0, cut);
  }
  if (train.length < sequenceLength + 1) {
    throw new WorkloadError('DatasetTooSmall', `spec.dataset.uri ${spec.dataset.uri} gives ${train.length} training tokens${spec.dataset.evalUri ? '' : ` after holding out ${Math.round(EVAL_HOLDOUT * 100)}% for evaluation`}: windows of ${sequenceLength} tokens need at least ${sequenceLength + 1} (add data or lower spec.training.sequenceLength)`);
  }
  if (evalTokens.length < 2) throw new WorkloadError('DatasetTooSmall', `the evaluation data (${spec.dataset.evalUri ?? `the last ${Math.round(EVAL_HOLDOUT * 100)}% of ${spec.dataset.uri}`}) has ${evalTokens.length} tokens: perplexity needs at least 2`);

  let calibration: number[][] | undefined;
  if (sparsity || spec.method === 'spallm') {
    if (spec.spallm) {
      // Every row of every linear layer is split into groupsPerRow groups: the shortest row bounds it.
      const shortest = Math.min(c.hiddenSize, c.intermediateSize, c.numAttentionHeads * c.headDim);
      if (spec.spallm.groupsPerRow > shortest) throw invalid(specFile, `spec.spallm.groupsPerRow ${spec.spallm.groupsPerRow} is more than the ${shortest} columns of the model's shortest weight rows`);
    }
    const cal = spec.calibration ?? { samples: 128, sequenceLength: 512 };
    const source = cal.uri ? await stream(cal.uri, 'spec.calibration.uri') : train;
    const length = Math.min(cal.sequenceLength, c.maxPositionEmbeddings, source.length);
    if (length < 2) throw new WorkloadError('DatasetTooSmall', `the calibration data (${cal.uri ?? spec.dataset.uri}) has ${source.length} tokens: ${sparsity ? 'the pruner' : 'the sketch'} needs at least 2`);
    calibration = calibrationWindows(source, cal.samples, length, spec.training.seed);
    log.info({ samples: calibration.length, sequenceLength: length, from: cal.uri ?? spec.dataset.uri }, 'calibration windows');
  }
  log.info({ model: modelDir, trainTokens: train.length, evalTokens: evalTokens.length, sequenceLength }, 'inputs loaded');
  return { modelDir, model, outputDir, train, eval: evalTokens, ...(calibration ? { calibration } : {}), ...(sparsity ? { sparsity } : {}), targetModules, sequenceLength };
}

function patternOf(spec: SparseFineTuneSpec, specFile: string): SparsityPattern {
  const s = spec.sparsity;
  if (!s) throw invalid(specFile, `method ${spec.method} needs spec.sparsity`);
  try {
    return parsePattern(s.pattern, s.targetPercent);
  } catch (err) {
    const message = (err as Error).message;
    throw /not implemented/.test(message) ? new WorkloadError('NotImplemented', `spec.${message}`) : invalid(specFile, `spec.${message}`);
  }
}

/** `samples` windows of `length` tokens at seeded random offsets (Wanda and SparseGPT draw theirs from C4 the same way). */
export function calibrationWindows(tokens: readonly number[], samples: number, length: number, seed: number): number[][] {
  const rng = new Rng(seed);
  const starts = tokens.length - length + 1;
  return Array.from({ length: samples }, () => {
    const s = rng.int(starts);
    return tokens.slice(s, s + length);
  });
}
