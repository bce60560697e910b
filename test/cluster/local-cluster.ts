// The whole local cluster: the real control plane plus the process node, ready when the node is
// Ready and the default ServiceAccount exists (pods can be created).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { ensureBinaries } from './binaries.js';
import { LocalControlPlane } from './control-plane.js';
import { ProcessNode } from './node/process-node.js';
import { startReaper, type Reaper } from './reaper.js';
import { freePort } from './ports.js';
import { waitFor } from './probe.js';
import { repoRoot } from './paths.js';
import { helmFor, kubectlFor, type ClusterSession } from './session.js';

export interface LocalClusterOptions {
  /** Per-run folder; a fresh temp folder by default. */
  dir?: string;
  gpus?: number;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export class LocalCluster implements ClusterSession {
  readonly kind = 'local' as const;
  readonly kubeConfig: KubeConfig;

  private constructor(
    readonly dir: string,
    readonly plane: LocalControlPlane,
    readonly node: ProcessNode,
    private readonly ownsDir: boolean,
    private readonly reaper: Reaper,
  ) {
    this.kubeConfig = new KubeConfig();
    this.kubeConfig.loadFromFile(plane.kubeconfigPath);
  }

  get kubeconfigPath(): string {
    return this.plane.kubeconfigPath;
  }

  get nodeName(): string {
    return this.node.name;
  }

  readonly kubectl = (args: readonly string[], options?: Parameters<ReturnType<typeof kubectlFor>>[1]) => kubectlFor(this.kubeconfigPath)(args, options);
  readonly helm = (args: readonly string[], options?: Parameters<ReturnType<typeof helmFor>>[1]) => helmFor(this.kubeconfigPath)(args, options);

  async podLogs(namespace: string, pod: string, container?: string): Promise<string> {
    const file = this.node.logFile(namespace, pod, container);
    if (!file) throw new Error(`the process node has no logs for ${namespace}/${pod}${container ? ` container ${container}` : ''}`);
    return readFile(file, 'utf8');
  }

  static async start(options: LocalClusterOptions = {}): Promise<LocalCluster> {
    const log = options.log ?? (() => undefined);
    await ensureBinaries((m) => log(m));
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'tessera-cluster-')));
    // Started first, so nothing of the run can outlive a harness that is killed while starting.
    const reaper = startReaper(dir);
    let plane: LocalControlPlane;
    try {
      plane = await LocalControlPlane.start({ dir, log: (m) => log(m) });
    } catch (err) {
      reaper.stop();
      throw err;
    }
    let node: ProcessNode | undefined;
    try {
      const kubeConfig = new KubeConfig();
      kubeConfig.loadFromFile(plane.kubeconfigPath);
      node = new ProcessNode({
        kubeConfig,
        gpus: options.gpus ?? 2,
        dir: join(dir, 'node'),
        runDir: dir,
        repoRoot,
        apiServerHost: '127.0.0.1',
        apiServerPort: plane.apiServerPort,
        kubeletPort: await freePort(),
        servingCert: await readFile(plane.pki.nodeServingCertFile, 'utf8'),
        servingKey: await readFile(plane.pki.nodeServingKeyFile, 'utf8'),
        log,
      });
      await node.start();
      const cluster = new LocalCluster(dir, plane, node, options.dir === undefined, reaper);
      await cluster.waitUntilUsable();
      log('cluster ready', { kubeconfig: plane.kubeconfigPath });
      return cluster;
    } catch (err) {
      await node?.stop();
      await plane.stop();
      reaper.stop();
      throw err;
    }
  }

  private async waitUntilUsable(): Promise<void> {
    const core = this.kubeConfig.makeApiClient(CoreV1Api);
    await waitFor(`node ${this.node.name} Ready and schedulable`, async () => {
      const node = await core.readNode({ name: this.node.name });
      const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      const blocked = node.spec?.taints?.some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
      return Boolean(ready) && !blocked;
    }, 60_000);
    await waitFor('ServiceAccount default/default and ConfigMap kube-root-ca.crt', async () => {
      await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
      await core.readNamespacedConfigMap({ name: 'kube-root-ca.crt', namespace: 'default' });
      return true;
    }, 60_000);
  }

  /** Stops the node's pods and the control plane; a temp folder it made is removed unless TESSERA_KEEP_CLUSTER_DIR is set. */
  async stop(): Promise<void> {
    await this.node.stop();
    await this.plane.stop();
    const leaked = (): string[] => [...this.plane.runningComponents(), ...this.node.leakedProcessGroups().map((pid) => `pod process group ${pid}`)];
    // SIGKILLed group members may take a moment to be reaped by init.
    await waitFor('every cluster process to exit', async () => leaked().length === 0, 5000, 100).catch(() => {
      throw new Error(`processes outlived the local cluster: ${leaked().join(', ')}`);
    });
    this.reaper.stop();
    if (this.ownsDir && !process.env.TESSERA_KEEP_CLUSTER_DIR) await rm(this.dir, { recursive: true, force: true });
  }
}
