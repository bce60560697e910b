// The cluster a test run talks to: the local control plane this harness starts, or an existing one.
import { KubeConfig } from '@kubernetes/client-node';
import { exec, type ExecOptions, type ExecResult } from './exec.js';
import { toolPath } from './paths.js';

export interface ClusterSession {
  /** 'local': the control plane and process node of this harness; 'existing': the current kube context. */
  readonly kind: 'local' | 'existing';
  readonly kubeconfigPath: string;
  readonly kubeConfig: KubeConfig;
  /** Name of the node pods are scheduled to (the process node for 'local'). */
  readonly nodeName: string | undefined;
  kubectl(args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  helm(args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /** A container's output so far; on 'local' read from the process node, elsewhere through `kubectl logs`. */
  podLogs(namespace: string, pod: string, container?: string): Promise<string>;
}

let current: ClusterSession | undefined;

export function setSession(session: ClusterSession | undefined): void {
  current = session;
}

/** The session the global test fixture opened; throws when integration tests run without it. */
export function session(): ClusterSession {
  if (!current) throw new Error('no cluster session: integration tests must run with test/integration/global-fixture.ts');
  return current;
}

export function kubectlFor(kubeconfigPath: string) {
  return (args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> =>
    exec(toolPath('kubectl'), ['--kubeconfig', kubeconfigPath, ...args], options);
}

export function helmFor(kubeconfigPath: string) {
  return (args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> =>
    exec(toolPath('helm'), ['--kubeconfig', kubeconfigPath, ...args], {
      ...options,
      env: { HELM_CACHE_HOME: '/tmp/tessera-helm/cache', HELM_CONFIG_HOME: '/tmp/tessera-helm/config', HELM_DATA_HOME: '/tmp/tessera-helm/data', ...options.env },
    });
}
