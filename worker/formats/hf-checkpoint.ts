// A Hugging Face checkpoint directory of the Llama family: config.json, model.safetensors
// (or shards + index), optional generation_config.json and tokenizer files.
//
// Opening one validates every tensor the architecture needs (name, shape, float dtype)
// from the safetensors headers alone; tensor data is read lazily by name.

import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { fileExists, readJsonFile, writeAtomic, writeJsonAtomic } from './atomic-file.js';
import { readHfConfig, writeHfConfig, type LlamaFamilyConfig } from './hf-config.js';
import { openTensorStore, writeShardedSafetensors, type TensorStore } from './safetensors-sharded.js';
import { FLOAT_DTYPES, isFloatDType, sameShape, shapeToString, type F32Tensor, type Tensor } from './tensor.js';

export interface ExpectedTensor {
  name: string;
  shape: number[];
}

export const LINEAR_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LinearModule = (typeof LINEAR_MODULES)[number];

/** Full module path of a linear layer, e.g. model.layers.3.self_attn.q_proj. */
export function linearModulePath(layer: number, module: LinearModule): string {
  const block = module === 'gate_proj' || module === 'up_proj' || module === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${module}`;
}

/** [out, in] features of a linear layer (PyTorch nn.Linear weight layout). */
/** Only the sizes are read, so the model's own config type fits too. */
export type LinearSizes = Pick<LlamaFamilyConfig, 'numAttentionHeads' | 'numKeyValueHeads' | 'headDim' | 'hiddenSize' | 'intermediateSize'>;

export function linearShape(c: LinearSizes, module: LinearModule): [number, number] {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const shapes: Record<LinearModule, [number, number]> = {
    q_proj: [q, c.hiddenSize],
    k_proj: [kv, c.hiddenSize],
    v_proj: [kv, c.hiddenSize],
    o_proj: [c.hiddenSize, q],
    gate_proj: [c.intermediateSize, c.hiddenSize],
    up_proj: [c.intermediateSize, c.hiddenSize],
    down_proj: [c.hiddenSize, c.intermediateSize],
  };
  return shapes[module];
}

function hasBias(c: LlamaFamilyConfig, module: LinearModule): boolean {
  if (module === 'q_proj' || module === 'k_proj' || module === 'v_proj') return c.qkvBias;
  if (module === 'o_proj') return c.oProjBias;
  return c.mlpBias;
}

/** Every tensor a checkpoint with this config must hold, in transformers' order. */
export function expectedTensors(c: LlamaFamilyConfig): ExpectedTensor[] {
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, c.hiddenSize] }];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    for (const m of LINEAR_MODULES) {
      const [o, inF] = linearShape(c, m);
      const path = linearModulePath(i, m);
      out.push({ name: `${path}.weight`, shape: [o, inF] });
      if (hasBias(c, m)) out.push({ name: `${path}.bias`, shape: [o] });
    }
    out.push({ name: `model.layers.${i}.input_layernorm.weight`, shape: [c.hiddenSize] });
    out.push({ name: `model.layers.${i}.post_attention_layernorm.weight`, shape: [c.hiddenSize] });
  }
  out.push({ name: 'model.norm.weight', shape: [c.hiddenSize] });
  if (!c.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [c.vocabSize, c.hiddenSize] });
  return out;
}

/** Buffers some exporters save that the model recomputes; present or not, they are ignored. */
const IGNORABLE = /(^|\.)rotary_emb\.inv_freq$/;

export interface TensorMeta {
  dtype: string;
  shape: number[];
  file: string;
}

/**
 * Check the tensors a checkpoint has against what the config needs. Returns the names that
 * are ignored; throws listing up to 8 problems, each naming the file and the tensor.
 */
export function checkTensors(c: LlamaFamilyConfig, names: readonly string[], meta: (name: string) => TensorMeta, where: string): string[] {
  const problems: string[] = [];
  const expected = expectedTensors(c);
  const present = new Set(names);
  for (const e of expected) {
    if (!present.has(e.name)) {
      problems.push(`${where}: missing tensor ${e.name} (expected shape ${shapeToString(e.shape)})`);
      continue;
    }
    const m = meta(e.name);
    if (!sameShape(m.shape, e.shape)) {
      problems.push(`${m.file}: tensor ${e.name} has shape ${shapeToString(m.shape)}, expected ${shapeToString(e.shape)}`);
    }
    if (!isFloatDType(m.dtype)) {
      problems.push(`${m.file}: tensor ${e.name} has dtype ${m.dtype}: expected one of ${FLOAT_DTYPES.join(', ')}`);
    }
  }
  const known = new Set(expected.map((e) => e.name));
  const ignored: string[] = [];
  for (const name of names) {
    if (known.has(name)) continue;
    if (IGNORABLE.test(name) || (c.tieWordEmbeddings && name === 'lm_head.weight')) {
      ignored.push(name);
      continue;
    }
    problems.push(`${meta(name).file}: unexpected tensor ${name} (not part of a ${c.modelType} model with ${c.numHiddenLayers} layers)`);
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 8).join('\n  ');
    const more = problems.length > 8 ? `\n  … and ${problems.length - 8} more` : '';
    throw new Error(`checkpoint ${where} does not match its config.json (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  ${shown}${more}`);
  }
  return ignored;
}

export interface HfCheckpoint {
  dir: string;
  config: LlamaFamilyConfig;
  generationConfig: Record<string, unknown> | null;
  /** Path of tokenizer.json when the directory has one. */
  tokenizerPath: string | null;
  ignoredTensors: string[];
  store: TensorStore;
  read(name: string): Promise<Tensor>;
  readFloat32(name: string): Promise<F32Tensor>;
  close(): Promise<void>;
}

/** Open a checkpoint directory and validate it; no tensor data is read until asked for. */
export async function openHfCheckpoint(dir: string): Promise<HfCheckpoint> {
  const config = await readHfConfig(dir);
  const store = await openTensorStore(dir, 'model');
  try {
    const ignoredTensors = checkTensors(config, store.names, (n) => store.info(n), dir);
    const genPath = join(dir, 'generation_config.json');
    const gen = (await fileExists(genPath)) ? await readJsonFile(genPath) : null;
    const tokPath = join(dir, 'tokenizer.json');
    return {
      dir,
      config,
      generationConfig: typeof gen === 'object' && gen !== null && !Array.isArray(gen) ? (gen as Record<string, unknown>) : null,
      tokenizerPath: (await fileExists(tokPath)) ? tokPath : null,
      ignoredTensors,
      store,
      read: (name) => store.read(name),
      readFloat32: (name) => store.readFloat32(name),
      close: () => store.close(),
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

export interface WriteCheckpointOptions {
  config: LlamaFamilyConfig;
  tensors: ReadonlyMap<string, Tensor>;
  generationConfig?: Record<string, unknown>;
  /** Directory whose tokenizer files (tokenizer.json, tokenizer_config.json, …) are copied. */
  tokenizerDir?: string;
  /** Shard above this many bytes; default 5 GB, transformers' default. */
  maxShardBytes?: number;
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

/**
 * Write a checkpoint that transformers' from_pretrained loads. Tensors are validated
 * against the config first; weights are written before config.json, so a directory with a
 * config.json never has missing weights. Returns the files written.
 */
export async function writeHfCheckpoint(dir: string, opts: WriteCheckpointOptions): Promise<string[]> {
  const { config, tensors } = opts;
  checkTensors(config, [...tensors.keys()], (name) => {
    const t = tensors.get(name) as Tensor;
    return { dtype: t.dtype, shape: t.shape, file: `tensor map for ${dir}` };
  }, dir);
  await fsp.mkdir(dir, { recursive: true });
  const written = await writeShardedSafetensors(dir, tensors, {
    maxShardBytes: opts.maxShardBytes ?? 5_000_000_000,
    // transformers refuses safetensors checkpoints whose metadata lacks format=pt.
    metadata: { format: 'pt' },
  });
  if (opts.generationConfig) {
    await writeJsonAtomic(join(dir, 'generation_config.json'), opts.generationConfig);
    written.push('generation_config.json');
  }
  if (opts.tokenizerDir) {
    for (const file of TOKENIZER_FILES) {
      const src = join(opts.tokenizerDir, file);
      if (!(await fileExists(src))) {
        if (file === 'tokenizer.json') throw new Error(`${src}: file not found (tokenizerDir must hold a tokenizer.json)`);
        continue;
      }
      const data = await fsp.readFile(src);
      await writeAtomic(join(dir, file), (h) => h.writeFile(data));
      written.push(file);
    }
  }
  await writeHfConfig(dir, config);
  written.push('config.json');
  return written;
}
