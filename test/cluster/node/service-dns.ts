// Cluster DNS for pods of the process node, without a DNS server: each container gets an
// /etc/hosts (bind-mounted in its mount namespace) naming every Service after the IP of a ready
// pod its selector matches. EndpointSlices cannot help: the apiserver rejects loopback addresses
// in them. There is no kube-proxy here, so this works when a Service's port equals its target
// port, as Tessera's do.
import { writeFile } from 'node:fs/promises';
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import { ListWatch } from './list-watch.js';
import type { NodeApi } from './api.js';

export class ServiceDns {
  private readonly services = new Map<string, V1Service>();
  private readonly pods = new Map<string, V1Pod>();
  private watches: ListWatch<V1Service | V1Pod>[] = [];

  constructor(private readonly api: NodeApi, private readonly log: (message: string, fields?: Record<string, unknown>) => void) {}

  async start(): Promise<void> {
    const track = <T extends V1Service | V1Pod>(map: Map<string, T>) => ({
      onSync: (items: T[]) => {
        map.clear();
        for (const i of items) map.set(`${i.metadata?.namespace}/${i.metadata?.name}`, i);
      },
      onEvent: (type: string, obj: T) => {
        const key = `${obj.metadata?.namespace}/${obj.metadata?.name}`;
        if (type === 'DELETED') map.delete(key);
        else map.set(key, obj);
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

  async write(file: string, podIP: string, hostname: string): Promise<string> {
    await writeFile(file, this.hostsFile(podIP, hostname));
    return file;
  }

  stop(): void {
    for (const w of this.watches) w.stop();
  }
}
