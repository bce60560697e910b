// Assembly of the three graphs a Llama-family model runs as:
//   training — full sequences → weighted cross-entropy loss + gradients of the requested
//              parameters (fed as inputs, so one session serves every optimizer step);
//   prefill  — a prompt → logits of the last position + the K/V cache of every layer;
//   decode   — one new token per sequence + the cache (symbolic past length P) → logits +
//              the cache grown by one position.
// Each is one ORT session run: per-run overhead is per graph, not per layer.
import { gradients } from '../../autodiff/index.js';
import * as nn from '../../onnx/index.js';
import { blockSizes, layerWindow, type LlamaConfig, validateConfig } from './config.js';
import { attention, cacheWindowMask, causalMaskFromPositions, type KvCache, paddingMask } from './attention.js';
import { mlp } from './mlp.js';
import { LlamaParams, type ParamOptions } from './params.js';
import { rmsNorm } from './rmsnorm.js';
import { ropeAngles, type RopeAngles } from './rope.js';
import { EMBED, FINAL_NORM, LM_HEAD, weightSpecs } from './weights.js';

export interface GraphOptions extends ParamOptions {
  /** Rows of the RoPE tables; position_ids must stay below it. Default maxPositionEmbeddings. */
  maxPositions?: number;
}

export interface TrainingGraphOptions extends GraphOptions {
  /** Names of the inputs to differentiate: base weight names (fed automatically) and/or LoRA factor names. Empty: loss only (evaluation). */
  wrt: readonly string[];
  /** Also output logits [B, T, vocab] (tests, evaluation). */
  logits?: boolean;
}

export interface LlamaGraph {
  graph: nn.Graph;
  /** The differentiated inputs, in order; their gradients are outputs named gradName(name). */
  wrt: string[];
}

export const gradName = (name: string): string => `grad.${name}`;
export const presentName = (layer: number, which: 'key' | 'value'): string => `present.${layer}.${which}`;
export const pastName = (layer: number, which: 'key' | 'value'): string => `past.${layer}.${which}`;

/** The additive attention mask for a window (null: full causal attention). */
type MaskFor = (window: number | null) => nn.Value;

/** Builds each distinct window's mask once, on first use, so the layers that share a window share its nodes. */
function masksByWindow(build: MaskFor): MaskFor {
  const built = new Map<number | null, nn.Value>();
  return (window) => {
    let m = built.get(window);
    if (!m) built.set(window, (m = build(window)));
    return m;
  };
}

/**
 * Decoder block `l`: pre-norm attention, then pre-norm MLP, each added to the residual stream.
 * Exported so pruning can run one block alone on calibration hidden states.
 */
export function decoderBlock(p: LlamaParams, l: number, h: nn.Value, angles: RopeAngles, mask: nn.Value, past?: KvCache): { h: nn.Value; present: KvCache } {
  const c = p.config;
  const normed = rmsNorm(h, p.weight(`model.layers.${l}.input_layernorm.weight`), c.rmsNormEps);
  const att = attention(p, l, { x: normed, angles, mask, ...(past ? { past } : {}) });
  h = nn.add(h, att.y);
  h = nn.add(h, mlp(p, l, rmsNorm(h, p.weight(`model.layers.${l}.post_attention_layernorm.weight`), c.rmsNormEps)));
  return { h, present: att.present };
}

/** The decoder blocks between embedding and final norm; returns hidden states and each layer's K/V. */
function decoderStack(p: LlamaParams, h: nn.Value, angles: RopeAngles, maskFor: MaskFor, past?: KvCache[]): { h: nn.Value; present: KvCache[] } {
  const present: KvCache[] = [];
  for (let l = 0; l < p.config.numHiddenLayers; l++) {
    const block = decoderBlock(p, l, h, angles, maskFor(layerWindow(p.config, l)), past?.[l]);
    h = block.h;
    present.push(block.present);
  }
  return { h, present };
}

/** Final norm and LM head (the embedding matrix when tied). */
function lmHead(p: LlamaParams, h: nn.Value): nn.Value {
  const c = p.config;
  const head = p.weight(c.tieWordEmbeddings ? EMBED : LM_HEAD);
  return nn.matmul(rmsNorm(h, p.weight(FINAL_NORM), c.rmsNormEps), nn.transpose(head, [1, 0]));
}

function tokenInputs(g: nn.Graph, t: number | string): { ids: nn.Value; positions: nn.Value } {
  return { ids: g.input('input_ids', 'int64', ['B', t]), positions: g.input('position_ids', 'int64', ['B', t]) };
}

function positionsLimit(c: LlamaConfig, opts: GraphOptions): number {
  const n = opts.maxPositions ?? c.maxPositionEmbeddings;
  if (!Number.isInteger(n) || n <= 0) throw new Error(`maxPositions must be a positive integer, got ${n}`);
  return n;
}

/**
 * Inputs: input_ids, position_ids, targets [B, T] int64 and loss_weights [B, T] float32.
 * Output `loss` = −Σ w·log p(target) (feed w = mask / number of counted tokens for a mean);
 * outputs gradName(n) for each n in `wrt`.
 */
