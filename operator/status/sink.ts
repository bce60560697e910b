// Where coalesced worker state goes: the object's /status subresource, by JSON merge patch.
// The mapping from ObjectState to status fields is a pure function so a reconciler can
// swap in its kind's own mapping (or a whole sink) without touching the hub.
import { ApiException, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { RestClient } from '../runtime/rest.js';
import { setCondition as setRuntimeCondition } from '../runtime/conditions.js';
import type { ObjectState, PodServing } from './state.js';
import { objectKey, type ObjectRef } from './wire.js';

/** Receives the latest state of an object, at most about once per second per object. */
export interface StatusSink {
  apply(ref: ObjectRef, state: Readonly<ObjectState>): Promise<void>;
}

/** The fields of `.status` a state maps to; merged into the existing status. */
export type StatusPatch = Record<string, unknown>;
export type StatusMapper = (state: Readonly<ObjectState>) => StatusPatch;

/** Condition types the default mapping sets from a Failure report. */
export const CONDITION_DEGRADED = 'Degraded';
export const CONDITION_FAILED = 'Failed';

const SHA256_HEX = /^[a-f0-9]{64}$/;

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

/**
 * The generic mapping, following the outline in DESIGN.md:
 *   progress → status.progress {step, totalSteps, percent, etaSeconds} and status.stage;
 *   metrics → status.metrics {<name>: number, layers: [...]};
 *   completion/artifacts → status.outputs {<name>: string, digests: [{name, uri, sha256, sizeBytes}]}
 *     (the CRDs prune what they do not declare);
 *   serving (per pod) → status.serving (summed rates, worst latencies), status.bundleRevision.active,
 *     status.servedAdapters (the number of distinct adapters loaded anywhere).
 * Percent and ETA become integers (API conventions prefer them); rates and errors stay
 * numbers because they are measurements, rounded so jitter does not churn the object.
 */
export function defaultStatusMapper(state: Readonly<ObjectState>): StatusPatch {
  const status: StatusPatch = {};
  if (state.progress) {
    const p = state.progress;
    status.progress = {
      step: int(p.step),
      totalSteps: int(p.totalSteps),
      percent: Math.floor(Math.min(100, Math.max(0, finite(p.percent)))),
      etaSeconds: Math.ceil(Math.max(0, finite(p.etaSeconds))),
    };
    if (p.stage) status.stage = p.stage;
  }
  if (state.metrics) {
    const metrics: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(state.metrics.values).sort(([a], [b]) => a.localeCompare(b))) {
      if (Number.isFinite(value) && name !== 'layers') metrics[name] = round(value, 6);
    }
    if (state.metrics.layers.length > 0) {
      metrics.layers = [...state.metrics.layers]
        .sort((a, b) => a.index - b.index)
        .map((l) => ({ index: l.index, sparsityPercent: round(l.sparsityPercent, 3), rank: l.rank, reconstructionError: round(l.reconstructionError, 6) }));
    }
    status.metrics = metrics;
  }
  const artifacts = Object.values(state.artifacts).sort((a, b) => a.name.localeCompare(b.name));
  if (state.completion || artifacts.length > 0) {
    status.outputs = {
      ...(state.completion?.outputs ?? {}),
      // A malformed digest would make the API server reject the whole patch; leave it out.
      digests: artifacts
        .filter((a) => SHA256_HEX.test(a.sha256.toLowerCase()))
        .map((a) => ({ name: a.name, uri: a.uri, sha256: a.sha256.toLowerCase(), sizeBytes: int(a.sizeBytes) })),
    };
  }
  const replicas = Object.values(state.serving).sort((a, b) => a.pod.localeCompare(b.pod));
  if (replicas.length > 0) {
    status.serving = aggregateServing(replicas);
    status.bundleRevision = { active: replicas.filter((r) => r.activeRevision).map((r) => ({ pod: r.pod, revision: r.activeRevision })) };
    // A count, as the LoRAServer CRD declares it: the names can run into the thousands.
    status.servedAdapters = new Set(replicas.flatMap((r) => r.loadedAdapters)).size;
  }
  return status;
}

function aggregateServing(replicas: readonly PodServing[]): StatusPatch {
  const sum = (f: (r: PodServing) => number) => replicas.reduce((acc, r) => acc + finite(f(r)), 0);
  const max = (f: (r: PodServing) => number) => replicas.reduce((acc, r) => Math.max(acc, finite(f(r))), 0);
  return {
    requestsPerSecond: round(sum((r) => r.requestsPerSecond), 2),
    tokensPerSecond: round(sum((r) => r.tokensPerSecond), 1),
    // The slowest replica is what a user sees at the tail.
    p50LatencyMs: Math.round(max((r) => r.p50LatencyMs)),
    p99LatencyMs: Math.round(max((r) => r.p99LatencyMs)),
    queueDepth: int(sum((r) => r.queueDepth)),
  };
}

