// Shears (ALGORITHMS.md §3, elastic LoRA; Muñoz et al.): on the base pruned as sparsepeft prunes
// it, train one LoRA super-adapter at rank r_max = adapter.rank that still works when cut to any
// rank of the search space. At every optimizer step each sharing group of each block draws a rank
// r from the space and the step uses A[:r], B[:, :r] with the scale FIXED at alpha/r_max, so a
// cut adapter is the super-adapter with its trailing rank components removed, not rescaled.
// The delta is masked by the pruned base (ΔW = s·(B·A) ⊙ M), so every merge keeps every zero.
// A step's components beyond r get zero gradient; AdamW's moments still move them a little, as
// torch's AdamW does in the reference, which slices the full parameters (NNCF elastic width).
// After training, sub-adapters are extracted: maximal (the largest rank), heuristic (the middle
// of the space) and minimal (the smallest); each is merged and measured, and the chosen one is
// the run's adapter and merged model. `search` runs NSGA-II over per-(block, group) ranks with
// two objectives, held-out loss and the sub-adapter's parameter count, and chooses the front's
// lowest-loss configuration no larger than the heuristic's.
import { type LinearModule, LINEAR_MODULES } from '../../formats/hf-checkpoint.js';
import { type LlamaConfig, linearShape } from '../../model/llama/config.js';
import { maskFeeds } from '../../model/llama/feeds.js';
import { type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { trainResuming } from './resume.js';
import { createLlamaTrainModel } from '../model-step.js';
import { Rng } from '../rng.js';
import { DynamicRankAdapter } from './dynamic-rank.js';
import { type FineTuneOptions, type FineTuneResult } from './finetune.js';
import { mergeLora } from './merge.js';
import { type Evaluated, genesKey, nsga2 } from './nsga2.js';
import { modelSparsity, type PrunedModel } from './prune-model.js';

/** The uniform cuts extracted and measured after every training, in the order they are measured. */
export const SUB_ADAPTERS = ['maximal', 'heuristic', 'minimal'] as const;
export type UniformCut = (typeof SUB_ADAPTERS)[number];
/** What a run writes: one of the uniform cuts, or the configuration the search chooses. */
export type SubAdapter = UniformCut | 'search';

/**
 * NSGA-II settings of `search`. Library options, not CRD fields: the defaults are small so a tiny
 * model searches in seconds, and at most population · (generations + 1) configurations are
 * evaluated (each a masked merge and one held-out pass).
 */
export interface SearchOptions {
  /** Default 8. */
  population?: number;
  /** Default 4. */
  generations?: number;
}
export const DEFAULT_SEARCH = { population: 8, generations: 4 } as const;

export interface ElasticOptions {
  /** The ranks the super-adapter is trained to be cut to, e.g. [32, 24, 16]; each at most adapter.rank. */
  rankChoices: readonly number[];
  /** Which extracted sub-adapter the run writes and merges. Default heuristic. */
  subAdapter?: SubAdapter;
  search?: SearchOptions;
}

export type RankGroup = 'qkv' | 'o' | 'gate_up' | 'down';

/**
 * The group whose one rank a module uses (one draw per group and block). q, k and v read the same
 * input and share a rank, up and down have their own (the Shears configs: [[Q, K, V], [Up], [Down]]
 * per block); gate goes with up because SwiGLU multiplies their outputs elementwise, so the MLP's
 * input side keeps one width; o, which Shears leaves unadapted, gets its own.
 */
export function rankGroup(module: LinearModule): RankGroup {
  if (module === 'q_proj' || module === 'k_proj' || module === 'v_proj') return 'qkv';
  if (module === 'gate_proj' || module === 'up_proj') return 'gate_up';
  return module === 'o_proj' ? 'o' : 'down';
}

/**
 * The search space, largest rank first: maximal is its first value, minimal its last, heuristic
 * its middle (for an even count the lower of the two middle ranks, Python's v[len(v) // 2]).
 * The order the choices were given in does not matter.
 */
export function rankSpace(choices: readonly number[], maxRank: number): number[] {
  if (choices.length === 0) throw new Error('elastic.rankChoices is empty: expected ranks such as [32, 24, 16]');
  for (const r of choices) {
    if (!(Number.isInteger(r) && r >= 1 && r <= maxRank)) throw new Error(`elastic.rankChoices: ${r} must be an integer in [1, adapter.rank ${maxRank}], the rank of the super-adapter (got [${choices.join(', ')}])`);
  }
  if (new Set(choices).size !== choices.length) throw new Error(`elastic.rankChoices [${choices.join(', ')}] repeats a rank: each rank is one choice`);
  return [...choices].sort((a, b) => b - a);
}

export function subAdapterRank(space: readonly number[], which: SubAdapter): number {
  const at = which === 'maximal' ? 0 : which === 'minimal' ? space.length - 1 : Math.floor(space.length / 2);
  return space[at] as number;
}

/**
 * The ranks of one optimizer step: each group of each block draws uniformly from the space. The
 * draw depends only on (seed, step), so a resumed run trains the same sub-adapters in the same steps.
 */
export function drawRanks(targets: readonly string[], space: readonly number[], seed: number, step: number): Map<string, number> {
  const rng = new Rng((Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca6b)) >>> 0);
  const drawn = new Map<string, number>();
  const ranks = new Map<string, number>();
  for (const path of targets) {
    const key = `${blockOf(path)}:${rankGroup(moduleOf(path))}`;
    let r = drawn.get(key);
    if (r === undefined) drawn.set(key, (r = space[rng.int(space.length)] as number));
    ranks.set(path, r);
  }
  return ranks;
}

