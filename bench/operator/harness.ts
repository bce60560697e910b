// What the operator bench runs on: the local control plane of test/cluster/ without a process
// node (so the 400 worker pods the children ask for stay Pending instead of becoming 400
// processes on a 2-core machine), a counting proxy in front of the apiserver, and the operator
// itself as a process (operator/main.ts, as in its pod) whose kubeconfig points at the proxy.
import { fork, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { ensureBinaries } from '../../test/cluster/binaries.js';
import { LocalControlPlane } from '../../test/cluster/control-plane.js';
import { exec } from '../../test/cluster/exec.js';
import { renderKubeconfig } from '../../test/cluster/kubeconfig.js';
import { repoRoot, toolPath } from '../../test/cluster/paths.js';
import { freePorts } from '../../test/cluster/ports.js';
import { httpGet, waitFor, waitForHttp } from '../../test/cluster/probe.js';
import { ManagedProcess } from '../../test/cluster/process.js';
import type { ProxyConfig, ProxyMessage, Tally } from './api-proxy.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface Plane {
  plane: LocalControlPlane;
  kubeConfig: KubeConfig;
  kubectl(args: readonly string[], input?: string): Promise<string>;
}

/** The control plane with the project's CRDs installed and the given namespaces ready for pods. */
export async function startPlane(dir: string, namespaces: readonly string[], log: (m: string) => void): Promise<Plane> {
  await ensureBinaries(log);
  const plane = await LocalControlPlane.start({ dir, log });
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(plane.kubeconfigPath);
  const kubectl = async (args: readonly string[], input?: string): Promise<string> => {
    const result = await exec(toolPath('kubectl'), ['--kubeconfig', plane.kubeconfigPath, ...args], input === undefined ? {} : { input });
    if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
    return result.stdout;
  };
  try {
    await kubectl(['apply', '--server-side', '-f', join(repoRoot, 'crds')]);
    await kubectl(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    for (const name of namespaces) await core.createNamespace({ body: { metadata: { name } } });
    // Pods are admitted only once their namespace's default ServiceAccount exists.
    await waitFor('default ServiceAccounts', async () => {
      for (const namespace of namespaces) await core.readNamespacedServiceAccount({ name: 'default', namespace });
      return true;
    }, 60_000);
    return { plane, kubeConfig, kubectl };
  } catch (err) {
    await plane.stop();
    throw err;
  }
}

export interface ApiProxy {
  port: number;
  snapshot(): Promise<Tally>;
  stop(): void;
}

export async function startApiProxy(plane: LocalControlPlane): Promise<ApiProxy> {
  const config: ProxyConfig = {
    upstreamPort: plane.apiServerPort,
    servingCertFile: plane.pki.apiserverCertFile, servingKeyFile: plane.pki.apiserverKeyFile,
    caCertFile: plane.pki.caCertFile, adminCertFile: plane.pki.adminCertFile, adminKeyFile: plane.pki.adminKeyFile,
  };
  const child: ChildProcess = fork(join(here, 'api-proxy.ts'), [JSON.stringify(config)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: ProxyMessage) => (m.type === 'ready' ? resolve(m.port) : reject(new Error(`api proxy sent ${m.type} before ready`))));
    child.once('exit', (code) => reject(new Error(`api proxy exited (code ${code}) before it was ready`)));
  });
  return {
    port,
    snapshot: () => new Promise<Tally>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('api proxy did not answer a snapshot within 10 s')), 10_000);
      const onMessage = (m: ProxyMessage): void => {
        if (m.type !== 'snapshot') return;
        clearTimeout(timer);
        child.off('message', onMessage);
        resolve(m.tally);
      };
      child.on('message', onMessage);
      child.send({ type: 'snapshot' });
    }),
    stop: () => {
      if (child.connected) child.disconnect();
    },
  };
}

export interface OperatorProcess {
  grpcPort: number;
  namespace: string;
  logFile: string;
  /** Prometheus text from its /metrics endpoint. */
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

/** operator/main.ts from source, as its Deployment runs it, with its kubeconfig pointing at the proxy. */
export async function startOperator(dir: string, plane: LocalControlPlane, proxyPort: number, namespace: string): Promise<OperatorProcess> {
  const kubeconfig = join(dir, 'operator.kubeconfig');
  await writeFile(kubeconfig, renderKubeconfig({
    server: `https://127.0.0.1:${proxyPort}`, caPem: plane.pki.caPem, certPem: plane.pki.admin.certPem, keyPem: plane.pki.admin.keyPem,
  }), { mode: 0o600 });
  const [metricsPort, healthPort, grpcPort] = (await freePorts(3)) as [number, number, number];
  const logFile = join(dir, 'operator.log');
  const proc = new ManagedProcess({
    name: 'tessera-operator', command: process.execPath, logFile, cwd: repoRoot,
    args: ['--import', 'tsx', join(repoRoot, 'operator', 'main.ts'),
      `--metrics-bind-address=127.0.0.1:${metricsPort}`, `--health-probe-bind-address=127.0.0.1:${healthPort}`,
      `--grpc-bind-address=127.0.0.1:${grpcPort}`, `--log-level=${process.env.TESSERA_BENCH_LOG_LEVEL ?? 'warn'}`, '--worker-image=ghcr.io/tessera-dev/tessera:bench'],
    env: { ...process.env, KUBECONFIG: kubeconfig, POD_NAMESPACE: namespace },
  });
  const died = proc.wait().then(async ({ code }) => {
    throw new Error(`the operator exited (code ${code}) before it was ready: ${(await readFile(logFile, 'utf8').catch(() => '')).slice(-2000)}`);
  });
  await Promise.race([waitForHttp('operator /readyz', `http://127.0.0.1:${healthPort}/readyz`, {}, 120_000), died]);
  died.catch(() => undefined);
  return {
    grpcPort, namespace, logFile,
    metrics: async () => (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`, {}, 10_000)).body,
    stop: () => proc.stop(5000),
  };
}

/** Sum of a Prometheus series' samples whose labels include all of `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(match[3]);
  }
  return sum;
}

/**
 * Waits until the operator has nothing left to do: no reconcile for `quietMs` and every work
 * queue empty. Returns false when that did not happen within `timeoutMs`.
 */
export async function waitQuiet(operator: OperatorProcess, quietMs: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let since = Date.now();
  while (Date.now() < deadline) {
    const text = await operator.metrics();
    const reconciles = metricSum(text, 'tessera_reconcile_total');
    const depth = metricSum(text, 'tessera_workqueue_depth');
    if (reconciles !== last || depth > 0) {
      last = reconciles;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return true;
    await new Promise((r) => setTimeout(r, 500));
  }
  return false;
}
