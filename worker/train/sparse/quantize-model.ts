// GPTQ over a whole (pruned) model on the walk of blockwise.ts, as pruneModel goes: each block's
// linear layers are quantized on XᵀX of inputs that come through the already-quantized blocks
// before it, as the GPTQ reference quantizes a model sequentially. Embeddings, norms and the
// LM head stay float. The group size is clamped to a layer's input count (a tiny model's rows are
// shorter than 128), and the clamp is reported.
import { type LlamaConfig } from '../../model/llama/config.js';
import { type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { type SessionCache } from '../../onnx/session.js';
import { replaceBlockwise } from './blockwise.js';
import { checkQuantSettings, gptq, type QuantizedLinear, type QuantSettings } from './gptq.js';

export interface QuantizeModelOptions extends QuantSettings {
  config: LlamaConfig;
  /** The (pruned) weights; not modified. */
  weights: WeightMap;
  /** Module path → 0 where pruned: those entries stay exactly 0. Absent modules keep every entry. */
  keep?: ReadonlyMap<string, ArrayLike<number>>;
  calibration: readonly (readonly number[])[];
  cache: SessionCache;
  batch?: number;
  onLayer?: (layer: { index: number; reconstructionError: number }, layers: number) => void;
}

export interface QuantizedModel {
  /** Every tensor of the model: the linear weights dequantized from their codes, the rest shared. */
  weights: Map<string, WeightTensor>;
  /** Module path → its codes and grid. */
  linears: Map<string, QuantizedLinear>;
  /** Per block: ‖Y_pruned − Y_quantized‖_F / ‖Y_pruned‖_F of its output on the same inputs. */
  layers: { index: number; reconstructionError: number }[];
  /** Group sizes clamped to a layer's input count: module → the size used. */
  clamped: Map<string, number>;
}

export async function quantizeModel(opts: QuantizeModelOptions): Promise<QuantizedModel> {
  checkQuantSettings(opts);
  const linears = new Map<string, QuantizedLinear>();
  const clamped = new Map<string, number>();
  const { weights, blocks } = await replaceBlockwise({
    config: opts.config, weights: opts.weights, calibration: opts.calibration, cache: opts.cache, ...(opts.batch === undefined ? {} : { batch: opts.batch }),
    what: 'quantization',
    stats: () => 'gram',
    replace: ({ path, weight: w, rows, cols, stats }) => {
      const groupSize = Math.min(opts.groupSize, cols);
      if (groupSize < opts.groupSize) clamped.set(path, groupSize);
      const keep = opts.keep?.get(path);
      const { weight, ...grid } = gptq({ weight: w.data, rows, cols, gram: stats as Float64Array, bits: opts.bits, groupSize, name: path, ...(keep ? { keep } : {}) });
      linears.set(path, grid);
      return weight;
    },
    ...(opts.onLayer ? { onBlock: opts.onLayer } : {}),
  });
  return { weights, linears, layers: blocks, clamped };
}
