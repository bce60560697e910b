// LoSA's progressive sparsity (ALGORITHMS.md §2): over T pruning rounds the mean sparsity rises
// to the target S, and each round's layer rates may spread ±δ_t around that mean.
//   cubic   S_t = S − S·(1 − t/T)³   (Zhu & Gupta's schedule, what LoSA uses: most of the pruning early)
//   linear  S_t = S·t/T              (the paper's ablation, Table 10)
//   oneshot S_t = S every round      (the whole target at once; later rounds only re-select)
// S_t is kept in percent, as the CRD gives S, so the last round is exactly the integer target and
// its zero count comes out as the one-shot pruners' does; δ_t and layer rates are fractions.

export const SCHEDULE_KINDS = ['cubic', 'linear', 'oneshot'] as const;
export type ScheduleKind = (typeof SCHEDULE_KINDS)[number];

/**
 * δ before any round has set one: the widest band of the table. The reference code never needs it
 * (its first round is below 0.7 at every target it was run with) and fails where it would.
 */
export const FIRST_DELTA = 0.03;

export interface PruningRound {
  /** 1-based round. */
  step: number;
  /** Mean sparsity S_t of the round, in percent. */
  percent: number;
  /** Half-width δ_t of the band the layer rates must stay in. */
  delta: number;
}

/** S_t in percent for round t of `steps` (1-based); the last round is exactly `targetPercent`. */
export function sparsityAt(kind: ScheduleKind, targetPercent: number, step: number, steps: number): number {
  if (!(Number.isInteger(steps) && steps >= 1)) throw new Error(`sparsity schedule: steps must be a positive integer, got ${steps}`);
  if (!(Number.isInteger(step) && step >= 1 && step <= steps)) throw new Error(`sparsity schedule: step must be an integer in [1, ${steps}], got ${step}`);
  if (!(targetPercent >= 0 && targetPercent < 100)) throw new Error(`sparsity schedule: the target must be a percent in [0, 100), got ${targetPercent}`);
  if (kind === 'cubic') return targetPercent - targetPercent * (1 - step / steps) ** 3;
  if (kind === 'linear') return (targetPercent * step) / steps;
  if (kind === 'oneshot') return targetPercent;
  throw new Error(`invalid sparsity schedule ${JSON.stringify(kind)}: expected one of ${SCHEDULE_KINDS.join(', ')}`);
}

/**
 * δ_t from LoSA's table: 0.01 up to a mean of 0.5, 0.02 up to 0.6, 0.03 up to 0.7, and above 0.7
 * whatever the previous round's table gave.
 */
export function deltaAt(sparsity: number, previous: number): number {
  // sparsity is a fraction here, as in the reference's table.
  return sparsity <= 0.5 ? 0.01 : sparsity <= 0.6 ? 0.02 : sparsity <= 0.7 ? 0.03 : previous;
}

/**
 * Every round of a schedule with its mean sparsity and band. The band never exceeds S_t (nor
 * 1 − S_t), so no layer rate leaves [0, 1] and the band stays centred on S_t: the reference clamps
 * negative rates at zero, which breaks the mean.
 */
export function pruningRounds(kind: ScheduleKind, targetPercent: number, steps: number): PruningRound[] {
  const rounds: PruningRound[] = [];
  let table = FIRST_DELTA;
  for (let step = 1; step <= steps; step++) {
    const percent = sparsityAt(kind, targetPercent, step, steps);
    const mean = percent / 100;
    table = deltaAt(mean, table);
    rounds.push({ step, percent, delta: Math.min(table, mean, 1 - mean) });
  }
  return rounds;
}
