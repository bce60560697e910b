// PEFT LoRA adapters on disk: adapter_config.json + adapter_model.safetensors with keys
// base_model.model.<module path>.lora_A.weight ([r, in]) and .lora_B.weight ([out, r]).
// In memory they are a LoraAdapter: float32 A/B per module with rank, alpha and scaling.

import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { fileExists, readJsonFile, writeJsonAtomic } from './atomic-file.js';
import { LINEAR_MODULES, linearModulePath, linearShape, type LinearModule } from './hf-checkpoint.js';
import type { LlamaFamilyConfig } from './hf-config.js';
import { moduleHyper, parseLoraConfig, targetsModule, toLoraConfigJson, type LoraConfig } from './peft-config.js';
import { SafetensorsReader, writeSafetensors } from './safetensors.js';
import { fromFloat32, shapeToString, toF32Tensor, type F32Tensor, type FloatDType, type Tensor } from './tensor.js';

export * from './peft-config.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export interface LoraModule {
  /** Module path in the base model, e.g. model.layers.0.self_attn.q_proj. */
  name: string;
  /** [rank, inFeatures] */
  A: F32Tensor;
  /** [outFeatures, rank] */
  B: F32Tensor;
  rank: number;
  alpha: number;
  /** Multiplier of B·A in the forward pass: alpha/rank, or alpha/sqrt(rank) with rsLoRA. */
  scaling: number;
}

export interface LoraAdapter {
  config: LoraConfig;
  modules: Map<string, LoraModule>;
}

const KEY = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/;

export function loraKey(modulePath: string, which: 'A' | 'B'): string {
  return `base_model.model.${modulePath}.lora_${which}.weight`;
}

/**
 * Assemble an adapter from A/B pairs, taking each module's rank/alpha/scaling from the
 * config, and checking that A and B agree with each other and with that rank.
 */
export function buildLoraAdapter(config: LoraConfig, pairs: Iterable<{ name: string; A: F32Tensor; B: F32Tensor }>, where = 'adapter'): LoraAdapter {
  const modules = new Map<string, LoraModule>();
  for (const { name, A, B } of pairs) {
    const fail = (msg: string): never => {
      throw new Error(`${where}: module ${name}: ${msg}`);
    };
    if (A.shape.length !== 2 || B.shape.length !== 2) fail(`lora_A ${shapeToString(A.shape)} and lora_B ${shapeToString(B.shape)} must both be 2-D`);
    const [rank] = A.shape as [number, number];
    if (B.shape[1] !== rank) fail(`lora_A is ${shapeToString(A.shape)} but lora_B is ${shapeToString(B.shape)}: B's second dimension must equal A's rank ${rank}`);
    const hyper = moduleHyper(config, name);
    if (hyper.rank !== rank) {
      fail(`rank ${rank} in the weights but adapter_config.json gives ${hyper.rank} (r or rank_pattern)`);
    }
    if (!targetsModule(config, name)) {
      fail(`not selected by target_modules ${JSON.stringify(config.targetModules)}`);
    }
    if (modules.has(name)) fail('appears twice');
    modules.set(name, { name, A, B, ...hyper });
  }
  if (modules.size === 0) throw new Error(`${where}: adapter has no LoRA modules`);
  return { config, modules };
}

