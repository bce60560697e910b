// The manager (controller-runtime's manager): one KubeConfig, one informer per kind shared by
// every controller, the metrics registry, the probe and metrics endpoints, leader election, and
// an orderly shutdown. Caches run on every replica so a standby is warm; controllers run only
// on the leader.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { applyObject, patchStatus } from './apply.js';
import { systemClock, type Clock } from './clock.js';
import { Controller, type ControllerOptions } from './controller.js';
import { EventRecorder } from './events.js';
import { SharedInformer, type InformerOptions, type InformerTarget } from './informer.js';
import { defaultIdentity, LeaderElector, type LeaderElectionConfig } from './leader-election.js';
import { createLogger } from './log.js';
import { RuntimeMetrics } from './metrics.js';
import { RestClient } from './rest.js';

export interface BindAddress {
  /** Every interface when absent. */
  host?: string;
  /** 0 picks a free port (tests). */
  port: number;
}

export interface ManagerOptions {
  kubeConfig: KubeConfig;
  logger?: Logger;
  /** Absent: this replica always leads (single replica, local runs). */
  leaderElection?: LeaderElectionConfig;
  /** Serves /metrics; absent or null disables it. */
  metricsAddress?: BindAddress | null;
  /** Serves /healthz and /readyz; absent or null disables them. */
  probeAddress?: BindAddress | null;
  registry?: Registry;
  clock?: Clock;
  /** Tells this replica's Events apart; defaults to the pod name. */
  instance?: string;
  /** Per-informer overrides (tests inject watch/list or restart delays). */
  informerOptions?: Partial<InformerOptions<KubernetesObject>>;
}

export type NewControllerOptions = Omit<ControllerOptions, 'informers' | 'logger' | 'metrics' | 'clock'> & { logger?: Logger };

export class Manager {
  readonly kubeConfig: KubeConfig;
  readonly rest: RestClient;
  readonly log: Logger;
  readonly metrics: RuntimeMetrics;
  readonly events: EventRecorder;
  private readonly clock: Clock;
  private readonly informers = new Map<string, SharedInformer>();
  private readonly controllers: Controller[] = [];
  private readonly elector: LeaderElector | undefined;
  private readonly servers: { metrics?: Server; probe?: Server } = {};
  private readonly stopController = new AbortController();
  private started = false;
  private controllersStarted = false;
  private leadershipLost = false;
  private stopping: Promise<void> | undefined;
  private settle: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private readonly finished: Promise<void>;

  constructor(private readonly options: ManagerOptions) {
    this.kubeConfig = options.kubeConfig;
    this.rest = new RestClient(options.kubeConfig);
    this.log = options.logger ?? createLogger();
    this.clock = options.clock ?? systemClock;
    this.metrics = new RuntimeMetrics(options.registry);
    const instance = options.instance ?? defaultIdentity();
    this.events = new EventRecorder(this.rest, { reportingInstance: instance, logger: this.log, clock: this.clock });
    this.finished = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // Nobody may await wait(); an unobserved rejection must not crash the process on its own.
    this.finished.catch(() => undefined);
    if (options.leaderElection) {
      this.elector = new LeaderElector(this.rest, { identity: instance, ...options.leaderElection }, {
        onStartedLeading: () => this.startControllers(),
        onStoppedLeading: () => this.onStoppedLeading(),
      }, this.log, this.clock);
    }
  }

  get registry(): Registry {
    return this.metrics.registry;
  }

  /** The informer for a kind (and namespace), created on first use and shared afterwards. */
  informer<T extends KubernetesObject>(target: InformerTarget): SharedInformer<T> {
    const id = `${target.apiVersion}/${target.kind}/${target.namespace ?? ''}`;
    let informer = this.informers.get(id);
    if (!informer) {
      informer = new SharedInformer(target, this.rest, { logger: this.log, clock: this.clock, ...this.options.informerOptions });
      this.informers.set(id, informer);
      if (this.started) informer.start();
    }
    return informer as unknown as SharedInformer<T>;
  }

  /** A controller whose watches use the shared informers; it runs while this replica leads. */
  controller(options: NewControllerOptions): Controller {
    const controller = new Controller({
      ...options,
      logger: options.logger ?? this.log,
      informers: (target) => this.informer(target),
      metrics: this.metrics,
      clock: this.clock,
    });
    this.controllers.push(controller);
    if (this.controllersStarted) void controller.start(this.stopController.signal);
    return controller;
  }

