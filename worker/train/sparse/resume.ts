// One training run of a fine-tuning method, resumed from the newest checkpoint under
// training.checkpointDir when there is one: every method (lora, sparsepeft, shears,
// qa-sparsepeft, spallm) starts its loop the same way, with the same stage and progress reports.
import { type Logger } from 'pino';
import { latestCheckpoint } from '../checkpoint.js';
import { type Progress, train, type TrainConfig } from '../loop.js';
import { type TrainModel } from '../model-step.js';

export interface ResumingRun {
  train: ArrayLike<number>;
  training: Partial<TrainConfig> & Pick<TrainConfig, 'steps' | 'sequenceLength'>;
  /** Resume from the newest checkpoint when there is one. Default true. */
  resume?: boolean;
  log?: Logger;
  onStage?: (stage: 'Training', step: number, totalSteps: number) => void;
  onTrainProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

/** Trains `model` in place; `beforeStep` runs before each optimizer step (elastic rank draws). */
export async function trainResuming(model: TrainModel, run: ResumingRun, beforeStep?: (step: number) => void): Promise<{ losses: number[]; resumedFromStep: number; interrupted: boolean }> {
  const dir = run.training.checkpointDir;
  const resumeFrom = dir && run.resume !== false ? await latestCheckpoint(dir) : null;
  let resumedFromStep = 0;
  if (resumeFrom) {
    resumedFromStep = Number(/checkpoint-(\d+)$/.exec(resumeFrom)?.[1] ?? 0);
    run.log?.info({ checkpoint: resumeFrom, step: resumedFromStep }, 'resuming from a checkpoint');
  }
  run.onStage?.('Training', resumedFromStep, run.training.steps);
  const result = await train({
    model, train: run.train, config: run.training, progressBar: false, signal: run.signal,
    ...(resumeFrom ? { resumeFrom } : {}),
    ...(beforeStep ? { beforeStep } : {}),
    onProgress: (p) => {
      run.onTrainProgress?.(p);
      run.onStage?.('Training', p.step, p.totalSteps);
    },
  });
  return { losses: result.losses, resumedFromStep, interrupted: result.losses.length < run.training.steps };
}
