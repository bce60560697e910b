// The controller loop (controller-runtime's controller + handler packages): informer events
// become keys, workers take keys off a rate-limited queue and call `reconcile` with the key
// only, never the event, so the reconciler re-reads the current state from the cache.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import { objectKey, type EventHandlers, type Informer, type InformerTarget, type Kind } from './informer.js';
import { reconcileLogger } from './log.js';
import type { ControllerMetrics, ReconcileResult } from './metrics.js';
import { WorkQueue, type RateLimiter } from './workqueue.js';

export interface Result {
  /** Reconcile this key again after so many milliseconds (polling something without a watch). */
  requeueAfter?: number;
}

export interface ReconcileRequest {
  /** `namespace/name`, or `name` for cluster-scoped objects. */
  key: string;
  namespace: string | undefined;
  name: string;
}

export interface ReconcileContext {
  /** Carries {controller, key, namespace, name, reconcileID}. */
  log: Logger;
  reconcileID: string;
}

export type ReconcileFn = (request: ReconcileRequest, ctx: ReconcileContext) => Promise<Result | void>;

/** For specs that can never work: the error is logged and counted, the key is not retried. */
export class TerminalError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

export function isTerminal(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
    if (e instanceof TerminalError) return true;
  }
  return false;
}

/** Gets the shared informer for a kind; the manager's, or a fake in unit tests. */
export type InformerSource = <T extends KubernetesObject>(target: InformerTarget) => Informer<T>;

/** Decides whether an update is worth a reconcile; adds and deletes always are. */
export type UpdatePredicate = (oldObj: KubernetesObject, newObj: KubernetesObject) => boolean;

/** Ignores updates that changed only status or metadata other than generation, labels, finalizers or deletion. */
export const generationChanged: UpdatePredicate = (o, n) =>
  o.metadata?.generation !== n.metadata?.generation ||
  o.metadata?.deletionTimestamp !== n.metadata?.deletionTimestamp ||
  JSON.stringify(o.metadata?.finalizers ?? []) !== JSON.stringify(n.metadata?.finalizers ?? []);

export interface ControllerOptions {
  name: string;
  reconcile: ReconcileFn;
  informers: InformerSource;
  logger: Logger;
  /** Keys reconciled at the same time; one key is never reconciled by two workers at once. */
  workers?: number;
  clock?: Clock;
  rateLimiter?: RateLimiter;
  metrics?: ControllerMetrics;
}

