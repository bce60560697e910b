// A Hugging Face checkpoint directory → what the model graphs take: the config, float32
// weights by HF name, the tokenizer when there is one; and a PEFT adapter directory → LoRA
// feeds. Validation happens before any tensor data is read (openHfCheckpoint checks every
// name, shape and dtype from the headers), so a bad checkpoint fails fast and names the
// file and tensor at fault.
import { openHfCheckpoint } from '../formats/hf-checkpoint.js';
import { type LlamaFamilyConfig } from '../formats/hf-config.js';
import { loadLoraAdapter, type LoraAdapter, validateAdapterForBase } from '../formats/peft.js';
import { TextTokenizer } from '../formats/tokenizer.js';
import { architectureFor, type Architecture } from '../model/registry.js';
import { type LoraWeights, type WeightTensor } from '../model/llama/index.js';

export interface LoadedModel {
  dir: string;
  config: LlamaFamilyConfig;
  architecture: Architecture;
  /** Every tensor the architecture reads (a tied lm_head is not duplicated), as float32. */
  weights: Map<string, WeightTensor>;
  tokenizer: TextTokenizer | null;
  generationConfig: Record<string, unknown> | null;
}

export interface LoadModelOptions {
  /** Load tokenizer.json when present (default true); a broken one is an error, not a silent skip. */
  tokenizer?: boolean;
}

export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const ckpt = await openHfCheckpoint(dir);
  try {
    const architecture = architectureFor(ckpt.config.modelType);
    const weights = new Map<string, WeightTensor>();
    for (const spec of architecture.weightSpecs(ckpt.config)) {
      let data: Float32Array;
      try {
        data = (await ckpt.readFloat32(spec.name)).data;
      } catch (err) {
        const file = ckpt.store.has(spec.name) ? ckpt.store.info(spec.name).file : ckpt.store.source;
        throw new Error(`${file}: cannot read tensor ${spec.name} (${(err as Error).message})`);
      }
      // F32 tensors come back as views over the file buffer: own a copy, so callers may mutate.
      weights.set(spec.name, { shape: spec.shape, data: data.byteOffset === 0 && data.buffer.byteLength === data.byteLength ? data : Float32Array.from(data) });
    }
    const tokenizer = opts.tokenizer !== false && ckpt.tokenizerPath ? await TextTokenizer.load(dir) : null;
    return { dir, config: ckpt.config, architecture, weights, tokenizer, generationConfig: ckpt.generationConfig };
  } finally {
    await ckpt.close();
  }
}

export interface LoadedAdapter {
  dir: string;
  adapter: LoraAdapter;
  /** Module path → A, B and scaling, ready for loraFeeds / graph options. */
  lora: LoraWeights;
}

/** A PEFT adapter directory, checked against the base model it will be applied to. */
export async function loadAdapter(dir: string, base: LlamaFamilyConfig): Promise<LoadedAdapter> {
  const adapter = await loadLoraAdapter(dir);
  validateAdapterForBase(adapter, base, dir);
  return { dir, adapter, lora: adapterToLora(adapter) };
}

export function adapterToLora(adapter: LoraAdapter): LoraWeights {
  const lora = new Map<string, { A: WeightTensor; B: WeightTensor; scaling: number }>();
  for (const m of adapter.modules.values()) {
    lora.set(m.name, { A: { shape: m.A.shape, data: m.A.data }, B: { shape: m.B.shape, data: m.B.data }, scaling: m.scaling });
  }
  return lora;
}