export interface ElasticConfiguration {
  subAdapter: UniformCut;
  /** The rank of every module in this sub-adapter. */
  rank: number;
  /** Held-out perplexity of the pruned base with this sub-adapter merged (masked). */
  perplexity: number;
}

/** One sub-adapter the search measured: a rank per (block, group), as `${block}:${group}` → rank. */
export interface SearchedConfiguration {
  ranks: Record<string, number>;
  /** Trainable values of the sub-adapter: r · (in + out) summed over its modules. */
  parameters: number;
  /** Held-out perplexity with it merged (masked); the search minimizes its log, the loss. */
  perplexity: number;
}

export interface SearchResult {
  population: number;
  generations: number;
  /** Distinct configurations evaluated. */
  evaluations: number;
  /** The non-dominated configurations of everything evaluated, fewest parameters first. */
  front: SearchedConfiguration[];
  chosen: SearchedConfiguration;
  heuristic: SearchedConfiguration;
}

export interface ShearsResult extends FineTuneResult {
  elastic: { space: number[]; configurations: ElasticConfiguration[]; chosen: SubAdapter; search?: SearchResult };
}

/** Status metrics: perplexityMaximal, perplexityHeuristic and perplexityMinimal (a searched run's is perplexityAfter). */
export function elasticMetrics(configurations: readonly ElasticConfiguration[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of configurations) out[`perplexity${c.subAdapter[0]?.toUpperCase()}${c.subAdapter.slice(1)}`] = c.perplexity;
  return out;
}

/** What fineTune hands over once the base is pruned and measured. */
export interface PrunedBase {
  targets: readonly string[];
  base: WeightMap;
  masks: ReadonlyMap<string, Float32Array>;
  pruning: PrunedModel;
  perplexityBefore: number;
  perplexity: (weights: WeightMap) => Promise<number>;
}

