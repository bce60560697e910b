// Runs one pod bound to the process node: volumes, init containers in order, then containers
// supervised with the pod's restartPolicy and probes; deletion stops them with the grace period.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { Clock } from '../../../operator/runtime/clock.js';
import { RUN_ENV } from '../process.js';
import type { NodeApi } from './api.js';
import { ContainerProcess, type Mount, type Terminated } from './container.js';
import { containerEnv, EnvError, expand } from './env.js';
import { resolveCommand, UnsupportedImageError, type ImageMapping, type ResolvedCommand } from './images.js';
import { buildPodStatus, type PodView, type SlotState, type SlotView } from './pod-status.js';
import { ProbeLoop } from './probes.js';
import { prepareVolumes, VolumeError } from './volumes.js';

export interface PodRunnerContext {
  api: NodeApi;
  hostIP: string;
  apiServerHost: string;
  apiServerPort: number;
  podsDir: string;
  images: ImageMapping;
  mountNamespaces: boolean;
  claimPath(namespace: string, claim: string): Promise<string>;
  /** Restart back-off: the kubelet uses 10 s doubling to 5 min; tests want it shorter. */
  backoff: { initialMs: number; maxMs: number };
  /** Every container process group started, so the harness can prove none outlives it. */
  started(pid: number): void;
  /** The run's folder, exported to every container process as RUN_ENV so leak checks see it. */
  runDir: string;
  clock: Clock;
  /** Writes the container's /etc/hosts (Service names → endpoint pod IPs), kept current until released; returns its path. */
  hostsFile(file: string, podIP: string, hostname: string): Promise<string>;
  releaseHostsFile(file: string): void;
  log(message: string, fields?: Record<string, unknown>): void;
}