  /** Server-side apply as the operator's field manager. */
  apply<T extends KubernetesObject>(obj: T): Promise<T> {
    return applyObject(this.rest, obj);
  }

  /** Status through /status, only when it changes something. */
  patchStatus<T extends KubernetesObject & { status?: unknown }>(obj: T, status: Record<string, unknown>): Promise<T | undefined> {
    return patchStatus(this.rest, obj, status);
  }

  isLeader(): boolean {
    return this.elector ? this.elector.isLeader() : this.controllersStarted;
  }

  /** All caches filled, and either leading or standing by in the election. */
  isReady(): boolean {
    return this.started && !this.leadershipLost && [...this.informers.values()].every((i) => i.hasSynced());
  }

  /** Bound ports of the endpoints, once started. */
  addresses(): { metrics?: number; probe?: number } {
    const port = (s?: Server): number | undefined => (s?.address() as AddressInfo | null)?.port;
    return { metrics: port(this.servers.metrics), probe: port(this.servers.probe) };
  }

  async start(): Promise<void> {
    if (this.started) throw new Error('the manager was already started; create a new one');
    this.started = true;
    if (this.options.metricsAddress) this.servers.metrics = await this.listen(this.options.metricsAddress, 'metrics');
    if (this.options.probeAddress) this.servers.probe = await this.listen(this.options.probeAddress, 'probes');
    for (const informer of this.informers.values()) informer.start();
    if (this.elector) {
      this.metrics.leader.set(0);
      void this.elector.start();
    } else {
      this.startControllers();
    }
  }

  /** Resolves when the manager stopped; rejects when leadership was lost (the process should exit and restart). */
  wait(): Promise<void> {
    return this.finished;
  }

  /** SIGTERM/SIGINT stop the manager gracefully; returns a function that removes the handlers. */
  handleSignals(): () => void {
    const onSignal = (signal: NodeJS.Signals): void => {
      this.log.info({ signal }, 'shutting down');
      void this.stop();
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    return () => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    };
  }

  /** Drains the queues, stops the informers, releases the Lease, closes the endpoints. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown(undefined);
    return this.stopping;
  }

  private async shutdown(cause: Error | undefined): Promise<void> {
    this.stopController.abort();
    await Promise.all(this.controllers.map((c) => c.stop()));
    await Promise.all([...this.informers.values()].map((i) => i.stop()));
    await this.elector?.stop({ release: true });
    await this.events.flush();
    await Promise.all(Object.values(this.servers).map((s) => new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    })));
    this.log.info('manager stopped');
    if (cause) this.settle?.reject(cause);
    else this.settle?.resolve();
  }

  private startControllers(): void {
    if (this.controllersStarted || this.stopController.signal.aborted) return;
    this.controllersStarted = true;
    this.metrics.leader.set(1);
    for (const controller of this.controllers) {
      controller.start(this.stopController.signal).catch((err: unknown) => this.log.error({ err, controller: controller.name }, 'controller failed to start'));
    }
  }

  private onStoppedLeading(): void {
    this.metrics.leader.set(0);
    if (this.stopController.signal.aborted) return;
    // Another replica may already be reconciling: stop at once rather than act on a lease we lost.
    this.leadershipLost = true;
    this.log.error('leader election lost; stopping the manager');
    this.stopping ??= this.shutdown(new Error('leader election lost: another replica holds the Lease'));
  }

  private listen(address: BindAddress, what: 'metrics' | 'probes'): Promise<Server> {
    const server = createServer((req, res) => {
      this.serve(what, req, res).catch((err: unknown) => {
        this.log.error({ err, path: req.url }, 'endpoint failed');
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`cannot serve ${what} on ${address.host ?? '*'}:${address.port}: ${err.message}`, { cause: err })));
      server.listen(address.port, address.host, () => resolve(server));
    });
  }

  private async serve(what: 'metrics' | 'probes', req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (what === 'metrics' && path === '/metrics') {
      const body = await this.registry.metrics();
      res.writeHead(200, { 'Content-Type': this.registry.contentType });
      res.end(body);
      return;
    }
    if (what === 'probes' && (path === '/healthz' || path === '/readyz')) {
      const ok = path === '/healthz' ? !this.leadershipLost : this.isReady();
      res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(ok ? 'ok\n' : `${path.slice(1)} check failed\n`);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('not found\n');
  }
}
