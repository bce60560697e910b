// SpaLLM on a whole model (ALGORITHMS.md §5): sketch every linear layer of every block in order on
// calibration inputs that come through the already-sketched blocks before it (the walk of
// blockwise.ts, as GPTQ goes), then a training model whose only parameters are the lookup tables.
//
// The training graph is the ordinary Llama graph with the sketched weights fed as inputs and
// differentiated; the host gathers Ŵ = LUT[index] before a run and scatter-adds ∂L/∂Ŵ into
// ∂L/∂LUT after it. That is the chain rule through the gather, done where it is a single pass over
// the weights, and it keeps one graph family for every method instead of a gather-parameterized
// copy of each linear layer.
import { LINEAR_MODULES } from '../../formats/hf-checkpoint.js';
import { type LlamaConfig, linearPath } from '../../model/llama/config.js';
import { sequentialPositions, type Feeds } from '../../model/llama/feeds.js';
import { buildTrainingGraph, gradName } from '../../model/llama/graph.js';
import { type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import * as nn from '../../onnx/index.js';
import { type SessionCache } from '../../onnx/session.js';
import { type Batch } from '../data.js';
import { type TrainModel } from '../model-step.js';
import { type BlockResult, replaceBlockwise } from './blockwise.js';
import { type Sketch, sketchIndices, sketchLinear, sketchParameters, sketchWeight } from './spallm-sketch.js';

export interface SketchModelOptions {
  config: LlamaConfig;
  /** Dense weights; not modified. */
  weights: WeightMap;
  /** Calibration token sequences, all of one length. */
  calibration: readonly (readonly number[])[];
  bits: number;
  groupsPerRow: number;
  /** Exponent of the k-means weights d_j^(−p). Default 3. */
  power?: number;
  cache: SessionCache;
  batch?: number;
  onLayer?: (layer: SketchLayerResult, layers: number) => void;
}

/** ‖Y_dense − Y_sketched‖_F / ‖Y_dense‖_F of a block's output, both from the same (sketched upstream) inputs. */
export type SketchLayerResult = BlockResult;

export interface SketchedModel {
  /** Every tensor of the model, the linear layers of the blocks replaced by their sketches' Ŵ. */
  weights: Map<string, WeightTensor>;
  /** Weight name (…q_proj.weight) → its sketch. */
  sketches: Map<string, Sketch>;
  layers: SketchLayerResult[];
  /** Lookup-table values over all sketched layers: what fine-tuning trains. */
  trainableParameters: number;
  /** Weights the sketches stand for. */
  sketchedWeights: number;
}

export async function sketchModel(opts: SketchModelOptions): Promise<SketchedModel> {
  const sketches = new Map<string, Sketch>();
  const { weights, blocks } = await replaceBlockwise({
    config: opts.config, weights: opts.weights, calibration: opts.calibration, cache: opts.cache, ...(opts.batch === undefined ? {} : { batch: opts.batch }),
    what: 'sketching',
    stats: () => 'gram',
    replace: ({ path, weight, rows, cols, stats }) => {
      const name = `${path}.weight`;
      const sketch = sketchLinear({ weight: weight.data, rows, cols, gram: stats as Float64Array, bits: opts.bits, groupsPerRow: opts.groupsPerRow, ...(opts.power === undefined ? {} : { power: opts.power }), name });
      sketches.set(name, sketch);
      return sketchWeight(sketch);
    },
    ...(opts.onLayer ? { onBlock: opts.onLayer } : {}),
  });
  let trainableParameters = 0;
  let sketchedWeights = 0;
  for (const s of sketches.values()) {
    trainableParameters += sketchParameters(s);
    sketchedWeights += s.rows * s.cols;
  }
  return { weights, sketches, layers: blocks, trainableParameters, sketchedWeights };
}

/** The lookup tables' parameter name for a sketched weight. */
export const lutName = (weightName: string): string => `${weightName.replace(/\.weight$/, '')}.lut`;

/**
 * A TrainModel over the sketches' lookup tables (named lutName(weight), shape [rows, groups,
 * 2^bits]); every other weight stays as `weights` holds it. The tables start from the sketches'
 * values and are updated in place by the optimizer; sketchesOf() reads them back.
 */
export async function createSketchTrainModel(opts: { config: LlamaConfig; weights: WeightMap; sketches: ReadonlyMap<string, Sketch>; cache: SessionCache }): Promise<TrainModel & { sketchesOf(): Map<string, Sketch> }> {
  const c = opts.config;
  const targets = [...opts.sketches.keys()];
  const params = new Map<string, Float32Array>();
  const shapes = new Map<string, readonly number[]>();
  const indices = new Map<string, Int32Array>();
  for (const [name, s] of opts.sketches) {
    params.set(lutName(name), Float32Array.from(s.lut));
    shapes.set(lutName(name), [s.rows, s.groupsPerRow, 1 << s.bits]);
    indices.set(name, Int32Array.from(sketchIndices(s), Number));
  }
  const graphOpts = { weights: opts.weights, feed: targets, lora: [], weightMasks: [], loraMasks: [] };
  const trainSession = await opts.cache.forGraph(buildTrainingGraph(c, { ...graphOpts, wrt: targets }).graph);
  const evalSession = await opts.cache.forGraph(buildTrainingGraph(c, { ...graphOpts, wrt: [] }).graph);

  const feeds = (batch: Batch, lossWeights: Float32Array): Feeds => {
    const f: Feeds = {
      input_ids: nn.tensor('int64', [batch.batch, batch.seqLen], batch.inputIds),
      position_ids: sequentialPositions(batch.batch, batch.seqLen),
      targets: nn.tensor('int64', [batch.batch, batch.seqLen], batch.targets),
      loss_weights: nn.tensor('float32', [batch.batch, batch.seqLen], lossWeights),
    };
    for (const name of targets) {
      const lut = params.get(lutName(name)) as Float32Array;
      const idx = indices.get(name) as Int32Array;
      const w = new Float32Array(idx.length);
      for (let i = 0; i < idx.length; i++) w[i] = lut[idx[i] as number] as number;
      f[name] = nn.tensor('float32', (opts.weights.get(name) as WeightTensor).shape, w);
    }
    return f;
  };
  const scalar = (t: nn.Tensor | undefined): number => Number((t?.data as Float32Array)[0]);
  return {
    params,
    shapes,
    noDecay: new Set(params.keys()),
    async lossAndGradients(batch, lossWeights) {
      const out = await trainSession.run(feeds(batch, lossWeights));
      const grads = new Map<string, Float32Array>();
      for (const name of targets) {
        const gw = out[gradName(name)]?.data as Float32Array;
        const idx = indices.get(name) as Int32Array;
        const g = new Float32Array((params.get(lutName(name)) as Float32Array).length);
        for (let i = 0; i < idx.length; i++) g[idx[i] as number] = (g[idx[i] as number] as number) + (gw[i] as number);
        grads.set(lutName(name), g);
      }
      return { loss: scalar(out.loss), grads };
    },
    async loss(batch, lossWeights) {
      return scalar((await evalSession.run(feeds(batch, lossWeights), ['loss'])).loss);
    },
    sketchesOf() {
      return new Map([...opts.sketches].map(([name, s]) => [name, { ...s, lut: Float32Array.from(params.get(lutName(name)) as Float32Array) }]));
    },
    async dispose() {
      await trainSession.dispose();
      await evalSession.dispose();
    },
  };
}

/** The sketched linear weights of every block, for checks: each is LUT[index] of its sketch. */
export function sketchedWeightNames(c: LlamaConfig): string[] {
  return Array.from({ length: c.numHiddenLayers }, (_, l) => LINEAR_MODULES.map((m) => `${linearPath(l, m)}.weight`)).flat();
}
