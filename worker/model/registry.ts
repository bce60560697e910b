// model_type → architecture. Adding a model family is a registry row plus whatever config
// flags its graphs need, not a new model file per checkpoint flavour.
import { type LlamaConfig } from './llama/config.js';
import { type GraphOptions, type LlamaGraph, type TrainingGraphOptions } from './llama/graph.js';
import { llama } from './llama/index.js';
import { type WeightSpec, type WeightTensor } from './llama/weights.js';

export interface Architecture {
  name: string;
  weightSpecs(c: LlamaConfig): WeightSpec[];
  initWeights(c: LlamaConfig, normal: () => number, std?: number): Map<string, WeightTensor>;
  buildTrainingGraph(c: LlamaConfig, opts: TrainingGraphOptions): LlamaGraph;
  buildPrefillGraph(c: LlamaConfig, opts?: GraphOptions): LlamaGraph;
  buildDecodeGraph(c: LlamaConfig, opts?: GraphOptions): LlamaGraph;
}

const ARCHITECTURES: Readonly<Record<string, Architecture>> = {
  llama,
  mistral: llama, // sliding-window attention is not applied: identical for sequences within the window
  qwen2: llama, // q/k/v biases come from config.qkvBias
};

export const SUPPORTED_MODEL_TYPES = Object.keys(ARCHITECTURES);

export function architectureFor(modelType: string): Architecture {
  const a = ARCHITECTURES[modelType];
  if (!a) throw new Error(`unsupported model_type ${JSON.stringify(modelType)}: expected one of ${SUPPORTED_MODEL_TYPES.join(', ')}`);
  return a;
}
