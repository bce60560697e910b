// LORAM recovery (ALGORITHMS.md §4, step 4): an adapter trained on the structurally pruned model
// becomes an adapter of the ORIGINAL model's shapes, so W* = W₀ + s·Bᴿ·Aᴿ runs on the full model.
//   output dimension pruned (q/k/v heads, gate/up neurons): Bᴿ[kept rows] = Bᴾ, zero rows elsewhere,
//     A unchanged — a pruned unit's output gets no update;
//   input dimension pruned (o_proj channels, down_proj neurons): Aᴿ[:, kept cols] = Aᴾ, B unchanged;
//     the other columns are zero (the paper's recovery), or N(0, (1/8)²) with prunedInputs 'normal';
//   blocks kept whole: the factors as trained.
// A KV head h maps to q and o channels [h·g·hd, (h+1)·g·hd) (structured.ts keptIndices).
import { type LinearModule, LINEAR_MODULES } from '../../formats/hf-checkpoint.js';
import { type LlamaConfig, linearShape } from '../../model/llama/config.js';
import { type LoraModuleWeights, type LoraWeights } from '../../model/llama/feeds.js';
import { keptIndices, type StructuredPlan } from './structured.js';

export interface RecoverOptions {
  /** What the pruned columns of an input-pruned module's A get: 'zeros' (default) or 'normal', N(0, (1/8)²). */
  prunedInputs?: 'zeros' | 'normal';
  /** Standard normal samples for 'normal'. */
  normal?: () => number;
}

/** Std of the 'normal' fill of pruned input columns: the flag the LORAM authors name. */
export const PRUNED_INPUT_STD = 1 / 8;

const MODULE_PATH = /^model\.layers\.(\d+)\.(?:self_attn|mlp)\.([a-z_]+)$/;

/** Layer and module of a linear module path, e.g. model.layers.3.mlp.down_proj → [3, down_proj]. */
export function parseLinearPath(path: string): { layer: number; module: LinearModule } {
  const m = MODULE_PATH.exec(path);
  if (!m || !(LINEAR_MODULES as readonly string[]).includes(m[2] as string)) throw new Error(`not a linear module path: ${path} (expected e.g. model.layers.0.self_attn.q_proj)`);
  return { layer: Number(m[1]), module: m[2] as LinearModule };
}

/**
 * The adapter `pruned` (trained on the model `plan` cut from `original`) in the original model's
 * shapes. Every trained entry lands at its original row or column; nothing else is nonzero
 * unless prunedInputs is 'normal'.
 */
export function recoverStructured(original: LlamaConfig, plan: StructuredPlan, pruned: LoraWeights, opts: RecoverOptions = {}): Map<string, LoraModuleWeights> {
  const fill = opts.prunedInputs ?? 'zeros';
  if (fill === 'normal' && !opts.normal) throw new Error('recovery with prunedInputs normal needs a normal sampler');
  const out = new Map<string, LoraModuleWeights>();
  for (const [path, m] of pruned) {
    const { layer, module } = parseLinearPath(path);
    if (layer >= original.numHiddenLayers) throw new Error(`adapter module ${path}: the original model has ${original.numHiddenLayers} layers`);
    const kept = plan[layer] ?? null;
    const [outF, inF] = linearShape(original, module);
    const r = m.A.shape[0] as number;
    const { rows, cols } = kept ? keptIndices(original, kept, module) : { rows: null, cols: null };
    const expectB = [rows?.length ?? outF, r];
    const expectA = [r, cols?.length ?? inF];
    if (m.B.shape[0] !== expectB[0] || m.B.shape[1] !== r || m.A.shape[1] !== expectA[1]) {
      throw new Error(`adapter module ${path}: B is [${m.B.shape.join(',')}] and A [${m.A.shape.join(',')}], expected [${expectB.join(',')}] and [${expectA.join(',')}] for the pruned block`);
    }
    let B = m.B.data;
    if (rows) {
      B = new Float32Array(outF * r);
      rows.forEach((row, i) => B.set(m.B.data.subarray(i * r, (i + 1) * r), row * r));
    }
    let A = m.A.data;
    if (cols) {
      A = new Float32Array(r * inF);
      if (fill === 'normal') {
        const normal = opts.normal as () => number;
        for (let i = 0; i < A.length; i++) A[i] = normal() * PRUNED_INPUT_STD;
      }
      const kc = cols.length;
      for (let k = 0; k < r; k++) cols.forEach((col, j) => (A[k * inF + col] = m.A.data[k * kc + j] as number));
    }
    out.set(path, { A: { shape: [r, inF], data: Float32Array.from(A) }, B: { shape: [outF, r], data: Float32Array.from(B) }, scaling: m.scaling });
  }
  return out;
}