interface Slot extends SlotView {
  spec: V1Container;
  process: ContainerProcess | undefined;
  probes: ProbeLoop[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function newSlot(spec: V1Container): Slot {
  return {
    name: spec.name, image: spec.image ?? '', spec,
    state: { kind: 'waiting', reason: 'ContainerCreating' },
    lastTerminated: undefined, restartCount: 0, ready: false, started: false, process: undefined, probes: [],
  };
}

export class PodRunner {
  readonly key: string;
  readonly podDir: string;
  private readonly view: PodView;
  private readonly init: Slot[];
  private readonly containers: Slot[];
  private terminating = false;
  /** What to cancel when the pod stops: the deadline timer, token refreshes. */
  private readonly cancels: (() => void)[] = [];
  private volumes = new Map<string, string>();
  private statusDirty = false;
  private statusWriting: Promise<void> | undefined;
  private finished: Promise<void> | undefined;
  private readonly wakers = new Set<() => void>();

  constructor(private pod: V1Pod, readonly podIP: string, private readonly ctx: PodRunnerContext) {
    this.key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
    this.podDir = join(ctx.podsDir, pod.metadata?.uid ?? 'unknown');
    this.init = (pod.spec?.initContainers ?? []).map(newSlot);
    this.containers = (pod.spec?.containers ?? []).map(newSlot);
    this.view = {
      phase: 'Pending', podIP, hostIP: ctx.hostIP, startTime: new Date(), sandboxReady: false,
      initialized: this.init.length === 0, init: this.init, containers: this.containers,
    };
  }

  get uid(): string {
    return this.pod.metadata?.uid ?? '';
  }

  get phase(): PodView['phase'] {
    return this.view.phase;
  }

  /** Latest object from the watch; the spec of a running pod is immutable apart from what we ignore. */
  update(pod: V1Pod): void {
    this.pod = pod;
  }

  logFile(container: string | undefined, previous = false): string | undefined {
    const slot = container ? [...this.containers, ...this.init].find((s) => s.name === container) : this.containers[0];
    if (!slot) return undefined;
    const attempt = previous ? slot.restartCount - 1 : slot.restartCount;
    if (attempt < 0) return undefined;
    return join(this.podDir, 'logs', slot.name, `${attempt}.log`);
  }

  containerNames(): string[] {
    return [...this.init, ...this.containers].map((s) => s.name);
  }

  start(): Promise<void> {
    this.finished ??= this.run().catch((err: unknown) => {
      this.ctx.log('pod runner failed', { pod: this.key, err });
      this.fail('RunnerError', err instanceof Error ? err.message : String(err));
    });
    return this.finished;
  }

  private async run(): Promise<void> {
    await mkdir(join(this.podDir, 'logs'), { recursive: true });
    this.markDirty();
    const deadline = this.pod.spec?.activeDeadlineSeconds;
    if (deadline !== undefined) {
      const timer = setTimeout(() => void this.deadlineExceeded(deadline), deadline * 1000);
      timer.unref();
      this.cancels.push(() => clearTimeout(timer));
    }
    if (!(await this.setUp())) return;
    for (const slot of this.init) {
      const ok = await this.supervise(slot, true);
      if (!ok || this.terminating) return this.settle();
    }
    this.view.initialized = true;
    this.markDirty();
    await Promise.all(this.containers.map((slot) => this.supervise(slot, false)));
    this.settle();
  }

  /** Volumes and commands; retries what may appear later (a Secret, a ConfigMap), fails what never can. */
  private async setUp(): Promise<boolean> {
    for (;;) {
      if (this.terminating) return false;
      try {
        for (const slot of [...this.init, ...this.containers]) resolveCommand(this.ctx.images, slot.spec);
        this.volumes = await prepareVolumes({
          api: this.ctx.api, pod: this.pod, podDir: this.podDir, podIP: this.podIP, hostIP: this.ctx.hostIP,
          claimPath: (ns, claim) => this.ctx.claimPath(ns, claim),
          clock: this.ctx.clock,
          onStop: (cancel) => this.cancels.push(cancel),
          log: (m, f) => this.ctx.log(m, { pod: this.key, ...f }),
        });
        this.view.sandboxReady = true;
        return true;
      } catch (err) {
        if (err instanceof UnsupportedImageError) {
          for (const slot of [...this.init, ...this.containers]) slot.state = { kind: 'waiting', reason: err.reason, message: err.message };
          this.fail(err.reason, err.message);
          return false;
        }
        const reason = err instanceof VolumeError ? err.reason : 'ContainerCreating';
        const message = err instanceof Error ? err.message : String(err);
        for (const slot of [...this.init, ...this.containers]) slot.state = { kind: 'waiting', reason, message };
        this.markDirty();
        await this.pause(2000);
      }
    }
  }

  private mountsFor(spec: V1Container): Mount[] {
    return (spec.volumeMounts ?? []).map((m) => {
      const source = this.volumes.get(m.name);
      if (source === undefined) throw new VolumeError('VolumeNotFound', `container ${spec.name} mounts volume ${m.name}, which the pod does not define`);
      return { source: m.subPath ? join(source, m.subPath) : source, target: m.mountPath, readOnly: m.readOnly ?? false };
    });
  }

  /** Runs a container until it should no longer restart; true when its last run succeeded. */
  private async supervise(slot: Slot, init: boolean): Promise<boolean> {
    const policy = init && this.pod.spec?.restartPolicy === 'Always' ? 'OnFailure' : (this.pod.spec?.restartPolicy ?? 'Always');
    let backoff = this.ctx.backoff.initialMs;
    for (;;) {
      if (this.terminating) return false;
      let result: Terminated;
      try {
        result = await this.runOnce(slot, init);
      } catch (err) {
        const reason = err instanceof EnvError ? err.reason : 'StartError';
        const message = err instanceof Error ? err.message : String(err);
        const now = new Date();
        result = { exitCode: 128, signal: null, startedAt: now, finishedAt: now, reason, message };
      }
      slot.state = { kind: 'terminated', result, pid: slot.process?.pid };
      slot.ready = false;
      this.markDirty();
      const restart = !this.terminating && (policy === 'Always' || (policy === 'OnFailure' && result.exitCode !== 0));
      if (!restart) return result.exitCode === 0;
      slot.lastTerminated = result;
      slot.restartCount++;
      slot.state = { kind: 'waiting', reason: 'CrashLoopBackOff', message: `back-off ${Math.round(backoff / 1000)}s restarting failed container=${slot.name} pod=${this.pod.metadata?.name}` };
      this.markDirty();
      await this.pause(backoff);
      backoff = Math.min(backoff * 2, this.ctx.backoff.maxMs);
    }
  }

  private async runOnce(slot: Slot, init: boolean): Promise<Terminated> {
    const command = resolveCommand(this.ctx.images, slot.spec);
    const env = await containerEnv(
      { api: this.ctx.api, pod: this.pod, podIP: this.podIP, hostIP: this.ctx.hostIP, apiServerHost: this.ctx.apiServerHost, apiServerPort: this.ctx.apiServerPort },
      slot.spec,
    );
    env[RUN_ENV] = this.ctx.runDir;
    const cwd = slot.spec.workingDir ?? command.defaultCwd ?? this.podDir;
    const mounts = this.mountsFor(slot.spec);
    let hosts: string | undefined;
    if (this.ctx.mountNamespaces) {
      hosts = await this.ctx.hostsFile(join(this.podDir, `hosts-${slot.name}-${slot.restartCount}`), this.podIP, this.pod.metadata?.name ?? '');
      mounts.push({ source: hosts, target: '/etc/hosts', readOnly: true });
    }
    try {
      return await this.runProcess(slot, init, command, env, cwd, mounts);
    } finally {
      if (hosts) this.ctx.releaseHostsFile(hosts);
    }
  }

  private async runProcess(slot: Slot, init: boolean, command: ResolvedCommand, env: Record<string, string>, cwd: string, mounts: Mount[]): Promise<Terminated> {
    // In a real container the image's files are the root file system, which no volume can hide.
    if (mounts.length > 0 && command.imageRoot) mounts.push({ source: command.imageRoot, target: command.imageRoot, readOnly: true });
    const proc = await ContainerProcess.start(
      // Kubernetes expands $(VAR) in command and args from the container's environment.
      { name: slot.name, argv: command.argv.map((arg) => expand(arg, env)), env, cwd, mounts, mountNamespaces: this.ctx.mountNamespaces, logDir: join(this.podDir, 'logs', slot.name) },
      slot.restartCount,
    );
    slot.process = proc;
    if (proc.pid !== undefined) this.ctx.started(proc.pid);
    // The pod was stopped while this container was starting: stopContainers found no process to stop.
    if (this.terminating) proc.signal('SIGKILL');
    slot.state = { kind: 'running', startedAt: proc.startedAt, pid: proc.pid };
    slot.started = true;
    const target = { podIP: this.podIP, container: slot.spec, env, mountNamespacePid: this.ctx.mountNamespaces ? proc.pid : undefined };
    if (!init) {
      if (slot.spec.readinessProbe) {
        slot.probes.push(new ProbeLoop(slot.spec.readinessProbe, target, (ok) => {
          slot.ready = ok && slot.state.kind === 'running';
          this.markDirty();
        }));
      } else slot.ready = true;
      if (slot.spec.livenessProbe) {
        slot.probes.push(new ProbeLoop(slot.spec.livenessProbe, target, (ok) => {
          if (!ok) {
            this.ctx.log('liveness probe failed; restarting container', { pod: this.key, container: slot.name });
            void proc.stop((slot.spec.livenessProbe?.terminationGracePeriodSeconds ?? this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000);
          }
        }));
      }
      for (const p of slot.probes) p.start();
    }
    this.view.phase = 'Running';
    this.markDirty();
    const result = await proc.exited();
    for (const p of slot.probes) p.stop();
    slot.probes = [];
    return result;
  }

  private settle(): void {
    if (this.view.phase === 'Failed' || this.view.phase === 'Succeeded') return;
    const slots = this.view.initialized ? this.containers : this.init;
    const failed = slots.some((s) => s.state.kind !== 'terminated' || s.state.result.exitCode !== 0);
    this.view.phase = failed ? 'Failed' : 'Succeeded';
    this.markDirty();
  }

  private fail(reason: string, message: string): void {
    this.view.phase = 'Failed';
    this.view.reason = reason;
    this.view.message = message;
    this.markDirty();
  }

  private async deadlineExceeded(seconds: number): Promise<void> {
    if (this.view.phase === 'Succeeded' || this.view.phase === 'Failed') return;
    this.fail('DeadlineExceeded', `Pod was active on the node longer than the specified deadline (${seconds} s)`);
    await this.stopContainers(0);
  }

  /** A back-off wait that termination cuts short. */
  private async pause(ms: number): Promise<void> {
    let waker: (() => void) | undefined;
    const woken = new Promise<void>((r) => (waker = r));
    if (waker) this.wakers.add(waker);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((r) => (timer = setTimeout(r, ms))), woken]);
    clearTimeout(timer);
    if (waker) this.wakers.delete(waker);
  }

  private async stopContainers(graceMs: number): Promise<void> {
    this.terminating = true;
    for (const wake of this.wakers) wake();
    await Promise.all([...this.init, ...this.containers].map(async (slot) => {
      for (const p of slot.probes) p.stop();
      if (slot.state.kind === 'running' && slot.process) await slot.process.stop(graceMs);
    }));
  }

  /** Graceful deletion: SIGTERM, SIGKILL after the grace period, then the kubelet's final delete. */
  async terminate(graceSeconds: number): Promise<void> {
    await this.stopContainers(graceSeconds * 1000);
    await this.finished;
    this.dispose();
    await this.statusWriting;
    await this.ctx.api.finalizePodDeletion(this.pod);
  }

  /** Immediate stop when the pod object is already gone. */
  async kill(): Promise<void> {
    await this.stopContainers(0);
    this.dispose();
  }

  private dispose(): void {
    for (const cancel of this.cancels.splice(0)) cancel();
    this.statusDirty = false;
  }

  private markDirty(): void {
    this.statusDirty = true;
    this.statusWriting ??= this.flushStatus().finally(() => (this.statusWriting = undefined));
  }

  /** One write in flight at a time; changes during a write are coalesced into the next. */
  private async flushStatus(): Promise<void> {
    await sleep(20);
    while (this.statusDirty) {
      this.statusDirty = false;
      try {
        await this.ctx.api.patchPodStatus(this.pod, buildPodStatus(this.pod, this.view));
      } catch (err) {
        this.ctx.log('pod status update failed', { pod: this.key, err });
        if (this.terminating) return;
        await sleep(500);
        this.statusDirty = true;
      }
    }
  }
}

export type { SlotState };
