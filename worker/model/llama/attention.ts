// Causal grouped-query self-attention. Query heads are laid out [B, kvHeads, group, T, hd]
// so each key/value head broadcasts over its group in the MatMul: no repeat_kv copy, and the
// MatMul gradient sums the group back onto the shared head.
//
// Masks are additive and built from inputs, never from a fixed T:
//   causal  — key position > query position (position_ids), so one session serves any T;
//   window  — (sliding-window layers) key position ≤ query position − window, as transformers'
//             sliding_window_overlay: a query sees itself and the window − 1 positions before it;
//   padding — attention_mask 0 entries (HF convention, left padding for batches).
import * as nn from '../../onnx/index.js';
import { blockSizes, type LlamaConfig } from './config.js';
import { linear } from './lora.js';
import { type LlamaParams } from './params.js';
import { applyRope, type RopeAngles } from './rope.js';

/** Large but finite, so a fully masked (padding) row gives a uniform softmax, not NaN. */
const MASKED = -1e9;

export interface KvCache {
  /** [B, kvHeads, S, headDim], keys after RoPE (the layout of HF's DynamicCache). */
  key: nn.Value;
  value: nn.Value;
}

/**
 * Additive mask [B, 1, 1, T, T]: MASKED where the key comes after the query and, given a
 * window, where it lies `window` or more positions before it.
 */
export function causalMaskFromPositions(g: nn.Graph, positionIds: nn.Value, window: number | null = null): nn.Value {
  const q = nn.unsqueeze(positionIds, [1, 2, 4]);
  const k = nn.unsqueeze(positionIds, [1, 2, 3]);
  const masked = g.scalar(MASKED, 'float32');
  const causal = nn.where(nn.greater(k, q), masked, 0);
  if (window === null) return causal;
  return nn.where(nn.greater(nn.sub(q, k), window - 1), masked, causal);
}

/**
 * Additive window mask [S] for one new token over a K/V cache of S slots (past + the token,
 * which sits in the last slot): MASKED on the slots `window` or more before it. Slots count
 * positions because every row's tokens are contiguous at the end of the cache (left padding,
 * as prefillFeeds and generate lay them out; transformers' cache_position makes the same
 * assumption), so padding slots are left to the padding mask.
 */
export function cacheWindowMask(g: nn.Graph, attentionMask: nn.Value, window: number): nn.Value {
  const slots = attentionMask.shape[1];
  if (slots === undefined) throw new Error(`cacheWindowMask: attention_mask ${attentionMask} must be [B, S]`);
  const width = nn.gather(nn.shapeOf(attentionMask), g.constant('int64', [], [1]), 0);
  const slot = nn.arange(width, slots);
  return nn.where(nn.less(nn.add(slot, window), width), g.scalar(MASKED, 'float32'), 0);
}

/** Additive mask [B, 1, 1, 1, S] from an int64 attention_mask [B, S] of 1 (attend) and 0 (padding). */
export function paddingMask(attentionMask: nn.Value): nn.Value {
  const m = nn.cast(attentionMask, 'float32');
  return nn.unsqueeze(nn.mul(nn.sub(1, m), MASKED), [1, 2, 3]);
}

export interface AttentionInputs {
  x: nn.Value; // [B, T, hidden], already normalized
  angles: RopeAngles;
  /** Additive mask broadcastable to [B, kvHeads, group, T, S]. */
  mask: nn.Value;
  /** Cached keys/values of earlier positions; absent for a full sequence. */
  past?: KvCache;
}

export interface AttentionOutputs {
  y: nn.Value; // [B, T, hidden]
  /** Keys/values of every position attended to (past + new), to cache for the next step. */
  present: KvCache;
}

export function attention(p: LlamaParams, layer: number, inp: AttentionInputs): AttentionOutputs {
  const c: LlamaConfig = p.config;
  const hd = c.headDim;
  const sizes = blockSizes(c, layer);
  const heads = sizes.numAttentionHeads;
  const kvHeads = sizes.numKeyValueHeads;
  const group = heads / kvHeads;
  const path = (m: string): string => `model.layers.${layer}.self_attn.${m}`;

  const q = applyRope(nn.reshape(linear(p, path('q_proj'), inp.x), [0, 0, heads, hd]), inp.angles, hd);
  const k = applyRope(nn.reshape(linear(p, path('k_proj'), inp.x), [0, 0, kvHeads, hd]), inp.angles, hd);
  const v = nn.reshape(linear(p, path('v_proj'), inp.x), [0, 0, kvHeads, hd]);

  let keys = nn.transpose(k, [0, 2, 1, 3]); // [B, kvH, T, hd]
  let values = nn.transpose(v, [0, 2, 1, 3]);
  if (inp.past) {
    keys = nn.concat([inp.past.key, keys], 2);
    values = nn.concat([inp.past.value, values], 2);
  }

  // [B, T, H, hd] → [B, T, kvH, group, hd] → [B, kvH, group, T, hd]; scaled before the product.
  const qg = nn.transpose(nn.reshape(nn.mul(q, 1 / Math.sqrt(hd)), [0, 0, kvHeads, group, hd]), [0, 2, 3, 1, 4]);
  let raw: nn.Value; // [B, kvH, group, T, S]
  if (inp.past) {
    // With a cache, K·qᵀ reads the keys in their own layout; q·Kᵀ would transpose (copy) the
    // whole cache at every decode step, while transposing q and the scores touches only T rows.
    raw = nn.transpose(nn.matmul(nn.unsqueeze(keys, [2]), nn.transpose(qg, [0, 1, 2, 4, 3])), [0, 1, 2, 4, 3]);
  } else {
    raw = nn.matmul(qg, nn.unsqueeze(nn.transpose(keys, [0, 1, 3, 2]), [2])); // × [B, kvH, 1, hd, S]
  }
  const scores = nn.add(raw, inp.mask); // [B, kvH, group, T, S]
  const probs = nn.softmax(scores, -1);
  const out = nn.matmul(probs, nn.unsqueeze(values, [2])); // [B, kvH, group, T, hd]
  const merged = nn.reshape(nn.transpose(out, [0, 3, 1, 2, 4]), [0, 0, -1]); // [B, T, H·hd]
  return { y: linear(p, path('o_proj'), merged), present: { key: keys, value: values } };
}