export function splitKey(key: string): ReconcileRequest {
  const slash = key.indexOf('/');
  return slash < 0 ? { key, namespace: undefined, name: key } : { key, namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export function apiGroup(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}

/** Keys of the owners that control `obj` (ownerReferences with controller=true of the owner's group and kind). */
export function controllerOwnerKeys(obj: KubernetesObject, owner: Kind): string[] {
  const group = apiGroup(owner.apiVersion);
  const ns = obj.metadata?.namespace;
  return (obj.metadata?.ownerReferences ?? [])
    .filter((ref) => ref.controller === true && ref.kind === owner.kind && apiGroup(ref.apiVersion) === group)
    .map((ref) => (ns ? `${ns}/${ref.name}` : ref.name));
}

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  private readonly reconcileFn: ReconcileFn;
  private readonly informers: InformerSource;
  private readonly log: Logger;
  private readonly workers: number;
  private readonly metrics: ControllerMetrics | undefined;
  private readonly sources: Informer[] = [];
  private forKind: Kind | undefined;
  private running: Promise<void>[] = [];

  constructor(options: ControllerOptions) {
    this.name = options.name;
    this.reconcileFn = options.reconcile;
    this.informers = options.informers;
    this.log = options.logger.child({ controller: options.name });
    this.workers = Math.max(1, options.workers ?? 1);
    this.metrics = options.metrics;
    this.queue = new WorkQueue({
      clock: options.clock,
      rateLimiter: options.rateLimiter,
      onDepthChange: (depth) => this.metrics?.queueDepth(this.name, depth),
    });
  }

  /** Reconciles objects of `kind` itself; `predicate` can drop updates (e.g. generationChanged). */
  for(kind: InformerTarget, options: { predicate?: UpdatePredicate } = {}): this {
    this.forKind = kind;
    return this.watch(kind, (obj) => [objectKey(obj)], options.predicate);
  }

  /** Changes to objects of `kind` enqueue the For-object that controls them. */
  owns(kind: InformerTarget): this {
    const owner = this.forKind;
    if (!owner) throw new Error(`controller ${this.name}: call for(kind) before owns(${kind.kind}) so owned objects know their owner's kind`);
    return this.watch(kind, (obj) => controllerOwnerKeys(obj, owner));
  }

  /** Changes to objects of `kind` enqueue whatever keys `map` returns. */
  watches<T extends KubernetesObject>(kind: InformerTarget, map: (obj: T) => string[]): this {
    return this.watch(kind, map as (obj: KubernetesObject) => string[]);
  }

  /** The caches this controller reads; the manager waits for them before starting workers. */
  cachesToSync(): readonly Informer[] {
    return this.sources;
  }

  /** Waits for the caches, then runs the workers until stop(). */
  async start(signal?: AbortSignal): Promise<void> {
    for (const informer of this.sources) {
      if (!(await informer.waitForSync(signal))) return;
    }
    this.log.info({ workers: this.workers }, 'starting workers');
    for (let i = 0; i < this.workers; i++) this.running.push(this.worker());
  }

  /** Lets in-flight reconciles finish, then stops the workers. */
  async stop(): Promise<void> {
    await this.queue.shutDownWithDrain();
    await Promise.all(this.running);
    this.running = [];
  }

  /** Takes one key and reconciles it; false once the queue is shut down and empty. */
  async processNext(): Promise<boolean> {
    const key = await this.queue.get();
    if (key === undefined) return false;
    await this.reconcileKey(key);
    return true;
  }

  private async worker(): Promise<void> {
    while (await this.processNext()) {
      // processNext does the work; the loop only keeps the worker going until shutdown.
    }
  }

  private watch(kind: InformerTarget, map: (obj: KubernetesObject) => string[], predicate?: UpdatePredicate): this {
    const informer = this.informers(kind);
    const enqueue = (obj: KubernetesObject): void => {
      for (const key of map(obj)) this.queue.add(key);
    };
    const handlers: EventHandlers<KubernetesObject> = {
      onAdd: enqueue,
      onUpdate: (oldObj, newObj) => {
        if (predicate && !predicate(oldObj, newObj)) return;
        // Both: an owner reference that moved must wake the old owner and the new one.
        enqueue(oldObj);
        enqueue(newObj);
      },
      onDelete: enqueue,
    };
    informer.addEventHandler(handlers);
    if (!this.sources.includes(informer)) this.sources.push(informer);
    return this;
  }

  private async reconcileKey(key: string): Promise<void> {
    const request = splitKey(key);
    const reconcileID = randomUUID();
    // this.log already carries {controller}; repeating it would print the key twice.
    const log = reconcileLogger(this.log, { key, namespace: request.namespace, name: request.name, reconcileID });
    const started = performance.now();
    let outcome: ReconcileResult = 'success';
    try {
      const result = await this.reconcileFn(request, { log, reconcileID });
      this.queue.forget(key);
      if (result?.requeueAfter !== undefined && result.requeueAfter > 0) {
        outcome = 'requeue_after';
        this.queue.addAfter(key, result.requeueAfter);
      }
      log.debug({ requeueAfter: result?.requeueAfter }, 'reconciled');
    } catch (err) {
      if (isTerminal(err)) {
        outcome = 'terminal_error';
        this.queue.forget(key);
        log.error({ err }, 'reconcile failed with a terminal error; not retrying until the object changes');
      } else {
        outcome = 'error';
        this.queue.addRateLimited(key);
        log.error({ err, requeues: this.queue.numRequeues(key) }, 'reconcile failed; requeued with backoff');
      }
    } finally {
      this.queue.done(key);
      this.metrics?.reconciled(this.name, outcome, (performance.now() - started) / 1000);
    }
  }
}
