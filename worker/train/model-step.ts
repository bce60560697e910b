// The training loop's view of a model: named parameters (Float32Arrays the optimizer
// updates in place) and a function from a batch to loss and gradients. The Llama
// implementation builds one training session whose inputs are the trained parameters, so
// every step reuses it; an evaluation session computes the loss alone.
import { type LlamaConfig } from '../model/llama/config.js';
import { type Feeds, type LoraWeights, sequentialPositions } from '../model/llama/feeds.js';
import { buildTrainingGraph, gradName } from '../model/llama/graph.js';
import { loraInputNames } from '../model/llama/params.js';
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
   */
  lora?: { targets: readonly string[]; rank: number; alpha: number; initial?: LoraWeights };
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
  let constant: Feeds = { ...(opts.masks?.feeds ?? {}) };

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
  }

  const wrt = [...params.keys()];
  const graphOpts = {
    weights: opts.weights,
    feed: opts.mode === 'full' ? ('all' as const) : [],
    lora: opts.mode === 'lora' ? opts.lora?.targets : [],
    weightMasks: opts.masks?.weightMasks ?? [],
    loraMasks: opts.masks?.loraMasks ?? [],
  };
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
    for (const [name, p] of params) f[name] = nn.tensor('float32', shapes.get(name) as number[], p);
    return f;
  };
  const scalar = (t: nn.Tensor | undefined): number => Number((t?.data as Float32Array)[0]);

  return {
    params,
    shapes,
    noDecay,
    async lossAndGradients(batch, weights) {
      const out = await train.run(feeds(batch, weights));
      const grads = new Map<string, Float32Array>();
      for (const name of wrt) grads.set(name, out[gradName(name)]?.data as Float32Array);
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
