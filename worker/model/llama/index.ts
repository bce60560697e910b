// The Llama architecture, as used by llama, mistral and qwen2 checkpoints: the graphs read
// every difference between them (biases, rope scaling, tied embeddings) from the config.
import { type Architecture } from '../registry.js';
import { buildDecodeGraph, buildPrefillGraph, buildTrainingGraph } from './graph.js';
import { initWeights, weightSpecs } from './weights.js';

export const llama: Architecture = { name: 'llama', weightSpecs, initWeights, buildTrainingGraph, buildPrefillGraph, buildDecodeGraph };

export * from './config.js';
export * from './feeds.js';
export * from './graph.js';
export { gatherInputNames, jdInputNames, MULTI_LORA_ROWS, type MultiLoraOptions } from './multi-lora.js';
export { loraInputNames, loraMaskName, weightMaskName } from './params.js';
export * from './weights.js';
