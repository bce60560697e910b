// The training loop, top to bottom (after nanoGPT's train.py): config with defaults, resume
// if asked, then per step: learning rate → micro-batches → loss and gradients → clip →
// AdamW → progress, with evaluation and checkpoints every so many steps.
import cliProgress from 'cli-progress';
import { checkpointPath, loadCheckpoint, saveCheckpoint, type TrainerState } from './checkpoint.js';
import { type Batch, countTokens, evalBatches, sampleBatch } from './data.js';
import { type TrainModel } from './model-step.js';
import { accumulate, AdamW, clipGradNorm, globalNorm } from './optimizer.js';
import { Rng } from './rng.js';
import { checkSchedule, learningRate, type Schedule, type ScheduleKind } from './schedule.js';

export interface TrainConfig {
  steps: number; // optimizer steps in the whole run
  batchSize: number; // sequences per optimizer step
  microBatches: number; // gradient accumulation: batchSize is split into this many runs
  sequenceLength: number; // tokens per sequence
  learningRate: number; // peak learning rate
  schedule: ScheduleKind; // decay after warmup
  warmupSteps: number;
  minLrRatio: number; // the decay ends at minLrRatio · learningRate
  weightDecay: number; // AdamW's decoupled decay (not applied to norms and biases)
  beta1: number;
  beta2: number;
  eps: number;
  maxGradNorm: number; // clip the global gradient norm to this; 0 disables clipping
  seed: number; // data order (and whatever else draws from the run's RNG)
  evalEvery: number; // evaluate every N steps and at the end; 0: only at the end
  evalBatches: number; // at most this many held-out batches per evaluation
  checkpointEvery: number; // 0: never (needs checkpointDir)
  checkpointDir: string | null;
}

export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  steps: 100,
  batchSize: 8,
  microBatches: 1,
  sequenceLength: 128,
  learningRate: 2e-4,
  schedule: 'cosine',
  warmupSteps: 0,
  minLrRatio: 0.1,
  weightDecay: 0,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  maxGradNorm: 1,
  seed: 0,
  evalEvery: 0,
  evalBatches: 8,
  checkpointEvery: 0,
  checkpointDir: null,
};

export interface Progress {
  step: number; // optimizer steps completed
  totalSteps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSecond: number;
  etaSeconds: number;
  evalLoss?: number;
}

export interface TrainRun {
  model: TrainModel;
  /** Token ids of the training stream and of the held-out stream. */
  train: ArrayLike<number>;
  eval?: ArrayLike<number>;
  config?: Partial<TrainConfig>;
  /** A checkpoint directory to continue from. */
  resumeFrom?: string;
  onProgress?: (p: Progress) => void;
  /**
   * Called before each optimizer step's first micro-batch with the step's index (0-based): an
   * elastic adapter draws the step's ranks here, once for all its micro-batches.
   */
  beforeStep?: (step: number) => void;
  /** Draw a progress bar on `progressStream` when it is a terminal; false forces it off. Default true. */
  progressBar?: boolean;
  /** Where the bar goes. Default process.stderr, so stdout stays free for results. */
  progressStream?: ProgressStream;
  /** Stop after the step in progress (pod preemption): checkpoint, when configured, and return. */
  signal?: AbortSignal;
}

/** The stream the bar draws on: a terminal reports isTTY (and its width as columns). */
export type ProgressStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/**
 * Whether the loop draws a progress bar: only on a terminal, so logs and CI captures never
 * fill with redraw escape codes, and never when the caller turned it off.
 */
export function showProgressBar(enabled: boolean | undefined, stream: { isTTY?: boolean }): boolean {
  return enabled !== false && stream.isTTY === true;
}

export interface TrainResult {
  losses: number[]; // training loss per step, including steps before a resume
  evalLoss: number | null;
  perplexity: number | null;
  bestLoss: number | null;
}

export function checkTrainConfig(c: TrainConfig): void {
  const ints: (keyof TrainConfig)[] = ['steps', 'batchSize', 'microBatches', 'sequenceLength', 'evalBatches'];
  for (const k of ints) if (!Number.isInteger(c[k]) || (c[k] as number) <= 0) throw new Error(`train config: ${k} must be a positive integer, got ${c[k]}`);
  if (c.batchSize % c.microBatches !== 0) throw new Error(`train config: batchSize ${c.batchSize} must be a multiple of microBatches ${c.microBatches}`);
  if (c.checkpointEvery > 0 && !c.checkpointDir) throw new Error(`train config: checkpointEvery ${c.checkpointEvery} needs checkpointDir`);
  if (!(c.maxGradNorm >= 0)) throw new Error(`train config: maxGradNorm must be ≥ 0, got ${c.maxGradNorm}`);
}

/** Mean loss per counted token over the held-out batches. */
export async function evaluate(model: TrainModel, batches: readonly Batch[]): Promise<number> {
  const count = countTokens(batches);
  let loss = 0;
  for (const b of batches) loss += await model.loss(b, b.mask.map((x) => x / count));
  return loss;
}

