#!/usr/bin/env node
// tessera-operator: flags, structured logs, probe and metrics endpoints, signal handling; the
// controllers, the gRPC status hub and leader election start in run-controllers.ts.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { pino, type Logger } from 'pino';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { startControllers, type RunningControllers } from './run-controllers.js';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];
const TLS_MODES = ['self-signed', 'cert-manager'] as const;
type TlsMode = (typeof TLS_MODES)[number];

/** Long enough for in-flight scrapes and probes to finish, well inside the pod's 30 s grace period. */
const SHUTDOWN_GRACE_MS = 10_000;

/** `undefined` host means every interface; a whole flag of `0` disables the endpoint (controller-runtime). */
interface BindAddress {
  host: string | undefined;
  port: number;
}

interface OperatorOptions {
  metricsBindAddress: BindAddress | null;
  healthProbeBindAddress: BindAddress | null;
  grpcBindAddress: BindAddress | null;
  leaderElect: boolean;
  logLevel: LogLevel;
  workerImage: string;
  tlsMode: TlsMode;
  tlsSecretName: string;
  statusAddress: string | undefined;
  serviceName: string;
}

function parseBindAddress(value: string): BindAddress | null {
  if (value === '0') return null;
  // An unbracketed IPv6 host (what $(POD_IP) expands to on IPv6 clusters) splits at the last colon.
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^[\]]*)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new InvalidArgumentError(`invalid bind address ${JSON.stringify(value)}: expected HOST:PORT (":8080", "127.0.0.1:8080", "[::1]:8080"), ":0" for any free port, or "0" to disable`);
  }
  const host = match[1] ?? match[2];
  return { host: host === undefined || host === '' ? undefined : host, port };
}

/** The package version, found by walking up from this file: it sits at a different depth in `dist/` than in the source tree. */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 4; depth++, dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'tessera' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not at this level; keep walking up
    }
  }
  return '0.0.0-unknown';
}

function parseOptions(argv: readonly string[], version: string): OperatorOptions {
  const program = new Command('tessera-operator')
    .description('Runs the Tessera controllers for SparseFineTune, AdapterCluster and LoRAServer.')
    .version(version)
    .addOption(new Option('--metrics-bind-address <address>', 'address the Prometheus /metrics endpoint binds to; 0 disables it').default(parseBindAddress(':8080'), ':8080').argParser(parseBindAddress))
    .addOption(new Option('--health-probe-bind-address <address>', 'address /healthz and /readyz bind to; 0 disables them').default(parseBindAddress(':8081'), ':8081').argParser(parseBindAddress))
    .addOption(new Option('--grpc-bind-address <address>', 'address the gRPC status hub binds to').default(parseBindAddress(':9443'), ':9443').argParser(parseBindAddress))
    .addOption(new Option('--leader-elect', 'elect a leader with a coordination.k8s.io Lease so only one replica reconciles').default(false))
    .addOption(new Option('--log-level <level>', 'minimum level of the JSON logs').choices(LOG_LEVELS).default('info'))
    .addOption(new Option('--worker-image <image>', 'image of the tessera-worker pods the controllers create').default(`ghcr.io/tessera-dev/tessera:${version}`))
    .addOption(new Option('--tls-mode <mode>', 'who issues the gRPC serving certificate: the operator itself or cert-manager').choices(TLS_MODES).default('self-signed'))
    .addOption(new Option('--tls-secret-name <name>', 'Secret holding the gRPC CA and serving certificate (written by the operator when self-signed)').default('tessera-operator-tls'))
    .addOption(new Option('--service-name <name>', 'the operator Service that workers reach the status hub through').default('tessera-operator'))
    .addOption(new Option('--status-address <host:port>', 'address workers dial for the status hub (default: the Service\'s cluster DNS name and the gRPC port)'));
  program.parse(argv, { from: 'node' });
  return program.opts<OperatorOptions>();
}