/** Read an adapter directory (all tensors: adapters are small), decoded to float32. */
export async function loadLoraAdapter(dir: string): Promise<LoraAdapter> {
  const configPath = join(dir, ADAPTER_CONFIG);
  const weightsPath = join(dir, ADAPTER_WEIGHTS);
  const config = parseLoraConfig(await readJsonFile(configPath), configPath);
  if (!(await fileExists(weightsPath))) {
    const bin = join(dir, 'adapter_model.bin');
    if (await fileExists(bin)) {
      throw new Error(`${bin}: PyTorch pickle adapters are not supported, only ${ADAPTER_WEIGHTS} (convert with safetensors.torch.save_file)`);
    }
    throw new Error(`${weightsPath}: file not found`);
  }
  const reader = await SafetensorsReader.open(weightsPath);
  try {
    const parts = new Map<string, { A?: F32Tensor; B?: F32Tensor }>();
    for (const key of reader.names) {
      const m = KEY.exec(key);
      if (!m) {
        throw new Error(`${weightsPath}: tensor ${key} is not a LoRA weight (expected base_model.model.<module>.lora_A.weight or .lora_B.weight; embeddings, DoRA and modules_to_save are not supported)`);
      }
      const [, module, which] = m as unknown as [string, string, 'A' | 'B'];
      const entry = parts.get(module) ?? {};
      entry[which] = toF32Tensor(await reader.read(key), `${weightsPath}: tensor ${key}`);
      parts.set(module, entry);
    }
    const pairs = [...parts].map(([name, { A, B }]) => {
      if (!A || !B) throw new Error(`${weightsPath}: module ${name} has ${A ? 'lora_A' : 'lora_B'} but no ${A ? 'lora_B' : 'lora_A'} (missing tensor ${loraKey(name, A ? 'B' : 'A')})`);
      return { name, A, B };
    });
    return buildLoraAdapter(config, pairs, weightsPath);
  } finally {
    await reader.close();
  }
}

/** Write adapter_config.json and adapter_model.safetensors (float32 unless dtype says otherwise). */
export async function saveLoraAdapter(dir: string, adapter: LoraAdapter, dtype: FloatDType = 'F32'): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  const tensors: Array<[string, Tensor]> = [];
  for (const m of adapter.modules.values()) {
    tensors.push([loraKey(m.name, 'A'), fromFloat32(m.A.data, m.A.shape, dtype)]);
    tensors.push([loraKey(m.name, 'B'), fromFloat32(m.B.data, m.B.shape, dtype)]);
  }
  await writeSafetensors(join(dir, ADAPTER_WEIGHTS), tensors, { format: 'pt' });
  await writeJsonAtomic(join(dir, ADAPTER_CONFIG), toLoraConfigJson(adapter.config));
}

const MODULE_PATH = /^model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)$/;

/**
 * Check an adapter against the base model it will be applied to: every module is a linear
 * layer of that architecture, and A is [rank, in], B is [out, rank] for its features.
 */
export function validateAdapterForBase(adapter: LoraAdapter, base: LlamaFamilyConfig, where = 'adapter'): void {
  if (adapter.config.fanInFanOut) {
    throw new Error(`${where}: fan_in_fan_out is true, which is for GPT-2 Conv1D layers; Llama-family linear layers need false`);
  }
  const problems: string[] = [];
  for (const m of adapter.modules.values()) {
    const match = MODULE_PATH.exec(m.name);
    const layer = Number(match?.[1]);
    const proj = match?.[2] as LinearModule | undefined;
    if (!proj || !LINEAR_MODULES.includes(proj) || m.name !== linearModulePath(layer, proj)) {
      problems.push(`module ${m.name} is not a linear layer of a ${base.modelType} model (expected model.layers.N.self_attn.{q,k,v,o}_proj or model.layers.N.mlp.{gate,up,down}_proj)`);
      continue;
    }
    if (layer >= base.numHiddenLayers) {
      problems.push(`module ${m.name}: layer ${layer} does not exist (the base model has ${base.numHiddenLayers} layers)`);
      continue;
    }
    const [out, inF] = linearShape(base, proj);
    if (m.A.shape[1] !== inF) problems.push(`module ${m.name}: lora_A is ${shapeToString(m.A.shape)}, expected [${m.rank}, ${inF}] (in_features ${inF})`);
    if (m.B.shape[0] !== out) problems.push(`module ${m.name}: lora_B is ${shapeToString(m.B.shape)}, expected [${out}, ${m.rank}] (out_features ${out})`);
  }
  if (problems.length > 0) {
    throw new Error(`${where} does not fit the base model (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  ${problems.slice(0, 8).join('\n  ')}`);
  }
}