/** Sets or updates one condition in a list, keeping lastTransitionTime when the status is unchanged. */
export function setCondition(conditions: readonly Condition[], next: Omit<Condition, 'lastTransitionTime'>, now: Date): Condition[] {
  return setRuntimeCondition(conditions, next, now);
}

export interface MergePatchStatusSinkOptions {
  mapper?: StatusMapper;
  fieldManager?: string;
  now?: () => Date;
}

/**
 * Patches `/status` only, never the spec (GitOps tools would see drift otherwise).
 * A failure condition needs the existing conditions list (merge patch replaces lists),
 * so that write reads first and sends resourceVersion for optimistic concurrency.
 */
export class MergePatchStatusSink implements StatusSink {
  /** The runtime's client: one keep-alive connection, where client-node's typed API opens one per write. */
  private readonly rest: RestClient;
  private readonly mapper: StatusMapper;
  private readonly now: () => Date;
  private readonly lastWritten = new Map<string, string>();

  constructor(kubeConfig: KubeConfig, private readonly options: MergePatchStatusSinkOptions = {}) {
    this.rest = new RestClient(kubeConfig);
    this.mapper = options.mapper ?? defaultStatusMapper;
    this.now = options.now ?? (() => new Date());
  }

  async apply(ref: ObjectRef, state: Readonly<ObjectState>): Promise<void> {
    const status = this.mapper(state);
    const key = `${ref.uid}/${objectKey(ref)}`;
    const fingerprint = JSON.stringify({ status, failure: state.failure });
    if (this.lastWritten.get(key) === fingerprint) return;
    const target = this.target(ref);
    for (let attempt = 0; ; attempt++) {
      const body: Record<string, unknown> = { status: { ...status } };
      if (state.failure) {
        const current = await this.rest.request<{ metadata?: { resourceVersion?: string; uid?: string }; status?: { conditions?: Condition[] } }>(
          'GET', await this.rest.path(ref.apiVersion || 'tessera.dev/v1alpha1', ref.kind, ref.namespace, ref.name, 'status'),
        );
        if (current.metadata?.uid !== ref.uid) throw new Error(`${objectKey(ref)} was re-created (uid ${current.metadata?.uid ?? 'none'}, reports are for ${ref.uid})`);
        const f = state.failure;
        (body.status as Record<string, unknown>).conditions = setCondition(current.status?.conditions ?? [], {
          type: f.retryable ? CONDITION_DEGRADED : CONDITION_FAILED,
          status: 'True',
          reason: conditionReason(f.reason),
          message: f.message,
          observedGeneration: f.generation,
        }, this.now());
        body.metadata = { resourceVersion: current.metadata?.resourceVersion };
      }
      try {
        await this.rest.patch(target, 'merge', body, { subresource: 'status', fieldManager: this.options.fieldManager });
        break;
      } catch (err) {
        if (err instanceof ApiException && err.code === 409 && attempt < 2) continue;
        throw new Error(`cannot patch status of ${objectKey(ref)}: ${err instanceof ApiException ? `HTTP ${err.code} ${String(err.body).slice(0, 300)}` : String(err)}`, { cause: err });
      }
    }
    this.lastWritten.set(key, fingerprint);
  }

  /** Lets the sink forget an object that was deleted. */
  forget(ref: ObjectRef): void {
    this.lastWritten.delete(`${ref.uid}/${objectKey(ref)}`);
  }

  private target(ref: ObjectRef): KubernetesObject {
    return { apiVersion: ref.apiVersion || 'tessera.dev/v1alpha1', kind: ref.kind, metadata: { namespace: ref.namespace, name: ref.name } };
  }
}

/** Kubernetes requires a condition reason to be one CamelCase word; a worker's free text is folded into one. */
export function conditionReason(raw: string): string {
  const words = raw.split(/[^A-Za-z0-9]+/).filter((w) => w.length > 0);
  const reason = words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('').replace(/^[0-9]+/, '');
  return reason.length > 0 ? reason.slice(0, 1024) : 'WorkerFailed';
}

function finite(x: number): number {
  return Number.isFinite(x) ? x : 0;
}
function int(x: number): number {
  return Math.round(finite(x));
}
function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(finite(x) * f) / f;
}
