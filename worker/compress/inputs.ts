// The compress inputs: PEFT adapters read from disk, each checked before any compute — its
// digest against the one the spec pins, its modules and shapes against the base model's
// config.json, and all of them against each other — with errors that name the adapter. Then
// packed into one normalized slot per module for the kernels.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { type LlamaFamilyConfig, readHfConfig } from '../formats/hf-config.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, loadLoraAdapter, type LoraAdapter, validateAdapterForBase } from '../formats/peft.js';
import { shapeToString } from '../formats/tensor.js';
import { type JdKernels } from './kernels.js';
import { packSlot, type Slot } from './slot.js';

export interface AdapterInput {
  name: string;
  /** PEFT directory: adapter_config.json + adapter_model.safetensors. */
  dir: string;
  /** Expected sha256 of adapter_model.safetensors (spec.adapters[].sha256), hex. */
  sha256?: string;
}

export interface LoadedAdapter {
  name: string;
  adapter: LoraAdapter;
  /** sha256 of adapter_model.safetensors and adapter_config.json. */
  sha256: string;
  configSha256: string;
}

/** One module slot every adapter has: its name and out×in features. */
export interface ModuleShape {
  name: string;
  out: number;
  in: number;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** An adapter whose weights are not the ones the spec pinned: a distinct failure (Reason DigestMismatch). */
export class AdapterDigestError extends Error {
  constructor(readonly adapter: string, readonly expected: string, readonly actual: string, message: string) {
    super(message);
    this.name = 'AdapterDigestError';
  }
}

/** Reads the base model's config.json; the error names the directory. */
export async function readBaseConfig(dir: string): Promise<LlamaFamilyConfig> {
  try {
    return await readHfConfig(dir);
  } catch (err) {
    const message = (err as Error).message;
    throw new Error(message.includes(dir) ? `base model: ${message}` : `base model ${dir}: ${message}`, { cause: err });
  }
}

/** Loads one adapter and checks it on its own: digest pin, readable files, fit to the base. */
export async function loadAdapter(input: AdapterInput, base?: LlamaFamilyConfig): Promise<LoadedAdapter> {
  const { name, dir } = input;
  const sha256 = await sha256File(join(dir, ADAPTER_WEIGHTS), name);
  if (input.sha256 !== undefined) {
    const expected = input.sha256.toLowerCase();
    if (!SHA256_HEX.test(expected)) throw new Error(`adapter ${name}: sha256 ${JSON.stringify(input.sha256)} is not a sha256 digest: expected 64 hex characters`);
    if (expected !== sha256) throw new AdapterDigestError(name, expected, sha256, `adapter ${name}: ${join(dir, ADAPTER_WEIGHTS)} has sha256 ${sha256}, but the spec pins ${expected}: the adapter changed since it was pinned, or the pin is wrong`);
  }
  const configSha256 = await sha256File(join(dir, ADAPTER_CONFIG), name);
  let adapter: LoraAdapter;
  try {
    adapter = await loadLoraAdapter(dir);
  } catch (err) {
    throw new Error(`adapter ${name}: ${(err as Error).message}`, { cause: err });
  }
  if (base) validateAdapterForBase(adapter, base, `adapter ${name}`);
  return { name, adapter, sha256, configSha256 };
}

/** Same module set and shapes in every adapter (ranks may differ); errors name adapter and module. */
export function checkCompatible(loaded: readonly LoadedAdapter[]): ModuleShape[] {
  const first = loaded[0];
  if (!first) throw new Error('no adapters: expected at least one');
  const ref = [...first.adapter.modules.values()].map((m) => ({ name: m.name, out: m.B.shape[0] as number, in: m.A.shape[1] as number })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const { name, adapter } of loaded.slice(1)) {
    for (const mod of ref) {
      const lm = adapter.modules.get(mod.name);
      if (!lm) throw new Error(`adapter ${name} has no module ${mod.name}, which adapter ${first.name} has: all adapters must target the same modules`);
      if (lm.B.shape[0] !== mod.out || lm.A.shape[1] !== mod.in) {
        throw new Error(`adapter ${name}: module ${mod.name} has lora_B ${shapeToString(lm.B.shape)} and lora_A ${shapeToString(lm.A.shape)} (out×in ${lm.B.shape[0]}×${lm.A.shape[1]}), but adapter ${first.name} has ${mod.out}×${mod.in}: adapters must share a base model`);
      }
    }
    for (const m of adapter.modules.keys()) {
      if (!ref.some((r) => r.name === m)) throw new Error(`adapter ${name} has module ${m}, which adapter ${first.name} lacks: all adapters must target the same modules`);
    }
  }
  return ref;
}

/** One normalized slot per module, adapters in the order given. */
export async function packSlots(kernels: JdKernels, loaded: readonly LoadedAdapter[], modules: readonly ModuleShape[]): Promise<Slot[]> {
  const slots: Slot[] = [];
  for (const mod of modules) {
    const factors = loaded.map(({ name, adapter }) => {
      const lm = adapter.modules.get(mod.name);
      if (!lm) throw new Error(`adapter ${name} has no module ${mod.name}`);
      return { A: lm.A.data, B: lm.B.data, rank: lm.rank, scaling: lm.scaling };
    });
    slots.push(await packSlot(kernels, mod.name, mod.out, mod.in, factors, (i) => `adapter ${loaded[i]?.name}`));
  }
  return slots;
}

export async function sha256File(path: string, adapter: string): Promise<string> {
  try {
    return createHash('sha256').update(await fsp.readFile(path)).digest('hex');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`adapter ${adapter}: ${path}: ${code === 'ENOENT' ? 'file not found' : (err as Error).message}`, { cause: err });
  }
}
