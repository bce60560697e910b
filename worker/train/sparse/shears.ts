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
// the run's adapter and merged model. The NSGA-II search over per-group ranks is not built.
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
import { modelSparsity, type PrunedModel } from './prune-model.js';

/** The sub-adapters extracted after training, in the order they are measured. */
export const SUB_ADAPTERS = ['maximal', 'heuristic', 'minimal'] as const;
export type SubAdapter = (typeof SUB_ADAPTERS)[number];

export interface ElasticOptions {
  /** The ranks the super-adapter is trained to be cut to, e.g. [32, 24, 16]; each at most adapter.rank. */
  rankChoices: readonly number[];
  /** Which extracted sub-adapter the run writes and merges. Default heuristic. */
  subAdapter?: SubAdapter;
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
  subAdapter: SubAdapter;
  /** The rank of every module in this sub-adapter. */
  rank: number;
  /** Held-out perplexity of the pruned base with this sub-adapter merged (masked). */
  perplexity: number;
}

export interface ShearsResult extends FineTuneResult {
  elastic: { space: number[]; configurations: ElasticConfiguration[]; chosen: SubAdapter };
}

/** Status metrics: perplexityMaximal, perplexityHeuristic and perplexityMinimal. */
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
  const final = result as NonNullable<typeof result>;
  opts.log?.info({ space, configurations: elastic.configurations, chosen }, 'extracted the elastic sub-adapters');
  return {
    ...final, pruning, sparsity: modelSparsity(c, final.merged), perplexityBefore, losses, interrupted: false, resumedFromStep,
    ranks: Array.from({ length: c.numHiddenLayers }, () => subAdapterRank(space, chosen)), elastic,
  };
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