export async function shearsFineTune(opts: FineTuneOptions, pruned: PrunedBase): Promise<ShearsResult> {
  const c: LlamaConfig = opts.config;
  const { rank: maxRank, alpha, targetModules } = opts.adapter;
  if (!opts.elastic) throw new Error('method shears needs elastic.rankChoices, the ranks the super-adapter is trained to be cut to');
  const space = rankSpace(opts.elastic.rankChoices, maxRank);
  const chosen = opts.elastic.subAdapter ?? 'heuristic';
  const { targets, base, masks, pruning, perplexityBefore } = pruned;
  const seed = opts.training.seed ?? opts.seed;

  const rng = new Rng(opts.seed);
  const active = new Map(targets.map((p) => [p, maxRank]));
  const model = await createLlamaTrainModel({
    config: c, weights: base, mode: 'lora', lora: { targets, rank: maxRank, alpha, activeRanks: active }, cache: opts.cache, random: () => rng.next(),
    masks: { loraMasks: targets, feeds: maskFeeds(new Map([...masks].map(([p, m]) => [p, { shape: (base.get(`${p}.weight`) as WeightTensor).shape, data: m }])), 'lora') },
  });
  const shapes = new Map(targets.map((p) => [p, linearShape(c, moduleOf(p))] as const));
  // Factors come from the trained model below, so the adapter's own draw is never used.
  const adapter = new DynamicRankAdapter(shapes, maxRank, maxRank, alpha / maxRank, () => 0.5);
  let losses: number[];
  let resumedFromStep = 0;
  try {
    const run = await trainResuming(model, opts, (step) => {
      for (const [p, r] of drawRanks(targets, space, seed, step)) active.set(p, r);
    });
    losses = run.losses;
    resumedFromStep = run.resumedFromStep;
    adapter.absorb(model.params);
  } finally {
    await model.dispose();
  }

  const elastic = { space, configurations: [] as ElasticConfiguration[], chosen };
  if (losses.length < opts.training.steps) {
    return {
      merged: new Map(base), adapter: adapter.toPeft(targetModules, opts.baseModelName ?? null), pruning, sparsity: modelSparsity(c, base),
      perplexityBefore, perplexityAfter: Number.NaN, losses, interrupted: true, resumedFromStep, elastic,
    };
  }

  let result: Pick<FineTuneResult, 'merged' | 'adapter' | 'perplexityAfter'> | undefined;
  const measured = new Map<number, number>();
  for (const [i, which] of SUB_ADAPTERS.entries()) {
    const r = subAdapterRank(space, which);
    opts.onStage?.('Merging', i, SUB_ADAPTERS.length);
    // 'keep' only slices: the components beyond r stay for the next, smaller cut.
    adapter.setRanks(new Map(targets.map((p) => [p, r])), 'keep');
    let perplexity = measured.get(r);
    if (perplexity === undefined || which === chosen) {
      const merged = await mergeLora(base, adapter.active(), opts.cache, masks);
      opts.onStage?.('Evaluating', 1 + i, 1 + SUB_ADAPTERS.length);
      perplexity ??= await pruned.perplexity(merged);
      measured.set(r, perplexity);
      if (which === chosen) result = { merged, adapter: adapter.toPeft(targetModules, opts.baseModelName ?? null), perplexityAfter: perplexity };
    }
    elastic.configurations.push({ subAdapter: which, rank: r, perplexity });
  }
  let ranks = Array.from({ length: c.numHiddenLayers }, () => subAdapterRank(space, chosen === 'search' ? 'heuristic' : chosen));
  if (chosen === 'search') {
    const search = await searchSubAdapter(opts, pruned, adapter, space, seed, measured);
    const chosenRanks = moduleRanks(targets, search.chosen.ranks);
    adapter.setRanks(chosenRanks, 'keep');
    opts.onStage?.('Merging', SUB_ADAPTERS.length, SUB_ADAPTERS.length + 1);
    result = { merged: await mergeLora(base, adapter.active(), opts.cache, masks), adapter: adapter.toPeft(targetModules, opts.baseModelName ?? null), perplexityAfter: search.chosen.perplexity };
    ranks = blockRanks(c.numHiddenLayers, targets, chosenRanks);
    Object.assign(elastic, { search });
  }
  const final = result as NonNullable<typeof result>;
  opts.log?.info({ space, configurations: elastic.configurations, chosen }, 'extracted the elastic sub-adapters');
  return { ...final, pruning, sparsity: modelSparsity(c, final.merged), perplexityBefore, losses, interrupted: false, resumedFromStep, ranks, elastic };
}

/** The groups of the adapted modules as `${block}:${group}`, in the order of `targets`: the genes of the search. */
export function rankGroups(targets: readonly string[]): string[] {
  return [...new Set(targets.map(groupKey))];
}

/** Per-module ranks from per-group ranks. */
export function moduleRanks(targets: readonly string[], groups: Readonly<Record<string, number>>): Map<string, number> {
  return new Map(targets.map((p) => {
    const r = groups[groupKey(p)];
    if (r === undefined) throw new Error(`no rank for the group ${groupKey(p)} of ${p}`);
    return [p, r];
  }));
}

/** Trainable values of a sub-adapter at these ranks: A is r × in, B is out × r. */
export function adapterParameters(config: LlamaConfig, ranks: ReadonlyMap<string, number>): number {
  let n = 0;
  for (const [p, r] of ranks) {
    const [out, inF] = linearShape(config, moduleOf(p));
    n += r * (out + inF);
  }
  return n;
}

/**
 * The rank a block reports in the layer metrics. A searched block's groups may differ: it reports
 * its first adapted module's (in q, k, v, o, gate, up, down order), so the q/k/v group's rank when
 * attention is adapted; the Pareto front log has every group's.
 */
function blockRanks(blocks: number, targets: readonly string[], ranks: ReadonlyMap<string, number>): number[] {
  return Array.from({ length: blocks }, (_, l) => {
    const inBlock = targets.filter((p) => blockOf(p) === l).sort((a, b) => LINEAR_MODULES.indexOf(moduleOf(a)) - LINEAR_MODULES.indexOf(moduleOf(b)));
    return ranks.get(inBlock[0] as string) as number;
  });
}

/**
 * NSGA-II over a rank per (block, group), objectives held-out loss and parameter count. The loss
 * of a configuration is ln(perplexity) over ALL the eval tokens, the very measurement of
 * perplexityBefore/After and of the uniform cuts: one masked merge and one held-out pass per
 * distinct configuration (cached), and the chosen configuration's reported perplexity is the one
 * the search ranked it by. The uniform cuts are in the first population and reuse their
 * measurements. The choice: on the front of everything evaluated, the lowest loss among the
 * configurations with at most the heuristic's parameters. The heuristic was evaluated, so it is on
 * that front or dominated by a member of it, which then qualifies: the choice is never larger than
 * the heuristic and never worse on held-out loss.
 */
