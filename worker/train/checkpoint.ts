// Training checkpoints: everything a resumed run needs to continue exactly where it
// stopped — parameters, AdamW moments and step count, the data RNG state, the best
// evaluation loss, the loss history and the config it ran with.
//
// A run writes one directory per checkpoint, CHECKPOINT_DIR/checkpoint-STEP (as transformers'
// Trainer does); latestCheckpoint finds the newest complete one. Layout of each:
//   train_state.safetensors  param.NAME, exp_avg.NAME, exp_avg_sq.NAME (float32)
//   trainer_state.json       step, optimizerStep, rngState, bestLoss, losses, config
// The JSON is written last (both atomically), so its presence marks a complete checkpoint.
import { access, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readJsonFile, writeJsonAtomic } from '../formats/atomic-file.js';
import { readSafetensors, writeSafetensors } from '../formats/safetensors.js';
import { type Tensor as FileTensor } from '../formats/tensor.js';
import { type AdamWState } from './optimizer.js';

export const TENSORS_FILE = 'train_state.safetensors';
export const STATE_FILE = 'trainer_state.json';

/** The directory of the checkpoint taken after `step` optimizer steps. */
export function checkpointPath(root: string, step: number): string {
  return join(root, `checkpoint-${step}`);
}

/** The newest complete checkpoint under `root`, or null when there is none. */
export async function latestCheckpoint(root: string): Promise<string | null> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return null;
  }
  const steps = names.map((n) => /^checkpoint-(\d+)$/.exec(n)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1]));
  for (const step of steps.sort((a, b) => b - a)) {
    try {
      await access(join(checkpointPath(root, step), STATE_FILE));
      return checkpointPath(root, step);
    } catch {
      // written only in part (the state file comes last): try an older one
    }
  }
  return null;
}

export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  rngState: number;
  /** Lowest evaluation loss seen, or null before the first evaluation. */
  bestLoss: number | null;
  /** Training loss of every completed step. */
  losses: number[];
  config: unknown;
}

export interface Checkpoint {
  state: TrainerState;
  params: Map<string, Float32Array>;
  shapes: ReadonlyMap<string, readonly number[]>;
  optimizer: AdamWState;
}

export async function saveCheckpoint(dir: string, ck: Checkpoint): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors = new Map<string, FileTensor>();
  const add = (prefix: string, name: string, data: Float32Array): void => {
    const shape = ck.shapes.get(name);
    if (!shape) throw new Error(`checkpoint: no shape for parameter ${name}`);
    tensors.set(`${prefix}.${name}`, { dtype: 'F32', shape: [...shape], data });
  };
  for (const [name, p] of ck.params) {
    add('param', name, p);
    const m = ck.optimizer.m.get(name);
    const v = ck.optimizer.v.get(name);
    if (m && v) {
      add('exp_avg', name, m);
      add('exp_avg_sq', name, v);
    }
  }
  await writeSafetensors(join(dir, TENSORS_FILE), tensors, { format: 'tessera-train-state' });
  await writeJsonAtomic(join(dir, STATE_FILE), { ...ck.state, optimizerStep: ck.optimizer.t });
}

export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  const stateFile = join(dir, STATE_FILE);
  const raw = (await readJsonFile(stateFile)) as Partial<TrainerState> & { optimizerStep?: number };
  for (const k of ['step', 'rngState', 'optimizerStep'] as const) {
    if (typeof raw[k] !== 'number') throw new Error(`${stateFile}: ${k} must be a number, got ${JSON.stringify(raw[k])}`);
  }
  const { tensors } = await readSafetensors(join(dir, TENSORS_FILE));
  const params = new Map<string, Float32Array>();
  const shapes = new Map<string, readonly number[]>();
  const optimizer: AdamWState = { t: raw.optimizerStep as number, m: new Map(), v: new Map() };
  for (const [key, t] of tensors) {
    if (t.dtype !== 'F32') throw new Error(`${dir}/${TENSORS_FILE}: tensor ${key} has dtype ${t.dtype}: expected F32`);
    const dot = key.indexOf('.');
    const [kind, name] = [key.slice(0, dot), key.slice(dot + 1)];
    const data = Float32Array.from(t.data as Float32Array);
    if (kind === 'param') {
      params.set(name, data);
      shapes.set(name, t.shape);
    } else if (kind === 'exp_avg') optimizer.m.set(name, data);
    else if (kind === 'exp_avg_sq') optimizer.v.set(name, data);
    else throw new Error(`${dir}/${TENSORS_FILE}: unexpected tensor ${key}: expected param.*, exp_avg.* or exp_avg_sq.*`);
  }
  const state: TrainerState = {
    step: raw.step as number,
    rngState: raw.rngState as number,
    bestLoss: typeof raw.bestLoss === 'number' ? raw.bestLoss : null,
    losses: Array.isArray(raw.losses) ? raw.losses : [],
    config: raw.config,
  };
  return { state, params, shapes, optimizer };
}