function formatAddress(server: Server): string {
  const info = server.address() as AddressInfo;
  return info.family === 'IPv6' ? `[${info.address}]:${info.port}` : `${info.address}:${info.port}`;
}

function serve(name: string, bind: BindAddress, log: Logger, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer(handler);
    server.once('error', reject);
    server.listen(bind.port, bind.host, () => {
      server.off('error', reject);
      server.on('error', (err) => log.error({ err, server: name }, 'server error'));
      log.info({ server: name, address: formatAddress(server), port: (server.address() as AddressInfo).port }, `serving ${name}`);
      resolve(server);
    });
  });
}

function reply(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': contentType }).end(body);
}

async function main(): Promise<void> {
  const version = packageVersion();
  const options = parseOptions(process.argv, version);
  // Synchronous stdout so the last lines before process.exit are not lost.
  const log = pino({ level: options.logLevel, base: { component: 'operator' }, formatters: { level: (label) => ({ level: label }) } }, pino.destination({ dest: 1, sync: true }));
  log.info({ version, ...options, namespace: process.env.POD_NAMESPACE }, 'starting tessera-operator');

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({ name: 'tessera_build_info', help: 'Always 1; labels identify the running operator build.', labelNames: ['version'], registers: [registry] }).set({ version }, 1);

  let ready = false;
  let controllers: RunningControllers | undefined;
  const servers: Server[] = [];
  try {
    if (options.healthProbeBindAddress) {
      servers.push(await serve('health probes', options.healthProbeBindAddress, log, (req, res) => {
        const path = (req.url ?? '/').split('?')[0];
        if (path === '/healthz') return reply(res, 200, 'ok');
        if (path === '/readyz') return ready && (controllers?.synced ?? true) ? reply(res, 200, 'ok') : reply(res, 503, 'not ready: starting, syncing caches or shutting down');
        reply(res, 404, 'not found: serves /healthz and /readyz');
      }));
    }
    if (options.metricsBindAddress) {
      servers.push(await serve('metrics', options.metricsBindAddress, log, (req, res) => {
        if ((req.url ?? '/').split('?')[0] !== '/metrics') return reply(res, 404, 'not found: serves /metrics');
        registry.metrics().then(
          (body) => reply(res, 200, body, registry.contentType),
          (err: unknown) => {
            log.error({ err }, 'collecting metrics failed');
            reply(res, 500, 'collecting metrics failed');
          },
        );
      }));
    }
  } catch (err) {
    log.fatal({ err }, 'cannot bind an endpoint');
    process.exit(1);
  }
  if (options.grpcBindAddress) {
    try {
      controllers = await startControllers({
        namespace: process.env.POD_NAMESPACE ?? 'tessera-system',
        workerImage: options.workerImage,
        grpcHost: options.grpcBindAddress.host,
        grpcPort: options.grpcBindAddress.port,
        statusAddress: options.statusAddress,
        serviceName: options.serviceName,
        tlsMode: options.tlsMode,
        tlsSecretName: options.tlsSecretName,
        leaderElect: options.leaderElect,
        logger: log,
        registry,
        onLostLeadership: () => process.kill(process.pid, 'SIGTERM'),
      });
    } catch (err) {
      log.fatal({ err }, 'cannot start the controllers');
      process.exit(1);
    }
  } else log.warn('--grpc-bind-address=0: the status hub and controllers are off; serving probes and metrics only');
  ready = true;

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    ready = false;
    log.info({ signal }, 'shutting down');
    setTimeout(() => {
      log.error({ graceMs: SHUTDOWN_GRACE_MS }, 'shutdown took too long: exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS).unref();
    const closing = [controllers?.stop().catch((err: unknown) => log.error({ err }, 'stopping the controllers failed')), ...servers.map((server) => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    }))];
    void Promise.all(closing).then(() => {
      log.info('stopped');
      process.exit(0);
    });
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((err: unknown) => {
  console.error(JSON.stringify({ level: 'fatal', msg: 'tessera-operator failed to start', error: err instanceof Error ? err.message : String(err) }));
  process.exit(1);
});
