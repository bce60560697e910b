// Per-row adapter branches for serving many adapters in one batch: each row of [B, T, in]
// names its own adapter by a slot index (−1 = none, which selects the all-zero last slot of
// every stack, so base-model rows need no special case). Two forms:
//
//   jd     — the JD serving form y += norm_i·U_c Σ_i V_cᵀ x, with the clusters of every bundle
//            concatenated along K = C·R: one dense x·V_all over the whole batch, a per-row mask
//            keeps the row's cluster's R columns, a fold matrix F [K, R] (stacked identities)
//            sums them down to R, the per-row Σ̃_i = norm_i·Σ_iᵀ (gathered, r×r) mixes them,
//            Fᵀ and the mask spread the result back to the cluster's columns, and one dense
//            ·U_all gives the update. Only the r×r Σ̃_i is gathered per row.
//   gather — uncompressed LoRA as vLLM/S-LoRA batch it: stacked Aᵀ [N, in, R] and s·Bᵀ
//            [N, R, out], gathered per row (Punica's BGMV as two batched MatMuls).
//
// Ranks and counts are symbolic dims, so one session serves every adapter set with the same
// modules; lower ranks are zero-padded to the module's R, which is exact.
import * as nn from '../../onnx/index.js';
import { type LlamaParams } from './params.js';

export interface MultiLoraOptions {
  /** Linear module paths with a JD branch. */
  jd?: readonly string[];
  /** Linear module paths with a gathered-LoRA branch. */
  gather?: readonly string[];
}

/** The per-row inputs, int64 [B]: a JD slot and its cluster, and a gathered-LoRA slot (−1: none). */
export const MULTI_LORA_ROWS = { jdSlot: 'lora.jd_slot', jdCluster: 'lora.jd_cluster', gatherSlot: 'lora.gather_slot' } as const;

/**
 * Inputs of a module's JD branch: V [in, K] and U [K, out] (every cluster's basis side by side,
 * K = clusters·R), fold [K, R], columns int64 [K] (the cluster of each column), sigma
 * [N + 1, R, R] (norm_i·Σ_iᵀ per adapter, the last one zero).
 */
export function jdInputNames(path: string): { V: string; U: string; fold: string; columns: string; sigma: string } {
  return { V: `${path}.jd.V`, U: `${path}.jd.U`, fold: `${path}.jd.fold`, columns: `${path}.jd.columns`, sigma: `${path}.jd.sigma` };
}

/** Inputs of a module's gathered-LoRA branch: A [N + 1, in, R] (Aᵀ per adapter) and B [N + 1, R, out] (s·Bᵀ), the last slot zero. */
export function gatherInputNames(path: string): { A: string; B: string } {
  return { A: `${path}.gather.A`, B: `${path}.gather.B` };
}

/** The update every per-row branch of `path` adds to x·Wᵀ, or none. */
export function multiLoraDeltas(p: LlamaParams, path: string, x: nn.Value): nn.Value[] {
  const out: nn.Value[] = [];
  const jd = p.jdBranch(path);
  if (jd) {
    const rows = nn.cast(nn.equal(nn.unsqueeze(p.rowInput(MULTI_LORA_ROWS.jdCluster), [1]), jd.columns), 'float32'); // [B, K]
    const mask = nn.unsqueeze(rows, [1]); // [B, 1, K]
    const z = nn.matmul(nn.mul(nn.matmul(x, jd.V), mask), jd.fold); // [B, T, R]
    const mixed = nn.matmul(z, nn.gather(jd.sigma, p.rowInput(MULTI_LORA_ROWS.jdSlot), 0)); // [B, T, R]
    const spread = nn.mul(nn.matmul(mixed, nn.transpose(jd.fold, [1, 0])), mask); // [B, T, K]
    out.push(nn.matmul(spread, jd.U));
  }
  const gathered = p.gatherBranch(path);
  if (gathered) {
    const slot = p.rowInput(MULTI_LORA_ROWS.gatherSlot);
    const down = nn.matmul(x, nn.gather(gathered.A, slot, 0)); // [B, T, R]
    out.push(nn.matmul(down, nn.gather(gathered.B, slot, 0)));
  }
  return out;
}
