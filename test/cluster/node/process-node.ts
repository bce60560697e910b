// The process node: a Node that stands in for the kubelet, running every pod bound to it as local
// processes (see pod-runner.ts), with leases, status, pod IPs on loopback, PVC folders and logs.
import { spawnSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Server } from 'node:https';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { systemClock, type Clock } from '../../../operator/runtime/clock.js';
import { NodeApi } from './api.js';
import { PROJECT_IMAGE_REPOSITORY } from './images.js';
import { LoopbackIpPool } from './ip-pool.js';
import { startKubeletServer } from './kubelet-server.js';
import { ListWatch } from './list-watch.js';
import { defaultShape, nodeObject, nodeStatus, type NodeShape } from './node-object.js';
import { PodRunner } from './pod-runner.js';
import { LocalPathProvisioner } from './provisioner.js';
import { ServiceDns } from './service-dns.js';
import { VolumeError } from './volumes.js';

export interface ProcessNodeOptions {
  kubeConfig: KubeConfig;
  name?: string;
  gpus?: number;
  /** Folder for pod sandboxes (volumes, logs) and claim folders. */
  dir: string;
  /** The run's folder, exported to pod processes as RUN_ENV (process.ts); `dir` by default. */
  runDir?: string;
  /** Time for token refreshes; the system clock by default. */
  clock?: Clock;
  repoRoot: string;
  apiServerHost: string;
  apiServerPort: number;
  kubeletPort: number;
  servingCert: string;
  servingKey: string;
  projectImages?: string[];
  backoff?: { initialMs: number; maxMs: number };
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

const LEASE_SECONDS = 40;
const LEASE_RENEW_MS = 10_000;
const STATUS_REPORT_MS = 60_000;

/** Whether this host lets us give containers their own mount namespace (root with CAP_SYS_ADMIN). */
export function canUseMountNamespaces(): boolean {
  const result = spawnSync('unshare', ['--mount', '--propagation', 'private', 'true'], { stdio: 'ignore', timeout: 5000 });
  return result.status === 0;
}

export class ProcessNode {
  readonly name: string;
  private readonly api: NodeApi;
  private readonly shape: NodeShape;
  private readonly ips = new LoopbackIpPool();
  private readonly runners = new Map<string, PodRunner>();
  private readonly byName = new Map<string, PodRunner>();
  private readonly provisioner: LocalPathProvisioner;
  private readonly dns: ServiceDns;
  private readonly log: (message: string, fields?: Record<string, unknown>) => void;
  private readonly readySince = new Date();
  private pods: ListWatch<V1Pod> | undefined;
  private timers: NodeJS.Timeout[] = [];
  private server: Server | undefined;
  private mountNamespaces = false;

  constructor(private readonly options: ProcessNodeOptions) {
    this.name = options.name ?? 'tessera-local-0';
    this.api = new NodeApi(options.kubeConfig);
    this.shape = defaultShape(this.name, options.gpus ?? 2, options.kubeletPort);
    this.log = options.log ?? (() => undefined);
    this.provisioner = new LocalPathProvisioner(this.api, join(options.dir, 'claims'), this.log);
    this.dns = new ServiceDns(this.api, this.log);
  }

  /** Host folder behind a claim, to stage model files before pods start. */
  claimFolder(namespace: string, claim: string): string {
    return this.provisioner.claimFolder(namespace, claim);
  }

