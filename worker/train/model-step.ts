// The training loop's view of a model: named parameters (Float32Arrays the optimizer
// updates in place) and a function from a batch to loss and gradients. The Llama
// implementation builds one training session whose inputs are the trained parameters, so
// every step reuses it; an evaluation session computes the loss alone.
import { type LlamaConfig } from '../model/llama/config.js';
import { type Feeds, type LoraWeights, sequentialPositions } from '../model/llama/feeds.js';
import { buildTrainingGraph, gradName } from '../model/llama/graph.js';
import { loraInputNames, loraQuantInputNames } from '../model/llama/params.js';
import { type WeightMap, weightSpecs } from '../model/llama/weights.js';
import * as nn from '../onnx/index.js';
import { type SessionCache } from '../onnx/session.js';
import { type Batch } from './data.js';

export interface StepResult {
  /** Σ weights·token loss: the mean over counted tokens when weights = mask / count. */
  loss: number;
  grads: Map<string, Float32Array>;
}

export interface TrainModel {
  /** Trained parameters by name; updated in place, fed as they are at each run. */
  readonly params: Map<string, Float32Array>;
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  /** Parameters exempt from weight decay. */
  readonly noDecay: ReadonlySet<string>;
  lossAndGradients(batch: Batch, weights: Float32Array): Promise<StepResult>;
  loss(batch: Batch, weights: Float32Array): Promise<number>;
  dispose(): Promise<void>;
}

export interface LlamaTrainOptions {
  config: LlamaConfig;
  weights: WeightMap;
  /** 'full': every weight; 'lora': LoRA factors on `lora.targets`, base frozen. */
  mode: 'full' | 'lora';
  /**
   * `initial`: factors (and scaling) to start from for some targets, each at its own rank: LoSA
   * carries an adapter across pruning rounds and changes layer ranks between them. The other
   * targets start as PEFT does, at `rank` with scaling alpha/rank.
   *
   * `activeRanks` (elastic adapters, Shears): module path → the rank a run uses, read at every run,
   * so the caller may change it between steps. The parameters stay at their full rank; a run feeds
   * A[:r] and B[:, :r] (the graph's rank is symbolic, so every r shares one session and costs only
   * its own FLOPs), and the rows of A and columns of B beyond r get zero gradient. The scaling
   * stays what it was set to, whatever r is.
   */
  lora?: { targets: readonly string[]; rank: number; alpha: number; initial?: LoraWeights; activeRanks?: ReadonlyMap<string, number> };
  /**
   * QA-SparsePEFT: every LoRA target's adapted weight goes through the straight-through fake
   * quantizer of `bits` (model/llama/lora.ts); `feeds` holds each target's grid
   * (loraQuantInputNames: scales, zeros, groups). The held copies of A and B are fed here.
   */
  quant?: { bits: number; feeds: Feeds };
  /** Constant feeds such as weight and LoRA masks (the graph options must declare them). */
  masks?: { weightMasks?: readonly string[]; loraMasks?: readonly string[]; feeds: Feeds };
  cache: SessionCache;
  /** Uniform in [0, 1): draws LoRA A as PEFT does (kaiming-uniform, bound 1/√in); B starts at 0. */
  random: () => number;
}

