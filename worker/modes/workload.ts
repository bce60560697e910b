// What every operator-launched mode shares: read the spec file, connect the status reporter, run,
// and turn the outcome into a final report and an exit code the Job understands.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Reporter } from '../report/reporter.js';

/** Exit code for failures that retrying cannot fix; the Job's podFailurePolicy fails at once on it. */
export const EXIT_PERMANENT = 3;

/** A failure with a CamelCase reason for the object's Failed/Degraded condition. */
export class WorkloadError extends Error {
  constructor(readonly reason: string, message: string, readonly retryable = false, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface WorkloadContext<S> {
  spec: S;
  specFile: string;
  /** Undefined when no status hub is configured (a local run outside Kubernetes). */
  reporter: Reporter | undefined;
  log: Logger;
}

async function readSpec<S>(file: string): Promise<S> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new WorkloadError('SpecUnreadable', `cannot read spec file ${file}: ${err instanceof Error ? err.message : String(err)}`, false, { cause: err });
  }
  try {
    return JSON.parse(text) as S;
  } catch (err) {
    throw new WorkloadError('SpecInvalid', `spec file ${file} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, false, { cause: err });
  }
}

export interface WorkloadOptions {
  /**
   * Report stage Starting before the work (default true). A long-running server reports its
   * serving statistics instead: its stage is the operator's to set.
   */
  announceStart?: boolean;
}

/** Runs one workload to completion and returns the process exit code. */
export async function runWorkload<S>(mode: string, specFile: string, log: Logger, work: (ctx: WorkloadContext<S>) => Promise<void>, options: WorkloadOptions = {}): Promise<number> {
  let reporter: Reporter | undefined;
  if (process.env.TESSERA_STATUS_ADDRESS) {
    try {
      reporter = Reporter.fromEnv({ logger: log }).start();
    } catch (err) {
      // The work still runs: status is a convenience, the Job's outcome is the truth.
      log.error({ err }, 'status reporter unavailable');
    }
  } else log.info({ mode }, 'no TESSERA_STATUS_ADDRESS: running without a status hub');
  try {
    const spec = await readSpec<S>(specFile);
    if (options.announceStart !== false) reporter?.progress({ stage: 'Starting' });
    await work({ spec, specFile, reporter, log });
    log.info({ mode }, 'workload finished');
    if (reporter) await reporter.flush(10_000);
    return 0;
  } catch (err) {
    const failure = err instanceof WorkloadError ? err : new WorkloadError('WorkerFailed', err instanceof Error ? err.message : String(err), true, { cause: err });
    log.error({ err, reason: failure.reason, mode }, failure.message);
    reporter?.failure({ reason: failure.reason, message: failure.message, retryable: failure.retryable });
    if (reporter) await reporter.flush(10_000);
    return failure.retryable ? 1 : EXIT_PERMANENT;
  }
}
