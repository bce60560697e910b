// A cluster the user already has (kind, a cloud cluster): the current context of $KUBECONFIG.
import { KubeConfig } from '@kubernetes/client-node';
import { helmFor, kubectlFor, type ClusterSession } from './session.js';
import type { ExecOptions } from './exec.js';

export class ExistingCluster implements ClusterSession {
  readonly kind = 'existing' as const;
  readonly kubeConfig = new KubeConfig();
  readonly nodeName = undefined;

  constructor(readonly kubeconfigPath: string) {
    this.kubeConfig.loadFromFile(kubeconfigPath);
  }

  kubectl(args: readonly string[], options?: ExecOptions) {
    return kubectlFor(this.kubeconfigPath)(args, options);
  }

  helm(args: readonly string[], options?: ExecOptions) {
    return helmFor(this.kubeconfigPath)(args, options);
  }

  async podLogs(namespace: string, pod: string, container?: string): Promise<string> {
    const result = await this.kubectl(['logs', '-n', namespace, pod, ...(container ? ['-c', container] : [])]);
    if (result.code !== 0) throw new Error(`kubectl logs ${namespace}/${pod} failed: ${result.stderr.trim()}`);
    return result.stdout;
  }
}