export async function createLlamaTrainModel(opts: LlamaTrainOptions): Promise<TrainModel> {
  const { config: c } = opts;
  const params = new Map<string, Float32Array>();
  const shapes = new Map<string, readonly number[]>();
  const noDecay = new Set<string>();
  // Elastic factors by input name: what a run slices to the module's active rank.
  const elastic = new Map<string, { path: string; factor: 'A' | 'B'; out: number; in: number; full: number }>();
  let constant: Feeds = { ...(opts.masks?.feeds ?? {}), ...(opts.quant?.feeds ?? {}) };
  // Factor name → the name of its held copy, fed the same tensor (the fake quantizer's branch).
  const held = new Map<string, string>();

  if (opts.mode === 'full') {
    for (const s of weightSpecs(c)) {
      const w = opts.weights.get(s.name);
      if (!w) throw new Error(`full fine-tuning: missing weight ${s.name}`);
      params.set(s.name, Float32Array.from(w.data));
      shapes.set(s.name, s.shape);
      if (s.shape.length < 2) noDecay.add(s.name);
    }
  } else {
    const lora = opts.lora;
    if (!lora || lora.targets.length === 0) throw new Error(`mode lora needs lora.targets: expected module paths like model.layers.0.self_attn.q_proj`);
    const specs = new Map(weightSpecs(c).map((s) => [s.name, s.shape]));
    const scaling = new Map<string, number>();
    for (const path of lora.targets) {
      const shape = specs.get(`${path}.weight`);
      if (!shape) throw new Error(`lora target ${path} is not a linear module of this model`);
      const [out, inF] = shape as [number, number];
      const names = loraInputNames(path);
      const init = lora.initial?.get(path);
      if (init) {
        const r = init.A.shape[0] as number;
        if (init.A.shape.join() !== `${r},${inF}` || init.B.shape.join() !== `${out},${r}`) {
          throw new Error(`lora target ${path}: initial factors A [${init.A.shape.join(', ')}] and B [${init.B.shape.join(', ')}] do not fit a ${out}×${inF} layer: expected A [r, ${inF}] and B [${out}, r]`);
        }
        params.set(names.A, Float32Array.from(init.A.data));
        params.set(names.B, Float32Array.from(init.B.data));
        shapes.set(names.A, [r, inF]);
        shapes.set(names.B, [out, r]);
        scaling.set(path, init.scaling);
        continue;
      }
      const bound = 1 / Math.sqrt(inF);
      params.set(names.A, Float32Array.from({ length: lora.rank * inF }, () => (2 * opts.random() - 1) * bound));
      params.set(names.B, new Float32Array(out * lora.rank));
      shapes.set(names.A, [lora.rank, inF]);
      shapes.set(names.B, [out, lora.rank]);
      scaling.set(path, lora.alpha / lora.rank);
    }
    // A and B are fed from `params` each step; only the scalings are constant.
    for (const [path, s] of scaling) constant[loraInputNames(path).scaling] = nn.tensor('float32', [], [s]);
    if (opts.quant) {
      for (const path of lora.targets) {
        const names = loraInputNames(path);
        const copies = loraQuantInputNames(path);
        held.set(names.A, copies.A);
        held.set(names.B, copies.B);
      }
    }
    for (const path of lora.activeRanks?.keys() ?? []) {
      if (!scaling.has(path)) throw new Error(`lora.activeRanks names ${path}, which is not a lora target`);
      const names = loraInputNames(path);
      const [full, inF] = shapes.get(names.A) as [number, number];
      const out = (shapes.get(names.B) as [number, number])[0];
      elastic.set(names.A, { path, factor: 'A', out, in: inF, full });
      elastic.set(names.B, { path, factor: 'B', out, in: inF, full });
    }
  }

  const wrt = [...params.keys()];
  const graphOpts = {
    weights: opts.weights,
    feed: opts.mode === 'full' ? ('all' as const) : [],
    lora: opts.mode === 'lora' ? opts.lora?.targets : [],
    weightMasks: opts.masks?.weightMasks ?? [],
    loraMasks: opts.masks?.loraMasks ?? [],
    ...(opts.quant && opts.mode === 'lora' ? { loraQuant: { paths: opts.lora?.targets ?? [], bits: opts.quant.bits } } : {}),
  };
  if (opts.quant && opts.mode !== 'lora') throw new Error('quant: the fake quantizer applies to LoRA targets, so it needs mode lora');
  const train = await opts.cache.forGraph(buildTrainingGraph(c, { ...graphOpts, wrt }).graph);
  const evaluate = await opts.cache.forGraph(buildTrainingGraph(c, { ...graphOpts, feed: opts.mode === 'full' ? 'all' : [], wrt: [] }).graph);
  constant = Object.freeze(constant);

  const feeds = (batch: Batch, weights: Float32Array): Feeds => {
    const f: Feeds = {
      ...constant,
      input_ids: nn.tensor('int64', [batch.batch, batch.seqLen], batch.inputIds),
      position_ids: sequentialPositions(batch.batch, batch.seqLen),
      targets: nn.tensor('int64', [batch.batch, batch.seqLen], batch.targets),
      loss_weights: nn.tensor('float32', [batch.batch, batch.seqLen], weights),
    };
    for (const [name, p] of params) {
      const e = elastic.get(name);
      const r = e ? activeRank(e) : 0;
      if (!e || r === e.full) f[name] = nn.tensor('float32', shapes.get(name) as number[], p);
      else if (e.factor === 'A') f[name] = nn.tensor('float32', [r, e.in], p.slice(0, r * e.in));
      else f[name] = nn.tensor('float32', [e.out, r], sliceColumns(p, e.out, e.full, r));
      const copy = held.get(name);
      if (copy) f[copy] = f[name] as nn.Tensor;
    }
    return f;
  };
  const activeRank = (e: { path: string; full: number }): number => {
    const r = opts.lora?.activeRanks?.get(e.path) ?? e.full;
    if (!(Number.isInteger(r) && r >= 1 && r <= e.full)) throw new Error(`${e.path}: active rank ${r} must be an integer in [1, ${e.full}]`);
    return r;
  };
  // A gradient at rank r, back to the full factor's shape with zeros beyond r.
  const padGradient = (name: string, g: Float32Array): Float32Array => {
    const e = elastic.get(name);
    if (!e || g.length === (params.get(name) as Float32Array).length) return g;
    const full = new Float32Array(e.factor === 'A' ? e.full * e.in : e.out * e.full);
    if (e.factor === 'A') {
      full.set(g);
      return full;
    }
    const r = g.length / e.out;
    for (let o = 0; o < e.out; o++) full.set(g.subarray(o * r, (o + 1) * r), o * e.full);
    return full;
  };
  const scalar = (t: nn.Tensor | undefined): number => Number((t?.data as Float32Array)[0]);

  return {
    params,
    shapes,
    noDecay,
    async lossAndGradients(batch, weights) {
      const out = await train.run(feeds(batch, weights));
      const grads = new Map<string, Float32Array>();
      for (const name of wrt) grads.set(name, padGradient(name, out[gradName(name)]?.data as Float32Array));
      return { loss: scalar(out.loss), grads };
    },
    async loss(batch, weights) {
      return scalar((await evaluate.run(feeds(batch, weights), ['loss'])).loss);
    },
    async dispose() {
      await train.dispose();
      await evaluate.dispose();
    },
  };
}

/** The first `r` of `cols` columns of a row-major [rows, cols] matrix, as a new [rows, r] one. */
function sliceColumns(m: Float32Array, rows: number, cols: number, r: number): Float32Array {
  const out = new Float32Array(rows * r);
  for (let i = 0; i < rows; i++) out.set(m.subarray(i * cols, i * cols + r), i * r);
  return out;
}