export function buildTrainingGraph(c: LlamaConfig, opts: TrainingGraphOptions): LlamaGraph {
  validateConfig(c);
  const baseNames = new Set(weightSpecs(c).map((s) => s.name));
  const fedBase = opts.wrt.filter((n) => baseNames.has(n));
  const feed = opts.feed === 'all' ? 'all' : [...new Set([...(opts.feed ?? []), ...fedBase])];
  const g = new nn.Graph('llama_train');
  const p = new LlamaParams(g, c, { ...opts, feed });
  const { ids, positions } = tokenInputs(g, 'T');
  const targets = g.input('targets', 'int64', ['B', 'T']);
  const weights = g.input('loss_weights', 'float32', ['B', 'T']);

  const angles = ropeAngles(g, c, positions, positionsLimit(c, opts));
  const { h } = decoderStack(p, nn.gather(p.weight(EMBED), ids, 0), angles, masksByWindow((w) => causalMaskFromPositions(g, positions, w)));
  const logits = lmHead(p, h);
  const logProb = nn.reduceSum(nn.mul(nn.logSoftmax(logits, -1), nn.oneHot(targets, c.vocabSize, 'float32')), [-1]);
  const loss = nn.neg(nn.reduceSum(nn.mul(logProb, weights)));
  g.output(loss, 'loss');
  if (opts.logits) g.output(logits, 'logits');

  const params = opts.wrt.map((name) => {
    const v = g.inputs.find((x) => x.name === name);
    if (!v) throw new Error(`training graph: wrt names ${name}, which is not an input: expected a weight name or a LoRA factor of a module listed in lora`);
    return v;
  });
  if (params.length > 0) gradients(loss, params).forEach((grad, i) => g.output(grad, gradName(opts.wrt[i] as string)));
  return { graph: g, wrt: [...opts.wrt] };
}

/**
 * Inputs: input_ids, position_ids, attention_mask [B, T] int64 (left padding).
 * Outputs: logits [B, vocab] of the last position; presentName(l, key|value) [B, kvHeads, T, headDim].
 */
export function buildPrefillGraph(c: LlamaConfig, opts: GraphOptions = {}): LlamaGraph {
  validateConfig(c);
  const g = new nn.Graph('llama_prefill');
  const p = new LlamaParams(g, c, opts);
  const { ids, positions } = tokenInputs(g, 'T');
  const attentionMask = g.input('attention_mask', 'int64', ['B', 'T']);
  const padding = paddingMask(attentionMask);
  const maskFor = masksByWindow((w) => nn.add(causalMaskFromPositions(g, positions, w), padding));
  const angles = ropeAngles(g, c, positions, positionsLimit(c, opts));
  const { h, present } = decoderStack(p, nn.gather(p.weight(EMBED), ids, 0), angles, maskFor);
  const last = nn.gather(h, g.constant('int64', [], [-1]), 1); // [B, hidden]
  g.output(lmHead(p, last), 'logits');
  outputCache(g, present);
  return { graph: g, wrt: [] };
}

/**
 * Inputs: input_ids, position_ids [B, 1]; attention_mask [B, P+1] over cache and new token;
 * pastName(l, key|value) [B, kvHeads, P, headDim]. Outputs: logits [B, vocab] and
 * presentName(l, …) [B, kvHeads, P+1, headDim]. All past entries precede the new token, so
 * only padding needs masking, and in sliding-window layers the entries older than the window.
 * The cache keeps every position (as transformers' DynamicCache does); the window only masks.
 */
export function buildDecodeGraph(c: LlamaConfig, opts: GraphOptions = {}): LlamaGraph {
  validateConfig(c);
  const g = new nn.Graph('llama_decode');
  const p = new LlamaParams(g, c, opts);
  const { ids, positions } = tokenInputs(g, 1);
  const past: KvCache[] = [];
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const shape = ['B', blockSizes(c, l).numKeyValueHeads, 'P', c.headDim];
    past.push({ key: g.input(pastName(l, 'key'), 'float32', shape), value: g.input(pastName(l, 'value'), 'float32', shape) });
  }
  // 'P+1' is the symbol Concat gives the grown cache axis, so the mask broadcasts against it.
  const attentionMask = g.input('attention_mask', 'int64', ['B', 'P+1']);
  const angles = ropeAngles(g, c, positions, positionsLimit(c, opts));
  const padding = paddingMask(attentionMask);
  const maskFor = masksByWindow((w) => (w === null ? padding : nn.add(padding, cacheWindowMask(g, attentionMask, w))));
  const { h, present } = decoderStack(p, nn.gather(p.weight(EMBED), ids, 0), angles, maskFor, past);
  g.output(lmHead(p, nn.squeeze(h, [1])), 'logits');
  outputCache(g, present);
  return { graph: g, wrt: [] };
}

function outputCache(g: nn.Graph, present: readonly KvCache[]): void {
  present.forEach((kv, l) => {
    g.output(kv.key, presentName(l, 'key'));
    g.output(kv.value, presentName(l, 'value'));
  });
}
