// A LoSA run's state after a round's pruning, so a restarted pod continues from the newest round
// rather than from the dense model: the sparse base's linear weights, the selection the adapter is
// masked with, the adapter's full factors and ranks, and the losses so far. The round's training
// checkpoints (loop.ts) live beside it, under round-T/train. Layout of CHECKPOINT_DIR/round-T:
//   losa_state.safetensors  base.NAME, mask.PATH, adapter.NAME (float32)
//   losa_state.json         the round's report, ranks, losses — written last, so it marks a complete state
// Only the newest round is kept: an older one is removed once a newer one is complete.
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileExists, readJsonFile, writeJsonAtomic } from '../../formats/atomic-file.js';
import { readSafetensors, writeSafetensors } from '../../formats/safetensors.js';
import { makeTensor, type Tensor } from '../../formats/tensor.js';
import { type LlamaConfig } from '../../model/llama/config.js';
import { type WeightTensor } from '../../model/llama/weights.js';
import { type LosaRound } from './losa.js';

export const STATE_TENSORS = 'losa_state.safetensors';
export const STATE_JSON = 'losa_state.json';

export interface RoundState {
  round: LosaRound;
  /** Linear weights of the sparse base W_s after the round's unmerge. */
  base: Map<string, WeightTensor>;
  /** Module path → selection (1 kept, 0 pruned) the adapter's delta is masked with. */
  masks: Map<string, Float32Array>;
  /** Adapter factors at full rank, by graph input name. */
  adapter: Map<string, Float32Array>;
  ranks: Map<string, number>;
  /** Training losses of every earlier round. */
  losses: number[];
  /** The run's RNG (A's draws when a rank is cut), so a resumed run draws what an uninterrupted one would. */
  rngState: number;
}

interface StateJson {
  round: LosaRound;
  ranks: Record<string, number>;
  losses: number[];
  rngState: number;
  hiddenSize: number;
  layers: number;
}

export function roundDir(root: string, step: number): string {
  return join(root, `round-${step}`);
}

export async function saveRoundState(root: string, state: RoundState, adapterShapes: ReadonlyMap<string, { shape: number[] }>, config: LlamaConfig): Promise<void> {
  const dir = roundDir(root, state.round.step);
  const tensors: [string, Tensor][] = [];
  for (const [name, w] of state.base) tensors.push([`base.${name}`, makeTensor('F32', [...w.shape], w.data)]);
  for (const [path, m] of state.masks) {
    const shape = state.base.get(`${path}.weight`)?.shape;
    if (!shape) throw new Error(`LoSA state: a mask for ${path}, which has no base weight`);
    tensors.push([`mask.${path}`, makeTensor('F32', [...shape], m)]);
  }
  for (const [name, a] of state.adapter) tensors.push([`adapter.${name}`, makeTensor('F32', [...(adapterShapes.get(name)?.shape ?? [a.length])], a)]);
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, STATE_TENSORS), tensors, { format: 'pt' });
  const json: StateJson = { round: state.round, ranks: Object.fromEntries(state.ranks), losses: state.losses, rngState: state.rngState, hiddenSize: config.hiddenSize, layers: config.numHiddenLayers };
  await writeJsonAtomic(join(dir, STATE_JSON), json);
  for (const step of await savedRounds(root)) if (step !== state.round.step) await rm(roundDir(root, step), { recursive: true, force: true });
}

/** The newest complete round state under `root`, or null. */
export async function loadRoundState(root: string, config: LlamaConfig): Promise<RoundState | null> {
  for (const step of (await savedRounds(root)).sort((a, b) => b - a)) {
    const dir = roundDir(root, step);
    if (!(await fileExists(join(dir, STATE_JSON)))) continue;
    const json = (await readJsonFile(join(dir, STATE_JSON))) as StateJson;
    if (json.hiddenSize !== config.hiddenSize || json.layers !== config.numHiddenLayers) {
      throw new Error(`${dir}: the saved LoSA state is for a model of ${json.layers} blocks of width ${json.hiddenSize}, this one has ${config.numHiddenLayers} of ${config.hiddenSize}`);
    }
    const { tensors } = await readSafetensors(join(dir, STATE_TENSORS));
    const base = new Map<string, WeightTensor>();
    const masks = new Map<string, Float32Array>();
    const adapter = new Map<string, Float32Array>();
    for (const [key, t] of tensors) {
      const data = t.data as Float32Array;
      if (key.startsWith('base.')) base.set(key.slice(5), { shape: [...t.shape], data });
      else if (key.startsWith('mask.')) masks.set(key.slice(5), data);
      else if (key.startsWith('adapter.')) adapter.set(key.slice(8), data);
    }
    return { round: json.round, base, masks, adapter, ranks: new Map(Object.entries(json.ranks)), losses: json.losses, rngState: json.rngState };
  }
  return null;
}

async function savedRounds(root: string): Promise<number[]> {
  const names = await readdir(root).catch(() => [] as string[]);
  return names.map((n) => /^round-(\d+)$/.exec(n)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1]));
}
