// LoSA, dynamic low-rank sparse adaptation (Huang et al.; ALGORITHMS.md §2), from tokens to merged
// weights. Pruning and training interleave over T rounds:
//   Yd = the dense model's block outputs on the calibration set (once)
//   round t: merge the adapter into the sparse base, W = W_s + s(B_{:r}A_{:r})⊙M
//            prune W to mean S_t, layer rates by RMI within ±δ_t (losa-round.ts)
//            unmerge with the new selection M': W_s = W_pruned − s(B_{:r}A_{:r})⊙M'
//            ranks r_l from each block's error e_l at mean rank r̄_t = rank + t − 1
//            train the adapter on the t-th slice of the data, forward W_s x + s((B_{:r}A_{:r})⊙M') x
//   final:   W' = W_s + s(B_{:r}A_{:r})⊙M, as sparse as the last round left it, zero for zero.
// Unmerging with the new selection makes the trained adapter part of what the next round scores:
// a weight the adapter grew can survive, and one it shrank goes first.
//
// Defaults follow the reference code where the paper is silent: a fixed scaling s = alpha/rank
// whatever the active rank, every round's LR schedule starting afresh on its slice (a new
// Trainer per round there), equal slices and equal step counts per round. Differences from it
// are named where they are made (sparsity-schedule.ts, layer-rates.ts, rank-allocation.ts,
// dynamic-rank.ts). perplexityBefore is the dense base's: no pruned model precedes the training.
import { join } from 'node:path';
import { LINEAR_MODULES } from '../../formats/hf-checkpoint.js';
import { type LlamaConfig, linearPath, linearShape } from '../../model/llama/config.js';
import { maskFeeds } from '../../model/llama/feeds.js';
import { type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { evalPerplexity } from '../../modes/eval.js';
import { latestCheckpoint } from '../checkpoint.js';
import { train } from '../loop.js';
import { createLlamaTrainModel } from '../model-step.js';
import { Rng } from '../rng.js';
import { BlockRunner } from './calibration.js';
import { CenteredGram, type LayerImportance } from './cka.js';
import { DynamicRankAdapter, type ShrinkRule } from './dynamic-rank.js';
import { type FineTuneOptions, type FineTuneResult } from './finetune.js';
import { denseReference, pruneRound } from './losa-round.js';
import { loadRoundState, roundDir, saveRoundState } from './losa-state.js';
import { mergeLora } from './merge.js';
import { patternPercent } from './pattern.js';
import { type LayerPruneResult, modelSparsity, type PrunedModel } from './prune-model.js';
import { allocateRanks } from './rank-allocation.js';
import { pruningRounds } from './sparsity-schedule.js';

/** What a round decided, for logs, metrics and tests. */
export interface LosaRound {
  step: number;
  steps: number;
  /** Mean sparsity S_t in percent and the band δ_t (fraction). */
  percent: number;
  delta: number;
  /** The rate asked of each block (fraction) and what it got: zeros, sparsity, e_l. */
  rates: number[];
  layers: LayerPruneResult[];
  importance?: LayerImportance;
  /** r̄_t and the ranks each block trains with this round. */
  meanRank: number;
  ranks: number[];
}

export async function losaFineTune(opts: FineTuneOptions): Promise<FineTuneResult> {
  const c = opts.config;
  const layers = c.numHiddenLayers;
  const sparsity = opts.sparsity;
  if (!sparsity) throw new Error('method losa needs sparsity (pruner, pattern, schedule)');
  const calibration = opts.calibration;
  if (!calibration || calibration.length === 0) throw new Error('method losa needs calibration sequences for the pruner and the layer importance');
  const { rank, alpha, targetModules } = opts.adapter;
  if (!(Number.isInteger(rank) && rank >= 1)) throw new Error(`adapter.rank must be a positive integer, got ${rank}`);
  if (targetModules.length === 0) throw new Error('adapter.targetModules is empty: expected modules such as q_proj, v_proj');

  const pattern = sparsity.pattern;
  const nm = pattern.kind === 'n:m' ? { n: pattern.n, m: pattern.m } : undefined;
  const schedule = sparsity.schedule ?? { kind: 'oneshot', steps: 1 };
  // N:M fixes every layer's sparsity, so each round prunes to the pattern again (the reference's
  // N:M path does the same); only the selection, the ranks and the data move between rounds.
  const rounds = pruningRounds(nm ? 'oneshot' : schedule.kind, patternPercent(pattern), schedule.steps);
  const steps = rounds.length;
  const lastMean = rank + steps - 1;
  const maxRank = opts.adapter.maxRank ?? lastMean;
  if (lastMean > maxRank) throw new Error(`adapter: the mean rank grows from ${rank} by one per round to ${lastMean} in round ${steps}, above maxRank ${maxRank}`);
  const allocation = opts.adapter.rankAllocation ?? 'reconstruction-error';
  const shrink: ShrinkRule = opts.losa?.shrink ?? 'discard';
  const training = opts.training;
  if (training.steps < steps) throw new Error(`method losa trains in each of its ${steps} rounds: training.steps ${training.steps} must be at least ${steps}`);
  const { slices, stepsPer } = roundData(opts.train, training.steps, steps, training.sequenceLength, opts.losa?.split ?? 'reference');

  const targets = Array.from({ length: layers }, (_, l) => targetModules.map((m) => linearPath(l, m))).flat();
  const adapted = new Set(targets);
  const shapes = new Map(targets.map((p) => [p, linearShape(c, p.slice(p.lastIndexOf('.') + 1) as (typeof LINEAR_MODULES)[number])] as const));
  let rng = new Rng(opts.seed);
  const adapter = new DynamicRankAdapter(shapes, maxRank, rank, alpha / rank, () => rng.next());
  let base: WeightMap = opts.weights;
  let masks: Map<string, Float32Array> = new Map(targets.map((p) => [p, new Float32Array((shapes.get(p) as [number, number])[0] * (shapes.get(p) as [number, number])[1]).fill(1)]));
  let losses: number[] = [];
  let first = 0;
  let last: PrunedModel | undefined;
  const rankMap = (ranks: readonly number[]): Map<string, number> => new Map(targets.map((p) => [p, ranks[layerOf(p)] as number]));
  const remember = (round: LosaRound): void => {
    last = { weights: base as Map<string, WeightTensor>, layers: round.layers, ...totals(round.layers) };
    for (const l of round.layers) opts.onPruned?.({ ...l, rank: round.ranks[l.index] as number }, layers);
  };

  const dir = training.checkpointDir ?? null;
  const resumed = dir && opts.resume !== false ? await loadRoundState(dir, c) : null;
  if (resumed) {
    base = mergeWeights(opts.weights, resumed.base);
    masks = resumed.masks;
    adapter.restore(resumed.adapter, resumed.ranks);
    losses = resumed.losses;
    rng = Rng.fromState(resumed.rngState);
    first = resumed.round.step - 1;
    remember(resumed.round);
    opts.log?.info({ round: resumed.round.step, steps }, 'resuming LoSA from a saved round');
  }

  const perplexity = async (weights: WeightMap): Promise<number> =>
    (await evalPerplexity({ config: c, weights, sequences: [opts.eval], sequenceLength: training.sequenceLength, cache: opts.cache })).perplexity;
  opts.onStage?.('Evaluating', 0, 2);
  const perplexityBefore = await perplexity(opts.weights);
  const cal = { sequences: calibration, runner: new BlockRunner(c, opts.cache, calibration[0]?.length ?? 0), gram: new CenteredGram(opts.cache) };
  opts.onStage?.('Pruning', 0, layers);
  const dense = await denseReference(c, opts.weights, cal);

  let resumedFromStep = 0;
  let interrupted = false;
  let trainedHere = 0;
  let trainingSeconds = 0;
  for (let i = first; i < steps; i++) {
    const round = rounds[i] as (typeof rounds)[number];
    if (!(resumed && i === first)) {
      const merged = await mergeLora(base, adapter.active(), opts.cache, masks);
      const pruned = await pruneRound({
        config: c, merged, cal, dense, pruner: sparsity.pruner, round, layerwise: sparsity.layerwise ?? 'uniform', adapted, ...(nm ? { nm } : {}),
        onLayer: (l) => opts.onStage?.('Pruning', l + 1, layers),
      });
      const newMasks = new Map(targets.map((p) => [p, pruned.keep.get(p) as Float32Array]));
      base = await mergeLora(pruned.weights, adapter.active(-1), opts.cache, newMasks);
      masks = newMasks;
      const meanRank = rank + i;
      const ranks = allocation === 'reconstruction-error' ? allocateRanks(pruned.layers.map((l) => l.reconstructionError), meanRank, maxRank) : pruned.layers.map(() => meanRank);
      adapter.setRanks(rankMap(ranks), shrink);
      const report: LosaRound = { step: round.step, steps, percent: round.percent, delta: round.delta, rates: pruned.rates, layers: pruned.layers, meanRank, ranks, ...(pruned.importance ? { importance: pruned.importance } : {}) };
      remember(report);
      opts.onLosaRound?.(report);
      opts.log?.info({ round: round.step, steps, sparsityPercent: round.percent, delta: round.delta, rates: pruned.rates, ranks, reconstructionErrors: pruned.layers.map((l) => l.reconstructionError) }, 'LoSA round pruned');
      if (dir && training.checkpointEvery) {
        const state = adapter.state();
        await saveRoundState(dir, { round: report, base: linearWeights(c, base), masks, adapter: new Map([...state].map(([k, v]) => [k, v.data])), ranks: rankMap(ranks), losses, rngState: rng.state }, state, c);
      }
    }

    const model = await createLlamaTrainModel({
      config: c, weights: base, mode: 'lora', lora: { targets, rank, alpha, initial: adapter.active() }, cache: opts.cache, random: () => rng.next(),
      masks: { loraMasks: targets, feeds: maskFeeds(new Map([...masks].map(([p, m]) => [p, { shape: [...(shapes.get(p) as [number, number])], data: m }])), 'lora') },
    });
    try {
      const trainDir = dir ? join(roundDir(dir, round.step), 'train') : null;
      const resumeFrom = trainDir && opts.resume !== false ? await latestCheckpoint(trainDir) : null;
      const done = losses.length;
      if (resumeFrom && i === first) resumedFromStep = done + Number(/checkpoint-(\d+)$/.exec(resumeFrom)?.[1] ?? 0);
      else if (resumed && i === first) resumedFromStep = done;
      const n = stepsPer[i] as number;
      opts.onStage?.('Training', done, training.steps);
      const started = performance.now();
      let before: number | undefined;
      const run = await train({
        model, train: slices[i] as ArrayLike<number>, progressBar: false, signal: opts.signal,
        config: {
          ...training, steps: n, warmupSteps: Math.round(((training.warmupSteps ?? 0) * n) / training.steps),
          seed: (training.seed ?? 0) + round.step, checkpointDir: trainDir, checkpointEvery: trainDir ? (training.checkpointEvery ?? 0) : 0,
        },
        ...(resumeFrom ? { resumeFrom } : {}),
        onProgress: (p) => {
          const step = done + p.step;
          before ??= p.step - 1;
          // The rest of the run at this process's pace so far, pruning rounds not counted.
          const pace = (trainingSeconds + (performance.now() - started) / 1000) / (trainedHere + p.step - before);
          opts.onTrainProgress?.({ ...p, step, totalSteps: training.steps, etaSeconds: pace * (training.steps - step) });
          opts.onStage?.('Training', step, training.steps);
        },
      });
      trainingSeconds += (performance.now() - started) / 1000;
      trainedHere += run.losses.length - (before ?? run.losses.length);
      losses = [...losses.slice(0, done), ...run.losses];
      adapter.absorb(model.params);
      interrupted = run.losses.length < n;
    } finally {
      await model.dispose();
    }
    if (interrupted || opts.signal?.aborted) {
      interrupted = true;
      break;
    }
  }

  const finalRanks = Array.from({ length: layers }, (_, l) => adapter.rankOf(targets[l * targetModules.length] as string));
  const peft = adapter.toPeft(targetModules, opts.baseModelName ?? null);
  const pruning = last ?? { weights: base as Map<string, WeightTensor>, layers: [], ...totals([]) };
  if (interrupted) {
    return { merged: new Map(base), adapter: peft, pruning, sparsity: modelSparsity(c, base), perplexityBefore, perplexityAfter: Number.NaN, losses, interrupted, resumedFromStep, ranks: finalRanks };
  }
  opts.onStage?.('Merging', 0, 1);
  const merged = await mergeLora(base, adapter.active(), opts.cache, masks);
  opts.onStage?.('Evaluating', 1, 2);
  const perplexityAfter = await perplexity(merged);
  return { merged, adapter: peft, pruning, sparsity: modelSparsity(c, merged), perplexityBefore, perplexityAfter, losses, interrupted, resumedFromStep, ranks: finalRanks };
}

/** Block index of a module path model.layers.L.…. */
function layerOf(path: string): number {
  return Number(/^model\.layers\.(\d+)\./.exec(path)?.[1]);
}

function totals(layers: readonly LayerPruneResult[]): { zeros: number; total: number; achievedSparsityPercent: number } {
  const zeros = layers.reduce((s, l) => s + l.zeros, 0);
  const total = layers.reduce((s, l) => s + l.total, 0);
  return { zeros, total, achievedSparsityPercent: total > 0 ? (100 * zeros) / total : 0 };
}

/** The linear weights of every block: what a round changes, so what a round's checkpoint keeps. */
function linearWeights(c: LlamaConfig, weights: WeightMap): Map<string, WeightTensor> {
  const out = new Map<string, WeightTensor>();
  for (let l = 0; l < c.numHiddenLayers; l++) {
    for (const m of LINEAR_MODULES) {
      const name = `${linearPath(l, m)}.weight`;
      out.set(name, weights.get(name) as WeightTensor);
    }
  }
  return out;
}

function mergeWeights(base: WeightMap, over: ReadonlyMap<string, WeightTensor>): Map<string, WeightTensor> {
  const out = new Map(base);
  for (const [name, w] of over) out.set(name, w);
  return out;
}

/**
 * How the data and the optimizer steps are shared among the rounds. `reference` is the authors'
 * code: the data in 2T parts, one for each round but the last, which trains on the other T + 1
 * (1k, 1k, 1k, 1k, 6k of their 10k samples), so most of the training happens at the final
 * sparsity; `equal` gives every round the same share. Slices are contiguous; steps go with them.
 */
export type RoundSplit = 'reference' | 'equal';

export function roundData(tokens: ArrayLike<number>, totalSteps: number, rounds: number, sequenceLength: number, split: RoundSplit): { slices: ArrayLike<number>[]; stepsPer: number[] } {
  const parts = split === 'reference' && rounds > 1 ? 2 * rounds : rounds;
  const size = Math.floor(tokens.length / parts);
  if (size < sequenceLength + 1) {
    throw new Error(`method losa trains each of its ${rounds} rounds on its own slice of the data (${split} split, ${parts} parts): ${tokens.length} training tokens make parts of ${size}, and windows of ${sequenceLength} tokens need ${sequenceLength + 1} (add data, lower training.sequenceLength or sparsity.schedule.steps)`);
  }
  const all = Array.from(tokens);
  const slices = Array.from({ length: rounds }, (_, i) => all.slice(i * size, i === rounds - 1 ? all.length : (i + 1) * size));
  let stepsPer: number[];
  if (parts === rounds) stepsPer = Array.from({ length: rounds }, (_, i) => Math.floor(totalSteps / rounds) + (i < totalSteps % rounds ? 1 : 0));
  else {
    const early = Math.max(1, Math.floor(totalSteps / parts));
    stepsPer = Array.from({ length: rounds }, (_, i) => (i < rounds - 1 ? early : totalSteps - early * (rounds - 1)));
  }
  if (stepsPer.some((n) => n < 1)) throw new Error(`method losa trains in each of its ${rounds} rounds: training.steps ${totalSteps} must be at least ${rounds}`);
  return { slices, stepsPer };
}