async function searchSubAdapter(
  opts: FineTuneOptions, pruned: PrunedBase, adapter: DynamicRankAdapter, space: readonly number[], seed: number, measured: ReadonlyMap<number, number>,
): Promise<SearchResult> {
  const { targets, base, masks } = pruned;
  const groups = rankGroups(targets);
  const population = opts.elastic?.search?.population ?? DEFAULT_SEARCH.population;
  const generations = opts.elastic?.search?.generations ?? DEFAULT_SEARCH.generations;
  const toRanks = (genes: readonly number[]): Record<string, number> => Object.fromEntries(groups.map((g, i) => [g, space[genes[i] as number] as number]));
  const uniform = (which: UniformCut): number[] => groups.map(() => space.indexOf(subAdapterRank(space, which)));
  const perplexities = new Map<string, number>();
  for (const which of SUB_ADAPTERS) {
    const p = measured.get(subAdapterRank(space, which));
    if (p !== undefined) perplexities.set(genesKey(uniform(which)), p);
  }
  const limit = population * (generations + 1);
  const run = await nsga2({
    choices: groups.map(() => space.length), initial: SUB_ADAPTERS.map(uniform), population, generations,
    // Its own stream from the training seed, apart from the per-step rank draws.
    seed: (Math.imul(seed + 1, 0x2c1b3c6d) ^ 0x5ea7c4) >>> 0,
    evaluate: async (genes) => {
      const ranks = moduleRanks(targets, toRanks(genes));
      let perplexity = perplexities.get(genesKey(genes));
      if (perplexity === undefined) {
        adapter.setRanks(ranks, 'keep');
        perplexity = await pruned.perplexity(await mergeLora(base, adapter.active(), opts.cache, masks));
        perplexities.set(genesKey(genes), perplexity);
      }
      return [Math.log(perplexity), adapterParameters(opts.config, ranks)];
    },
    onGeneration: (_, evaluations) => opts.onStage?.('Evaluating', evaluations, limit),
  });
  const describe = (e: Evaluated): SearchedConfiguration => ({ ranks: toRanks(e.genes), parameters: e.objectives[1] as number, perplexity: perplexities.get(genesKey(e.genes)) as number });
  const heuristic = describe(run.evaluated.find((e) => genesKey(e.genes) === genesKey(uniform('heuristic'))) as Evaluated);
  const front = run.front.map(describe).sort((a, b) => a.parameters - b.parameters || a.perplexity - b.perplexity);
  const eligible = front.filter((f) => f.parameters <= heuristic.parameters);
  const chosen = eligible.reduce<SearchedConfiguration | undefined>((best, f) => (best === undefined || f.perplexity < best.perplexity ? f : best), undefined) ?? heuristic;
  const summary = (f: SearchedConfiguration): { ranks: string; parameters: number; loss: number; perplexity: number } => ({
    // Ranks in group order, blocks separated: "8,8,6,4 | 6,8,8,4".
    ranks: summarizeRanks(groups, f.ranks), parameters: f.parameters, loss: Math.log(f.perplexity), perplexity: f.perplexity,
  });
  opts.log?.info({
    population, generations, evaluations: run.evaluated.length, groups: groups.join(' '), front: front.map(summary), chosen: summary(chosen), heuristic: summary(heuristic),
  }, 'searched the elastic sub-adapters: the Pareto front of held-out loss against parameters');
  return { population, generations, evaluations: run.evaluated.length, front, chosen, heuristic };
}

function summarizeRanks(groups: readonly string[], ranks: Readonly<Record<string, number>>): string {
  const blocks = new Map<number, number[]>();
  for (const g of groups) {
    const b = Number(g.slice(0, g.indexOf(':')));
    blocks.set(b, [...(blocks.get(b) ?? []), ranks[g] as number]);
  }
  return [...blocks.values()].map((r) => r.join(',')).join(' | ');
}

function groupKey(path: string): string {
  return `${blockOf(path)}:${rankGroup(moduleOf(path))}`;
}

function blockOf(path: string): number {
  const m = /\.layers\.(\d+)\./.exec(path);
  if (!m) throw new Error(`${path} is not a module path of a transformer block (model.layers.<i>.…)`);
  return Number(m[1]);
}

function moduleOf(path: string): LinearModule {
  const m = path.slice(path.lastIndexOf('.') + 1);
  if (!(LINEAR_MODULES as readonly string[]).includes(m)) throw new Error(`${path} does not end in a linear module: expected one of ${LINEAR_MODULES.join(', ')}`);
  return m as LinearModule;
}
