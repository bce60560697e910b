// The walk every layer-wise compression of a whole model takes (pruning, GPTQ, SpaLLM's sketch):
// embed the calibration sequences, then for each block in order gather its linear layers' input
// statistics with the weights as they stand, replace the block's linear weights, and run the new
// block to get the next block's inputs. So block l is compressed on inputs that come through the
// already-compressed blocks before it, as the Wanda, SparseGPT and GPTQ reference code do.
// Embeddings, norms and the LM head are never touched.
import { LINEAR_MODULES, type LinearModule } from '../../formats/hf-checkpoint.js';
import { type LlamaConfig, linearPath, linearShape } from '../../model/llama/config.js';
import { EMBED, type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { type SessionCache } from '../../onnx/session.js';
import { BlockRunner, embedTokens, type StatsKind } from './calibration.js';

export interface LinearToReplace {
  layer: number;
  module: LinearModule;
  /** Module path, e.g. model.layers.0.self_attn.q_proj. */
  path: string;
  weight: WeightTensor;
  rows: number;
  cols: number;
  /** Calibration tokens the statistics sum over. */
  tokens: number;
  /** The statistics asked for (Σx² per column or XᵀX), undefined when the block asked for none. */
  stats: Float64Array | undefined;
}

export interface BlockResult {
  index: number;
  /** ‖Y_before − Y_after‖_F / ‖Y_before‖_F of the block's output on the same inputs. */
  reconstructionError: number;
}

export interface BlockwiseOptions {
  config: LlamaConfig;
  /** Not modified. */
  weights: WeightMap;
  /** Calibration token sequences, all of one length. */
  calibration: readonly (readonly number[])[];
  cache: SessionCache;
  /** Calibration sequences per session run. Default 8. */
  batch?: number;
  /** The compression's name for errors: "pruning", "quantization", "sketching". */
  what: string;
  /** The input statistics block `layer` needs ('none': its linear layers are only looked at). */
  stats: (layer: number) => StatsKind;
  /** The new weight of one linear layer (undefined keeps it); called for every linear layer of every block. */
  replace: (linear: LinearToReplace) => Float32Array | undefined;
  onBlock?: (block: BlockResult, layers: number) => void;
}

export async function replaceBlockwise(opts: BlockwiseOptions): Promise<{ weights: Map<string, WeightTensor>; blocks: BlockResult[] }> {
  const c = opts.config;
  const { calibration, what } = opts;
  const n = calibration.length;
  const t = calibration[0]?.length ?? 0;
  if (n === 0 || t === 0) throw new Error(`${what} needs at least one non-empty calibration sequence`);
  const embedding = opts.weights.get(EMBED);
  if (!embedding) throw new Error(`${what}: missing weight ${EMBED}`);
  for (const [s, seq] of calibration.entries()) {
    for (const id of seq) if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new Error(`calibration sequence ${s} has token ${id}: expected an id in [0, ${c.vocabSize})`);
  }
  const weights = new Map(opts.weights);
  const runner = new BlockRunner(c, opts.cache, t, opts.batch);
  let hidden = embedTokens(embedding, calibration, c.hiddenSize);
  const blocks: BlockResult[] = [];
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const kind = opts.stats(l);
    const before = await runner.run(l, weights, hidden, n, t, kind);
    const seen = new Set<LinearModule>();
    before.groups.forEach((modules, g) => {
      for (const module of modules) {
        seen.add(module);
        const path = linearPath(l, module);
        const weight = weights.get(`${path}.weight`) as WeightTensor;
        const [rows, cols] = linearShape(c, module);
        const data = opts.replace({ layer: l, module, path, weight, rows, cols, tokens: before.tokens, stats: kind === 'none' ? undefined : before.stats[g] });
        if (data) weights.set(`${path}.weight`, { shape: weight.shape, data });
      }
    });
    for (const m of LINEAR_MODULES) if (!seen.has(m)) throw new Error(`${what}: block ${l} recorded no input for ${m}`);
    const after = await runner.run(l, weights, hidden, n, t, 'none');
    const block = { index: l, reconstructionError: relativeError(before.hidden, after.hidden) };
    blocks.push(block);
    opts.onBlock?.(block, c.numHiddenLayers);
    hidden = after.hidden;
  }
  return { weights, blocks };
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
