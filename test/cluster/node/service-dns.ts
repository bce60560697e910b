// Cluster DNS for pods of the process node, without a DNS server: each container gets an
// /etc/hosts (bind-mounted in its mount namespace) naming every Service after the IP of a ready
// pod its selector matches. EndpointSlices cannot help: the apiserver rejects loopback addresses
// in them. There is no kube-proxy here, so this works when a Service's port equals its target
// port, as Tessera's do.
//
// DNS answers change as Services and endpoints do, so the files do too: a container's file is
// rewritten whenever what it would say changes, for as long as the container runs. And a Service
// created just before a pod must be in that pod's first file: before writing, the node waits
// (briefly) until its watch has delivered every Service the apiserver lists at that moment.
import { writeFile } from 'node:fs/promises';
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import { ListWatch } from './list-watch.js';
import type { NodeApi } from './api.js';

/** Coalesces the bursts of pod status events a rollout makes. */
const REFRESH_DELAY_MS = 50;
/** How long a container start waits for the Service watch to catch up before writing what it has. */
const CATCH_UP_TIMEOUT_MS = 3000;

interface LiveFile {
  podIP: string;
  hostname: string;
  content: string;
}

export class ServiceDns {
  private readonly services = new Map<string, V1Service>();
  private readonly pods = new Map<string, V1Pod>();
  private watches: ListWatch<V1Service | V1Pod>[] = [];
  private readonly live = new Map<string, LiveFile>();
  private refreshTimer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly api: NodeApi, private readonly log: (message: string, fields?: Record<string, unknown>) => void) {}

  async start(): Promise<void> {
    const track = <T extends V1Service | V1Pod>(map: Map<string, T>) => ({
      onSync: (items: T[]) => {
        map.clear();
        for (const i of items) map.set(`${i.metadata?.namespace}/${i.metadata?.name}`, i);
        this.scheduleRefresh();
      },
      onEvent: (type: string, obj: T) => {
        const key = `${obj.metadata?.namespace}/${obj.metadata?.name}`;
        if (type === 'DELETED') map.delete(key);
        else map.set(key, obj);
        this.scheduleRefresh();
      },
    });
    const services = new ListWatch<V1Service>({
      kubeConfig: this.api.kubeConfig, path: '/api/v1/services', log: this.log,
      list: () => this.api.core.listServiceForAllNamespaces(), ...track(this.services),
    });
    const pods = new ListWatch<V1Pod>({
      kubeConfig: this.api.kubeConfig, path: '/api/v1/pods', log: this.log,
      list: () => this.api.core.listPodForAllNamespaces(), ...track(this.pods),
    });
    this.watches = [services, pods] as ListWatch<V1Service | V1Pod>[];
    await Promise.all([services.start(), pods.start()]);
  }

  /** hosts(5) lines for every Service with a ready endpoint. */
  hostsFile(podIP: string, hostname: string): string {
    const lines = ['127.0.0.1\tlocalhost', `${podIP}\t${hostname}`];
    for (const svc of [...this.services.values()].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))) {
      const ns = svc.metadata?.namespace ?? '';
      const name = svc.metadata?.name ?? '';
      const selector = Object.entries(svc.spec?.selector ?? {});
      if (selector.length === 0) continue;
      const ip = [...this.pods.values()]
        .filter((p) => p.metadata?.namespace === ns && !p.metadata?.deletionTimestamp && selector.every(([k, v]) => p.metadata?.labels?.[k] === v))
        .filter((p) => p.status?.podIP && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
        .map((p) => p.status?.podIP as string)
        .sort()[0];
      if (ip) lines.push(`${ip}\t${name}.${ns}.svc ${name}.${ns}.svc.cluster.local`);
    }
    return `${lines.join('\n')}\n`;
  }

  /**
   * Writes a container's hosts file and keeps it current until `release`. Waits first for the
   * Service watch to hold every Service a fresh (quorum) list returns, so none created before the
   * pod is missing; on a slow watch it writes what it has, and the refresh adds the rest.
   */
  async write(file: string, podIP: string, hostname: string): Promise<string> {
    await this.catchUp();
    const content = this.hostsFile(podIP, hostname);
    await writeFile(file, content);
    this.live.set(file, { podIP, hostname, content });
    return file;
  }

  /** The container has exited: its file no longer needs to follow the cluster. */
  release(file: string): void {
    this.live.delete(file);
  }

  private async catchUp(): Promise<void> {
    let listed: V1Service[];
    try {
      listed = (await this.api.core.listServiceForAllNamespaces()).items;
    } catch (err) {
      this.log('cannot list Services for a hosts file; using the watch cache', { err: String(err) });
      return;
    }
    const cached = (svc: V1Service): boolean => this.services.get(`${svc.metadata?.namespace}/${svc.metadata?.name}`)?.metadata?.uid === svc.metadata?.uid;
    const deadline = Date.now() + CATCH_UP_TIMEOUT_MS;
    // A Service deleted (or replaced) since the list never turns up: that is what the bound is for.
    while (!listed.every(cached)) {
      if (Date.now() > deadline) {
        this.log('Service watch still behind the apiserver; writing the hosts file from the cache', { missing: listed.filter((s) => !cached(s)).map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`) });
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private scheduleRefresh(): void {
    if (this.live.size === 0 || this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      this.writing = this.writing.then(() => this.refresh());
    }, REFRESH_DELAY_MS);
  }

  /**
   * Rewrites files whose answer changed. In place, not by rename: the container sees the file
   * through a bind mount of this very inode, so a renamed replacement would never reach it.
   */
  private async refresh(): Promise<void> {
    for (const [file, entry] of this.live) {
      const content = this.hostsFile(entry.podIP, entry.hostname);
      if (content === entry.content) continue;
      entry.content = content;
      await writeFile(file, content).catch((err: unknown) => this.log('cannot refresh a hosts file', { file, err: String(err) }));
    }
  }

  stop(): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    this.live.clear();
    for (const w of this.watches) w.stop();
  }
}