export async function train(run: TrainRun): Promise<TrainResult> {
  const cfg: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...run.config };
  checkTrainConfig(cfg);
  const schedule: Schedule = { kind: cfg.schedule, peakLr: cfg.learningRate, warmupSteps: cfg.warmupSteps, totalSteps: cfg.steps, minLrRatio: cfg.minLrRatio };
  checkSchedule(schedule);
  const { model } = run;
  const optimizer = new AdamW({ beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weightDecay: cfg.weightDecay, noDecay: model.noDecay });
  let rng = new Rng(cfg.seed);
  let state: TrainerState = { step: 0, rngState: rng.state, bestLoss: null, losses: [], config: cfg };

  if (run.resumeFrom) {
    const ck = await loadCheckpoint(run.resumeFrom);
    for (const [name, p] of model.params) {
      const saved = ck.params.get(name);
      if (!saved || saved.length !== p.length) throw new Error(`${run.resumeFrom}: parameter ${name} is ${saved ? `${saved.length} values, expected ${p.length}` : 'missing'}`);
      p.set(saved);
    }
    optimizer.state = ck.optimizer;
    rng = Rng.fromState(ck.state.rngState);
    state = { ...ck.state, config: cfg };
  }

  const heldOut = run.eval ? evalBatches(run.eval, cfg.batchSize, cfg.sequenceLength, cfg.evalBatches) : [];
  const microSize = cfg.batchSize / cfg.microBatches;
  const stream = run.progressStream ?? process.stderr;
  const bar = showProgressBar(run.progressBar, stream)
    ? new cliProgress.SingleBar({ format: '{bar} {value}/{total} loss {loss} lr {lr} {tps} tok/s eta {etaS}s', hideCursor: true, stream })
    : null;
  bar?.start(cfg.steps, state.step, { loss: '-', lr: '-', tps: '-', etaS: '-' });
  const started = performance.now();
  const firstStep = state.step;
  let evalLoss: number | null = null;

  try {
    for (let step = state.step; step < cfg.steps; step++) {
      const lr = learningRate(schedule, step);
      run.beforeStep?.(step);

      // Draw the whole step's batches first: the loss is normalized by the tokens of all of them,
      // so accumulated micro-batch gradients add up to the full batch's gradient.
      const micro = Array.from({ length: cfg.microBatches }, () => sampleBatch(run.train, microSize, cfg.sequenceLength, (n) => rng.int(n)));
      const count = countTokens(micro);
      let loss = 0;
      let grads = new Map<string, Float32Array>();
      for (const b of micro) {
        const r = await model.lossAndGradients(b, b.mask.map((x) => x / count));
        loss += r.loss;
        if (cfg.microBatches === 1) grads = r.grads;
        else accumulate(grads, r.grads);
      }

      const gradNorm = cfg.maxGradNorm > 0 ? clipGradNorm(grads, cfg.maxGradNorm) : globalNorm(grads);
      optimizer.step(model.params, grads, lr);
      state.losses.push(loss);
      state.step = step + 1;
      state.rngState = rng.state;

      const last = state.step === cfg.steps;
      let evalNow: number | undefined;
      if (heldOut.length > 0 && (last || (cfg.evalEvery > 0 && state.step % cfg.evalEvery === 0))) {
        evalNow = evalLoss = await evaluate(model, heldOut);
        state.bestLoss = state.bestLoss === null ? evalNow : Math.min(state.bestLoss, evalNow);
      }

      const seconds = (performance.now() - started) / 1000;
      const done = state.step - firstStep;
      const tokensPerSecond = (done * cfg.batchSize * cfg.sequenceLength) / seconds;
      const etaSeconds = ((cfg.steps - state.step) * seconds) / done;
      const progress: Progress = { step: state.step, totalSteps: cfg.steps, loss, lr, gradNorm, tokensPerSecond, etaSeconds };
      if (evalNow !== undefined) progress.evalLoss = evalNow;
      run.onProgress?.(progress);
      bar?.update(state.step, { loss: loss.toFixed(4), lr: lr.toExponential(2), tps: tokensPerSecond.toFixed(0), etaS: etaSeconds.toFixed(0) });

      // After the progress report, so a stop requested from it still gets this step's checkpoint.
      const stopping = run.signal?.aborted === true;
      if (cfg.checkpointDir && cfg.checkpointEvery > 0 && (last || stopping || state.step % cfg.checkpointEvery === 0)) {
        await saveCheckpoint(checkpointPath(cfg.checkpointDir, state.step), { state, params: model.params, shapes: model.shapes, optimizer: optimizer.state });
      }
      if (stopping) break;
    }
  } finally {
    bar?.stop();
  }
  return { losses: state.losses, evalLoss, perplexity: evalLoss === null ? null : Math.exp(evalLoss), bestLoss: state.bestLoss };
}
