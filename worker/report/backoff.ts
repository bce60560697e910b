// Reconnect delays: exponential with full jitter (AWS architecture blog, "Exponential
// Backoff And Jitter"), so a hub restart is not met by every worker at the same instant.

export interface BackoffPolicy {
  /** Upper bound of the first delay. */
  initialMs: number;
  /** Cap on the upper bound. */
  maxMs: number;
  /** Growth of the bound per failed attempt. */
  multiplier: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 30_000, multiplier: 2 };

/** Delay before attempt number `attempt` (0 = first retry); `random` in [0, 1). */
export function backoffDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const bound = Math.min(policy.maxMs, policy.initialMs * policy.multiplier ** Math.min(attempt, 30));
  // Never zero: a tight reconnect loop against a refusing hub would spin the CPU.
  return Math.max(policy.initialMs / 4, Math.floor(random() * bound));
}
