// The latest word of every worker about one object. Reports are state, not events, so
// folding a report in is idempotent and a resent report changes nothing.
import type { Artifact, Completion, Failure, Metrics, ObjectRef, Progress, ServingStats, WorkerReport } from './wire.js';

/** One replica's serving statistics and when it said so. */
export interface PodServing extends ServingStats {
  pod: string;
  unixMs: number;
}

/** What the hub knows about one object; handed to the StatusSink. */
export interface ObjectState {
  /** The object, with the highest generation any worker reported for. */
  ref: ObjectRef;
  progress?: Progress;
  metrics?: Metrics;
  /** By artifact name; a later artifact of the same name replaces the earlier one. */
  artifacts: Record<string, Artifact>;
  /** With the generation the worker ran for, for the condition's observedGeneration. */
  failure?: Failure & { generation: number };
  completion?: Completion;
  /** By pod name: every replica of a LoRAServer reports its own. */
  serving: Record<string, PodServing>;
  /** Last time each pod was heard from (any report, heartbeats included). */
  lastSeen: Record<string, number>;
}

/** Bounds that keep one misbehaving worker from growing the hub's memory. */
export const MAX_ARTIFACTS = 64;
export const MAX_PODS = 256;

export function emptyState(ref: ObjectRef): ObjectState {
  return { ref: { ...ref }, artifacts: {}, serving: {}, lastSeen: {} };
}

/**
 * Folds a report into the state. Returns true when the status would change, so
 * heartbeats and acks never cause a patch.
 */
export function foldReport(state: ObjectState, report: WorkerReport, pod: string, nowMs: number): boolean {
  if (report.object && report.object.generation > state.ref.generation) state.ref = { ...state.ref, generation: report.object.generation };
  touch(state.lastSeen, pod, nowMs);
  switch (report.body) {
    case 'progress':
      state.progress = { ...report.progress };
      return true;
    case 'metrics':
      state.metrics = { values: { ...report.metrics.values }, layers: report.metrics.layers.map((l) => ({ ...l })) };
      return true;
    case 'artifact': {
      const name = report.artifact.name || report.artifact.uri;
      if (!(name in state.artifacts) && Object.keys(state.artifacts).length >= MAX_ARTIFACTS) return false;
      state.artifacts[name] = { ...report.artifact };
      return true;
    }
    case 'serving':
      touch(state.serving, pod, { ...report.serving, loadedAdapters: [...report.serving.loadedAdapters], pod, unixMs: report.unixMs || nowMs });
      return true;
    case 'failure':
      state.failure = { ...report.failure, generation: report.object?.generation ?? state.ref.generation };
      return true;
    case 'completion':
      state.completion = { outputs: { ...report.completion.outputs }, artifacts: report.completion.artifacts.map((a) => ({ ...a })) };
      for (const a of state.completion.artifacts) state.artifacts[a.name || a.uri] = { ...a };
      // A success after a retried failure clears it.
      delete state.failure;
      return true;
    case 'heartbeat':
    case 'ack':
      return false;
  }
}

/** Forgets a pod that is gone, so a scaled-down replica stops counting in serving totals. */
export function forgetPod(state: ObjectState, pod: string): boolean {
  const had = pod in state.serving;
  delete state.serving[pod];
  delete state.lastSeen[pod];
  return had;
}

function touch<V>(record: Record<string, V>, key: string, value: V): void {
  if (!(key in record) && Object.keys(record).length >= MAX_PODS) return;
  record[key] = value;
}
