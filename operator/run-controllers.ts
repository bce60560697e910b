// Starts what the operator is for: the status hub (with its TLS) and the manager running the
// three controllers. With leader election only the leader takes worker streams, since its
// controllers send the directives. Kept out of main.ts so the entry point stays flags, endpoints and signals.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { Manager } from './manager/manager.js';
import { LeaderElector } from './runtime/leader-election.js';
import { RestClient } from './runtime/rest.js';
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
  /** Run the controllers only while holding the Lease; every replica serves the status hub. */
  leaderElect: boolean;
  logger: Logger;
  registry: Registry;
  /** Called when leadership is lost: the process must exit and restart, as controller-runtime's does. */
  onLostLeadership: () => void;
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

  let leading = !options.leaderElect;
  const hub: StatusHub = createKubeStatusHub({ kubeConfig, logger, registry: options.registry, accepting: () => leading });
  const port = await hub.listen(`${options.grpcHost ?? '0.0.0.0'}:${options.grpcPort}`, credentials);
  logger.info({ port }, 'status hub listening');

  const reconciles = new Counter({ name: 'tessera_reconcile_total', help: 'Reconciles by controller and outcome.', labelNames: ['controller', 'result'], registers: [options.registry] });
  const duration = new Histogram({ name: 'tessera_reconcile_duration_seconds', help: 'Reconcile duration by controller.', labelNames: ['controller'], registers: [options.registry] });
  const depth = new Gauge({ name: 'tessera_workqueue_depth', help: 'Keys waiting in each controller\'s work queue.', labelNames: ['controller'], registers: [options.registry] });
  const manager = new Manager({
    kubeConfig, logger, caBundlePem, hub,
    settings: { image: options.workerImage, statusAddress: options.statusAddress ?? `${serviceDns}:${options.grpcPort}`, caConfigMap: 'tessera-ca', tokenAudience: 'tessera.dev' },
    onQueueDepth: (kind, n) => depth.set({ controller: kind }, n),
    onDeleted: (ref) => hub.forget(ref),
    onReconcile: (kind, outcome, seconds) => {
      reconciles.inc({ controller: kind, result: outcome });
      duration.observe({ controller: kind }, seconds);
    },
  });
  let elector: LeaderElector | undefined;
  if (options.leaderElect) {
    elector = new LeaderElector(new RestClient(kubeConfig), { namespace, name: 'tessera-operator-leader', releaseOnCancel: true }, {
      onStartedLeading: () => {
        leading = true;
        logger.info({ identity: elector?.identity }, 'elected leader: starting controllers');
        manager.start().catch((err: unknown) => {
          logger.fatal({ err }, 'controllers failed to start');
          options.onLostLeadership();
        });
      },
      onStoppedLeading: () => {
        if (!leading) return;
        logger.error('lost leadership: stopping');
        options.onLostLeadership();
      },
      onNewLeader: (identity) => logger.info({ leader: identity }, 'leader observed'),
    }, logger);
    void elector.start();
  } else await manager.start();
  return {
    // A standby replica is ready: it serves the hub and is waiting to lead.
    get synced() {
      return leading ? manager.synced : true;
    },
    async stop() {
      leading = false;
      await elector?.stop({ release: true });
      await manager.stop();
      await hub.close();
      stopTls();
    },
  };
}
