// Learning-rate schedules as pure functions of the step, with the semantics of transformers'
// get_{constant,linear,cosine}_schedule_with_warmup: step 0 is the first optimizer step, the
// warmup ramps linearly from 0, and the decay reaches minLrRatio·peak at totalSteps.

export type ScheduleKind = 'constant' | 'linear' | 'cosine';
export const SCHEDULE_KINDS: readonly ScheduleKind[] = ['constant', 'linear', 'cosine'];

export interface Schedule {
  kind: ScheduleKind;
  peakLr: number;
  warmupSteps: number;
  totalSteps: number;
  /** Floor of the decay as a fraction of peakLr (0 in transformers). */
  minLrRatio?: number;
}

export function checkSchedule(s: Schedule): void {
  if (!SCHEDULE_KINDS.includes(s.kind)) throw new Error(`invalid schedule kind ${s.kind}: expected one of ${SCHEDULE_KINDS.join(', ')}`);
  if (!(s.peakLr >= 0)) throw new Error(`schedule peakLr must be ≥ 0, got ${s.peakLr}`);
  if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0) throw new Error(`schedule warmupSteps must be an integer ≥ 0, got ${s.warmupSteps}`);
  if (!Number.isInteger(s.totalSteps) || s.totalSteps <= 0) throw new Error(`schedule totalSteps must be a positive integer, got ${s.totalSteps}`);
  const r = s.minLrRatio ?? 0;
  if (!(r >= 0 && r <= 1)) throw new Error(`schedule minLrRatio must be in [0, 1], got ${r}`);
}

/** The learning rate for optimizer step `step` (0-based). */
export function learningRate(s: Schedule, step: number): number {
  if (step < s.warmupSteps) return (s.peakLr * step) / s.warmupSteps;
  if (s.kind === 'constant') return s.peakLr;
  const min = s.minLrRatio ?? 0;
  const progress = Math.min(1, (step - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps));
  const decay = s.kind === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return s.peakLr * (min + (1 - min) * decay);
}
