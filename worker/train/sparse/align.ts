// LORAM step 2, alignment (ALGORITHMS.md §4): continual pre-training of the pruned model on
// general text, every parameter trained but the LM head, so the pruned model's knowledge moves
// back toward the original's before the adapter is trained on it. With tied embeddings the LM
// head IS the embedding, which then stays frozen too. A sparse (semi / unstructured) model trains
// through weight masks, so its zeros stay zeros and it stays the pruned model.
import { type LlamaConfig } from '../../model/llama/config.js';
import { maskFeeds } from '../../model/llama/feeds.js';
import { EMBED, LM_HEAD, type WeightMap, type WeightTensor } from '../../model/llama/weights.js';
import { type SessionCache } from '../../onnx/session.js';
import { latestCheckpoint } from '../checkpoint.js';
import { type Progress, train, type TrainConfig } from '../loop.js';
import { createLlamaTrainModel, type TrainModel } from '../model-step.js';

export interface AlignOptions {
  config: LlamaConfig;
  /** The pruned model; not modified. */
  weights: WeightMap;
  /** General text, tokenized. */
  tokens: ArrayLike<number>;
  training: Partial<TrainConfig> & Pick<TrainConfig, 'steps' | 'sequenceLength'>;
  /** Module path → 0/1 mask of its weight ([out, in]): those weights train only where the mask is 1. */
  masks?: ReadonlyMap<string, Float32Array>;
  cache: SessionCache;
  /** Resume from the newest checkpoint under training.checkpointDir when there is one. Default true. */
  resume?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

export interface AlignResult {
  /** Every tensor of the pruned model, the trained ones replaced. */
  weights: Map<string, WeightTensor>;
  losses: number[];
  /** Stopped by the signal before its last step. */
  interrupted: boolean;
}

/** The weight alignment leaves alone: the LM head, which is the embedding when tied. */
export function frozenHead(c: LlamaConfig): string {
  return c.tieWordEmbeddings ? EMBED : LM_HEAD;
}

/**
 * `model` with the parameters in `frozen` neither updated nor checkpointed. They stay inputs of
 * the training graph (fed unchanged every step), so the graph still computes their gradients:
 * one vocab × hidden product per step, the price of reusing the full-model step as it is.
 */
export function freezeParams(model: TrainModel, frozen: ReadonlySet<string>): TrainModel {
  const params = new Map([...model.params].filter(([name]) => !frozen.has(name)));
  const drop = (grads: Map<string, Float32Array>): Map<string, Float32Array> => new Map([...grads].filter(([name]) => !frozen.has(name)));
  return {
    params,
    shapes: model.shapes,
    noDecay: model.noDecay,
    async lossAndGradients(batch, weights) {
      const r = await model.lossAndGradients(batch, weights);
      return { loss: r.loss, grads: drop(r.grads) };
    },
    loss: (batch, weights) => model.loss(batch, weights),
    dispose: () => model.dispose(),
  };
}

export async function alignModel(opts: AlignOptions): Promise<AlignResult> {
  const c = opts.config;
  const masks = opts.masks && opts.masks.size > 0 ? opts.masks : undefined;
  const maskTensors = masks ? new Map([...masks].map(([path, m]) => [path, { shape: (opts.weights.get(`${path}.weight`) as WeightTensor).shape, data: m }])) : undefined;
  const inner = await createLlamaTrainModel({
    config: c, weights: opts.weights, mode: 'full', cache: opts.cache, random: () => 0,
    ...(maskTensors ? { masks: { weightMasks: [...maskTensors.keys()], feeds: maskFeeds(maskTensors, 'weight') } } : {}),
  });
  const model = freezeParams(inner, new Set([frozenHead(c)]));
  try {
    const dir = opts.training.checkpointDir;
    const resumeFrom = dir && opts.resume !== false ? await latestCheckpoint(dir) : null;
    const run = await train({
      model, train: opts.tokens, config: opts.training, progressBar: false, ...(opts.signal ? { signal: opts.signal } : {}),
      ...(resumeFrom ? { resumeFrom } : {}), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
    const weights = new Map(opts.weights);
    for (const [name, p] of model.params) weights.set(name, { shape: (opts.weights.get(name) as WeightTensor).shape, data: Float32Array.from(p) });
    return { weights, losses: run.losses, interrupted: run.losses.length < opts.training.steps };
  } finally {
    await model.dispose();
  }
}
