// Starts what the operator is for: the status hub (with its TLS) and the manager running the
// three controllers. Kept out of main.ts so the entry point stays flags, endpoints and signals.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import { Manager } from './manager/manager.js';
import { createKubeStatusHub, type StatusHub } from './status/index.js';
import { hubCredentials, staticServerCredentials, TlsStore } from './tls/index.js';

export interface ControllerOptions {
  namespace: string;
  workerImage: string;
  grpcHost: string | undefined;
  grpcPort: number;
  /** host:port workers dial; defaults to the operator Service's DNS name. */
  statusAddress: string | undefined;
  serviceName: string;
  tlsMode: 'self-signed' | 'cert-manager';
  tlsSecretName: string;
  logger: Logger;
  registry: Registry;
}

export interface RunningControllers {
  readonly synced: boolean;
  stop(): Promise<void>;
}

async function certManagerMaterial(kubeConfig: KubeConfig, namespace: string, secretName: string) {
  const secret = await kubeConfig.makeApiClient(CoreV1Api).readNamespacedSecret({ name: secretName, namespace });
  const field = (key: string): string => {
    const value = secret.data?.[key];
    if (!value) throw new Error(`Secret ${namespace}/${secretName} written by cert-manager has no ${key}`);
    return Buffer.from(value, 'base64').toString('utf8');
  };
  return { certPem: field('tls.crt'), keyPem: field('tls.key'), caBundlePem: field('ca.crt') };
}

export async function startControllers(options: ControllerOptions): Promise<RunningControllers> {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  const { logger, namespace } = options;
  const serviceDns = `${options.serviceName}.${namespace}.svc`;

  let credentials;
  let caBundlePem: string;
  let stopTls = (): void => undefined;
  if (options.tlsMode === 'cert-manager') {
    const material = await certManagerMaterial(kubeConfig, namespace, options.tlsSecretName);
    credentials = staticServerCredentials(material);
    caBundlePem = material.caBundlePem;
  } else {
    const tlsOptions = {
      kubeConfig, namespace, secretName: options.tlsSecretName, caNamespaces: [],
      names: { dnsNames: [serviceDns, `${serviceDns}.cluster.local`, options.serviceName], ipAddresses: process.env.POD_IP ? [process.env.POD_IP] : [] },
    };
    const managed = await hubCredentials({ ...tlsOptions, logger });
    credentials = managed.credentials;
    stopTls = managed.stop;
    caBundlePem = (await new TlsStore(tlsOptions).ensure()).caBundlePem;
  }

  const hub: StatusHub = createKubeStatusHub({ kubeConfig, logger, registry: options.registry });
  const port = await hub.listen(`${options.grpcHost ?? '0.0.0.0'}:${options.grpcPort}`, credentials);
  logger.info({ port }, 'status hub listening');

  const reconciles = new Counter({ name: 'tessera_reconcile_total', help: 'Reconciles by controller and outcome.', labelNames: ['controller', 'result'], registers: [options.registry] });
  const duration = new Histogram({ name: 'tessera_reconcile_duration_seconds', help: 'Reconcile duration by controller.', labelNames: ['controller'], registers: [options.registry] });
  const manager = new Manager({
    kubeConfig, logger, caBundlePem,
    settings: { image: options.workerImage, statusAddress: options.statusAddress ?? `${serviceDns}:${options.grpcPort}`, caConfigMap: 'tessera-ca', tokenAudience: 'tessera.dev' },
    onReconcile: (kind, outcome, seconds) => {
      reconciles.inc({ controller: kind, result: outcome });
      duration.observe({ controller: kind }, seconds);
    },
  });
  await manager.start();
  return {
    get synced() {
      return manager.synced;
    },
    async stop() {
      await manager.stop();
      await hub.close();
      stopTls();
    },
  };
}