  async start(): Promise<void> {
    this.mountNamespaces = canUseMountNamespaces();
    if (!this.mountNamespaces) this.log('mount namespaces unavailable: pods with volume mounts will fail with a clear reason');
    await mkdir(join(this.options.dir, 'pods'), { recursive: true });
    this.server = await startKubeletServer({
      cert: this.options.servingCert, key: this.options.servingKey, host: this.shape.hostIP, port: this.shape.kubeletPort,
      logs: {
        logFile: (ns, pod, container, previous) => this.byName.get(`${ns}/${pod}`)?.logFile(container, previous),
        isRunning: (ns, pod) => {
          const phase = this.byName.get(`${ns}/${pod}`)?.phase;
          return phase === 'Running' || phase === 'Pending';
        },
      },
    });
    await this.api.registerNode(nodeObject(this.shape));
    await this.heartbeat(true);
    this.timers.push(setInterval(() => void this.heartbeat(false), LEASE_RENEW_MS));
    this.timers.push(setInterval(() => void this.reportStatus(), STATUS_REPORT_MS));
    await this.provisioner.start();
    await this.dns.start();
    this.pods = new ListWatch<V1Pod>({
      kubeConfig: this.options.kubeConfig,
      path: '/api/v1/pods',
      query: { fieldSelector: `spec.nodeName=${this.name}` },
      list: () => this.api.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${this.name}` }),
      onSync: (items) => this.sync(items),
      onEvent: (type, pod) => (type === 'DELETED' ? this.gone(pod) : this.observe(pod)),
      log: this.log,
    });
    await this.pods.start();
  }

  private async heartbeat(withStatus: boolean): Promise<void> {
    try {
      await this.api.renewLease(this.name, LEASE_SECONDS, new Date());
      if (withStatus) await this.reportStatus();
    } catch (err) {
      this.log('node heartbeat failed', { node: this.name, err: String(err) });
    }
  }

  private async reportStatus(): Promise<void> {
    try {
      await this.api.patchNodeStatus(this.name, nodeStatus(this.shape, new Date(), this.readySince));
    } catch (err) {
      this.log('node status update failed', { node: this.name, err: String(err) });
    }
  }

  private sync(items: V1Pod[]): void {
    const seen = new Set(items.map((p) => p.metadata?.uid ?? ''));
    for (const [uid] of this.runners) {
      if (!seen.has(uid)) this.gone({ metadata: { uid } });
    }
    for (const pod of items) this.observe(pod);
  }

  private observe(pod: V1Pod): void {
    const uid = pod.metadata?.uid ?? '';
    const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
    let runner = this.runners.get(uid);
    if (!runner) {
      const phase = pod.status?.phase;
      if (phase === 'Succeeded' || phase === 'Failed') {
        // Finished before this node (re)started: nothing to run, only a pending deletion to complete.
        if (pod.metadata?.deletionTimestamp) void this.api.finalizePodDeletion(pod);
        return;
      }
      if (pod.metadata?.deletionTimestamp) {
        void this.api.finalizePodDeletion(pod);
        return;
      }
      const ip = pod.spec?.hostNetwork ? this.shape.hostIP : this.ips.allocate();
      runner = new PodRunner(pod, ip, {
        api: this.api,
        hostIP: this.shape.hostIP,
        apiServerHost: this.options.apiServerHost,
        apiServerPort: this.options.apiServerPort,
        podsDir: join(this.options.dir, 'pods'),
        images: { projectImages: this.options.projectImages ?? [PROJECT_IMAGE_REPOSITORY], repoRoot: this.options.repoRoot },
        mountNamespaces: this.mountNamespaces,
        claimPath: (ns, claim) => this.claimPath(ns, claim),
        backoff: this.options.backoff ?? { initialMs: 1000, maxMs: 20_000 },
        started: (pid) => this.startedPids.add(pid),
        runDir: this.options.runDir ?? this.options.dir,
        clock: this.options.clock ?? systemClock,
        hostsFile: (file, podIP, hostname) => this.dns.write(file, podIP, hostname),
        releaseHostsFile: (file) => this.dns.release(file),
        log: this.log,
      });
      this.runners.set(uid, runner);
      this.byName.set(key, runner);
      this.log('starting pod', { pod: key, podIP: ip });
      void runner.start();
    } else runner.update(pod);
    if (pod.metadata?.deletionTimestamp && !this.terminating.has(uid)) {
      this.terminating.add(uid);
      const grace = pod.metadata.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
      const current = runner;
      void current.terminate(grace).then(() => this.release(uid, key, current), (err: unknown) => this.log('pod termination failed', { pod: key, err: String(err) }));
    }
  }

  private readonly terminating = new Set<string>();
  private readonly startedPids = new Set<number>();

  /** Container process groups this node started that still have a live member. */
  leakedProcessGroups(): number[] {
    return [...this.startedPids].filter((pid) => {
      try {
        process.kill(-pid, 0);
        return true;
      } catch {
        return false;
      }
    });
  }

  private gone(pod: V1Pod): void {
    const uid = pod.metadata?.uid ?? '';
    const runner = this.runners.get(uid);
    if (!runner) return;
    const key = runner.key;
    void runner.kill().then(() => this.release(uid, key, runner));
  }

  private release(uid: string, key: string, runner: PodRunner): void {
    if (this.runners.get(uid) !== runner) return;
    this.runners.delete(uid);
    this.terminating.delete(uid);
    if (this.byName.get(key) === runner) this.byName.delete(key);
    if (runner.podIP !== this.shape.hostIP) this.ips.release(runner.podIP);
  }

  private async claimPath(namespace: string, claim: string): Promise<string> {
    const pvc = await this.api.claim(namespace, claim);
    if (!pvc) throw new VolumeError('ClaimNotFound', `persistentvolumeclaim ${namespace}/${claim} not found`);
    if (pvc.status?.phase !== 'Bound') throw new VolumeError('ClaimNotBound', `persistentvolumeclaim ${namespace}/${claim} is ${pvc.status?.phase ?? 'Pending'}, not Bound`);
    const folder = this.provisioner.claimFolder(namespace, claim);
    await mkdir(folder, { recursive: true });
    return folder;
  }

  /** A container's log so far (current run unless `previous`). */
  logFile(namespace: string, pod: string, container?: string, previous = false): string | undefined {
    return this.byName.get(`${namespace}/${pod}`)?.logFile(container, previous);
  }

  /** Pods whose processes this node is running or stopping. */
  runningPods(): string[] {
    return [...this.runners.values()].map((r) => r.key);
  }

  /** Stops watching and kills every pod process; the Node object stays, as when a kubelet stops. */
  async stop(): Promise<void> {
    this.pods?.stop();
    this.provisioner.stop();
    this.dns.stop();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await Promise.all([...this.runners.values()].map((r) => r.kill()));
    this.runners.clear();
    this.byName.clear();
    // A container caught between spawn and its running state, or still in a deleted pod's grace
    // period, has no runner slot to kill it: a stopping kubelet takes its processes down too.
    for (const pid of this.leakedProcessGroups()) {
      this.log('killing a pod process group that outlived its runner', { pid });
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
