// Pod status as the kubelet reports it, built from the runner's view of its containers.
import type { V1ContainerState, V1ContainerStatus, V1Pod, V1PodCondition, V1PodStatus } from '@kubernetes/client-node';
import type { Terminated } from './container.js';

export type SlotState =
  | { kind: 'waiting'; reason: string; message?: string }
  | { kind: 'running'; startedAt: Date; pid: number | undefined }
  | { kind: 'terminated'; result: Terminated; pid: number | undefined };

export interface SlotView {
  name: string;
  image: string;
  state: SlotState;
  lastTerminated: Terminated | undefined;
  restartCount: number;
  ready: boolean;
  started: boolean;
}

export interface PodView {
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  reason?: string;
  message?: string;
  podIP: string;
  hostIP: string;
  startTime: Date;
  sandboxReady: boolean;
  initialized: boolean;
  init: SlotView[];
  containers: SlotView[];
}

function terminatedState(t: Terminated, pid: number | undefined): V1ContainerState {
  return {
    terminated: {
      exitCode: t.exitCode,
      signal: undefined,
      reason: t.reason,
      message: t.message,
      startedAt: t.startedAt,
      finishedAt: t.finishedAt,
      containerID: pid !== undefined ? `process://${pid}` : undefined,
    },
  };
}

function containerStatus(slot: SlotView): V1ContainerStatus {
  let state: V1ContainerState;
  let containerID: string | undefined;
  if (slot.state.kind === 'waiting') state = { waiting: { reason: slot.state.reason, message: slot.state.message } };
  else if (slot.state.kind === 'running') {
    state = { running: { startedAt: slot.state.startedAt } };
    containerID = slot.state.pid !== undefined ? `process://${slot.state.pid}` : undefined;
  } else {
    state = terminatedState(slot.state.result, slot.state.pid);
    containerID = slot.state.pid !== undefined ? `process://${slot.state.pid}` : undefined;
  }
  return {
    name: slot.name,
    image: slot.image,
    imageID: `process-node://${slot.image}`,
    containerID,
    ready: slot.ready,
    started: slot.started,
    restartCount: slot.restartCount,
    state,
    lastState: slot.lastTerminated ? terminatedState(slot.lastTerminated, undefined) : {},
  };
}

const OWN_CONDITIONS = new Set(['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready']);

function condition(previous: V1PodCondition[], type: string, ok: boolean, reason?: string): V1PodCondition {
  const status = ok ? 'True' : 'False';
  const before = previous.find((c) => c.type === type);
  const lastTransitionTime = before && before.status === status && before.lastTransitionTime ? before.lastTransitionTime : new Date();
  return { type, status, lastTransitionTime, ...(ok || !reason ? {} : { reason }) };
}

export function buildPodStatus(pod: V1Pod, view: PodView): V1PodStatus {
  const previous = pod.status?.conditions ?? [];
  const containersReady = view.containers.length > 0 && view.containers.every((c) => c.ready);
  const terminal = view.phase === 'Succeeded' || view.phase === 'Failed';
  const notReadyReason = terminal ? 'PodCompleted' : 'ContainersNotReady';
  const conditions: V1PodCondition[] = [
    ...previous.filter((c) => !OWN_CONDITIONS.has(c.type)),
    condition(previous, 'PodReadyToStartContainers', view.sandboxReady && !terminal),
    condition(previous, 'Initialized', view.initialized, 'ContainersNotInitialized'),
    condition(previous, 'ContainersReady', containersReady, notReadyReason),
    condition(previous, 'Ready', containersReady, notReadyReason),
  ];
  return {
    phase: view.phase,
    reason: view.reason,
    message: view.message,
    hostIP: view.hostIP,
    hostIPs: [{ ip: view.hostIP }],
    podIP: view.podIP,
    podIPs: [{ ip: view.podIP }],
    startTime: view.startTime,
    conditions,
    initContainerStatuses: view.init.map(containerStatus),
    containerStatuses: view.containers.map(containerStatus),
  };
}
