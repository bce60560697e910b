// Where the harness keeps what it builds and what one run writes.
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Pinned upstream releases the local control plane is built from. */
export const KUBERNETES_VERSION = 'v1.34.4';
export const ETCD_VERSION = 'v3.6.5';
export const HELM_VERSION = 'v3.19.0';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The user cache folder (XDG convention), so CI on the same machine reuses earlier builds. */
export function cacheRoot(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'tessera');
}

/**
 * Folder holding kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and helm.
 * TESSERA_K8S_ASSETS overrides it, as KUBEBUILDER_ASSETS does for envtest.
 */
export function assetsDir(): string {
  const override = process.env.TESSERA_K8S_ASSETS;
  if (override && override.length > 0) return resolve(override);
  return join(cacheRoot(), 'k8s', `${KUBERNETES_VERSION}-etcd${ETCD_VERSION}-helm${HELM_VERSION}`);
}

export type Tool = 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kubectl' | 'etcd' | 'helm';

export function toolPath(tool: Tool): string {
  return join(assetsDir(), tool);
}

/** State of a cluster started by `npm run cluster -- up`, so `down` and `kubeconfig` can find it. */
export function stateDir(): string {
  return join(repoRoot, '.tessera', 'cluster');
}
