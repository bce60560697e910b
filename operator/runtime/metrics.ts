// The operator's Prometheus metrics, on a registry the manager owns (controller-runtime's
// controller_runtime_reconcile_* and workqueue_* under the tessera_ prefix).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type ReconcileResult = 'success' | 'error' | 'requeue_after' | 'terminal_error';

/** What one controller reports; the Controller takes this narrow view so unit tests can pass a fake. */
export interface ControllerMetrics {
  reconciled(controller: string, result: ReconcileResult, seconds: number): void;
  queueDepth(controller: string, depth: number): void;
}

export class RuntimeMetrics implements ControllerMetrics {
  readonly reconcileTotal: Counter<'controller' | 'result'>;
  readonly reconcileErrors: Counter<'controller'>;
  readonly reconcileDuration: Histogram<'controller'>;
  readonly workqueueDepth: Gauge<'controller'>;
  /** Incremented by the status hub for every worker report it turns into status. */
  readonly statusReports: Counter<'kind'>;
  readonly leader: Gauge;

  constructor(readonly registry: Registry = new Registry(), options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
    this.reconcileTotal = new Counter({
      name: 'tessera_reconcile_total',
      help: 'Reconciles per controller and result (success, error, requeue_after, terminal_error).',
      labelNames: ['controller', 'result'],
      registers: [registry],
    });
    this.reconcileErrors = new Counter({
      name: 'tessera_reconcile_errors_total',
      help: 'Reconciles that ended in an error, terminal or retried.',
      labelNames: ['controller'],
      registers: [registry],
    });
    this.reconcileDuration = new Histogram({
      name: 'tessera_reconcile_duration_seconds',
      help: 'Time one reconcile took.',
      labelNames: ['controller'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    });
    this.workqueueDepth = new Gauge({
      name: 'tessera_workqueue_depth',
      help: 'Keys waiting in a controller\'s work queue.',
      labelNames: ['controller'],
      registers: [registry],
    });
    this.statusReports = new Counter({
      name: 'tessera_status_reports_total',
      help: 'Worker reports received by the status hub, per kind of the object they speak for.',
      labelNames: ['kind'],
      registers: [registry],
    });
    this.leader = new Gauge({
      name: 'tessera_leader',
      help: '1 while this replica holds the leader Lease (or runs without leader election), else 0.',
      registers: [registry],
    });
  }

  reconciled(controller: string, result: ReconcileResult, seconds: number): void {
    this.reconcileTotal.inc({ controller, result });
    if (result === 'error' || result === 'terminal_error') this.reconcileErrors.inc({ controller });
    this.reconcileDuration.observe({ controller }, seconds);
  }

  queueDepth(controller: string, depth: number): void {
    this.workqueueDepth.set({ controller }, depth);
  }
}
