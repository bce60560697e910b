// GPTQ over a whole (pruned) model, block by block as pruneModel goes: the calibration sequences
// are embedded; for each block in order, XᵀX of its linear layers' inputs with its own (pruned,
// not yet quantized) weights, GPTQ on every linear layer, then the quantized block gives the next
// block's inputs — as the GPTQ reference quantizes a model sequentially. Embeddings, norms and the
// LM head stay float. The group size is clamped to a layer's input count (a tiny model's rows are
// shorter than 128), and the clamp is reported.
import { LINEAR_MODULES } from '../../formats/hf-checkpoint.js';
import { type LlamaConfig, linearPath, linearShape } from '../../model/llama/config.js';
import { EMBED, type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { type SessionCache } from '../../onnx/session.js';
import { BlockRunner, embedTokens } from './calibration.js';
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
  const c = opts.config;
  checkQuantSettings(opts);
  const { calibration } = opts;
  const n = calibration.length;
  const t = calibration[0]?.length ?? 0;
  if (n === 0 || t === 0) throw new Error('quantization needs at least one non-empty calibration sequence');
  const embedding = opts.weights.get(EMBED);
  if (!embedding) throw new Error(`quantization: missing weight ${EMBED}`);
  const weights = new Map(opts.weights);
  const linears = new Map<string, QuantizedLinear>();
  const clamped = new Map<string, number>();
  const runner = new BlockRunner(c, opts.cache, t, opts.batch);
  let hidden = embedTokens(embedding, calibration, c.hiddenSize);
  const layers: QuantizedModel['layers'] = [];
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const before = await runner.run(l, weights, hidden, n, t, 'gram');
    before.groups.forEach((modules, g) => {
      const gram = before.stats[g] as Float64Array;
      for (const m of modules) {
        const path = linearPath(l, m);
        const w = weights.get(`${path}.weight`) as WeightTensor;
        const [rows, cols] = linearShape(c, m);
        const groupSize = Math.min(opts.groupSize, cols);
        if (groupSize < opts.groupSize) clamped.set(path, groupSize);
        const keep = opts.keep?.get(path);
        const q = gptq({ weight: w.data, rows, cols, gram, bits: opts.bits, groupSize, name: path, ...(keep ? { keep } : {}) });
        const { weight, ...grid } = q;
        linears.set(path, grid);
        weights.set(`${path}.weight`, { shape: w.shape, data: weight });
      }
    });
    const after = await runner.run(l, weights, hidden, n, t, 'none');
    const layer = { index: l, reconstructionError: relativeError(before.hidden, after.hidden) };
    layers.push(layer);
    opts.onLayer?.(layer, c.numHiddenLayers);
    hidden = after.hidden;
  }
  for (const m of LINEAR_MODULES) if (!linears.has(linearPath(0, m))) throw new Error(`quantization: block 0 recorded no input for ${m}`);
  return { weights, linears, layers, clamped };
}

function relativeError(reference: Float32Array, other: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i] as number;
    num += (r - (other[i] as number)) ** 2;
    den += r * r;
  }
  return den > 0 ? Math.sqrt(num / den) : 0;
}
