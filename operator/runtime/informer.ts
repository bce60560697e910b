// A shared informer: list, then watch from the list's resourceVersion, into a cache keyed
// `namespace/name` (client-go's reflector + store). Unlike client-node's informer it never stops:
// any error (410 Gone included) re-lists after a backoff and diffs the fresh list against the
// cache, so handlers see the adds, updates and deletes they missed; updates carry the old object.
import { Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { sleep, systemClock, type Clock } from './clock.js';
import { RestClient, type ListResult } from './rest.js';
import { deepFreeze } from './semantic.js';

export interface Kind {
  apiVersion: string;
  kind: string;
}

export interface InformerTarget extends Kind {
  /** Only this namespace; all namespaces when absent. */
  namespace?: string;
}

export interface EventHandlers<T> {
  onAdd?(obj: T): void;
  onUpdate?(oldObj: T, newObj: T): void;
  onDelete?(obj: T): void;
}

/** What controllers need from an informer; the fakes in unit tests implement just this. */
export interface Informer<T extends KubernetesObject = KubernetesObject> {
  readonly target: InformerTarget;
  addEventHandler(handlers: EventHandlers<T>): void;
  /** The cached object (deep-frozen: copy it with deepCopy before changing it). */
  get(key: string): T | undefined;
  list(namespace?: string): T[];
  hasSynced(): boolean;
  waitForSync(signal?: AbortSignal): Promise<boolean>;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** Opens a watch stream; the returned controller aborts it. `done` is called exactly once. */
export type WatchFn = (
  path: string,
  query: Record<string, string | number | boolean | undefined>,
  onEvent: (type: WatchEventType, obj: unknown) => void,
  done: (err: unknown) => void,
) => Promise<AbortController>;

export type ListFn<T> = () => Promise<ListResult<T>>;

export interface InformerOptions<T> {
  logger: Logger;
  clock?: Clock;
  /** Defaults to a generic list through discovery; tests inject a fake. */
  list?: ListFn<T>;
  /** Defaults to client-node's Watch; tests wrap it to break connections. */
  watch?: WatchFn;
  /** The resource's plural name; found by discovery when absent. */
  plural?: string;
  /** Delay before the n-th restart in a row (n ≥ 1); injectable so tests can gate restarts. */
  restartDelay?: (attempt: number) => Promise<void>;
}

/** `namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc). */
export function objectKey(obj: KubernetesObject): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name ?? ''}` : (obj.metadata?.name ?? '');
}

export function watchPath(target: InformerTarget, plural: string): string {
  const base = target.apiVersion.includes('/') ? `/apis/${target.apiVersion}` : `/api/${target.apiVersion}`;
  return `${base}${target.namespace ? `/namespaces/${encodeURIComponent(target.namespace)}` : ''}/${plural}`;
}

const BACKOFF_BASE_MS = 800;
const BACKOFF_MAX_MS = 30_000;

export class SharedInformer<T extends KubernetesObject = KubernetesObject> implements Informer<T> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: EventHandlers<T>[] = [];
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly listFn: ListFn<T>;
  private readonly watchFn: WatchFn;
  private readonly restartDelay: (attempt: number) => Promise<void>;
  private readonly stopController = new AbortController();
  private synced = false;
  private syncWaiters: Array<() => void> = [];
  private resourceVersion = '';
  private abortWatch: AbortController | undefined;
  private running: Promise<void> | undefined;
  private readonly plural: string | undefined;

  constructor(
    readonly target: InformerTarget,
    private readonly rest: RestClient,
    options: InformerOptions<T>,
  ) {
    this.log = options.logger.child({ informer: `${target.apiVersion}/${target.kind}`, ...(target.namespace ? { namespace: target.namespace } : {}) });
    this.clock = options.clock ?? systemClock;
    this.listFn = options.list ?? (() => rest.list<T>(target.apiVersion, target.kind, target.namespace));
    this.watchFn = options.watch ?? clientNodeWatch(rest.kubeConfig);
    this.plural = options.plural;
    this.restartDelay = options.restartDelay ?? ((attempt) => sleep(this.clock, backoffMs(attempt), this.stopController.signal));
  }

  /** Handlers added after the cache filled get the cached objects as adds, as in client-go. */
  addEventHandler(handlers: EventHandlers<T>): void {
    this.handlers.push(handlers);
    for (const obj of this.cache.values()) handlers.onAdd?.(obj);
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(namespace?: string): T[] {
    const all = [...this.cache.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace);
  }

  hasSynced(): boolean {
    return this.synced;
  }

  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.synced) return Promise.resolve(true);
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.syncWaiters.push(() => resolve(true));
      signal?.addEventListener('abort', () => resolve(this.synced), { once: true });
    });
  }

  start(): void {
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    this.abortWatch?.abort();
    await this.running;
  }

  private async run(): Promise<void> {
    const stopped = this.stopController.signal;
    let failures = 0;
    let needList = true;
    while (!stopped.aborted) {
      try {
        if (needList) await this.relist();
        needList = false;
        const opened = this.clock.now();
        await this.watchOnce();
        // A clean close (server timeout) resumes from the last resourceVersion without a list;
        // one that closes at once (a proxy that cuts streams) is backed off, not spun on.
        if (this.clock.now() - opened < 1000 && !stopped.aborted) await this.restartDelay(++failures);
        else failures = 0;
      } catch (err) {
        if (stopped.aborted) break;
        failures++;
        needList = true;
        const gone = isGone(err);
        this.log[gone || failures < 3 ? 'debug' : 'warn']({ err, failures }, gone ? 'watch expired (410 Gone); re-listing' : 'list/watch failed; restarting with backoff');
        await this.restartDelay(failures);
      }
    }
  }

  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.listFn();
    const fresh = new Map<string, T>();
    for (const item of items) fresh.set(objectKey(item), deepFreeze(item));
    for (const [key, oldObj] of this.cache) {
      if (!fresh.has(key)) {
        this.cache.delete(key);
        this.emit((h) => h.onDelete?.(oldObj));
      }
    }
    for (const [key, obj] of fresh) this.upsert(key, obj);
    this.resourceVersion = resourceVersion;
    if (!this.synced) {
      this.synced = true;
      for (const wake of this.syncWaiters) wake();
      this.syncWaiters = [];
      this.log.debug({ objects: fresh.size }, 'cache synced');
    }
  }

  private watchOnce(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let watchdog: unknown;
      const finish = (err: unknown): void => {
        if (settled) return;
        settled = true;
        this.clock.clearTimeout(watchdog);
        this.abortWatch?.abort();
        if (err) reject(err);
        else resolve();
      };
      const query = {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        // Like client-go, a randomized server-side timeout spreads reconnects of many informers.
        timeoutSeconds: 300 + Math.floor(Math.random() * 300),
      };
      // A connection that died without closing (a lost NAT entry) sends nothing, not even the
      // bookmarks that come about every minute; give up on it after the server-side timeout.
      const armWatchdog = (): void => {
        this.clock.clearTimeout(watchdog);
        watchdog = this.clock.setTimeout(() => finish(new Error(`watch sent nothing for ${query.timeoutSeconds + 30} s`)), (query.timeoutSeconds + 30) * 1000);
      };
      armWatchdog();
      const onEvent = (type: WatchEventType, raw: unknown): void => {
        if (settled) return;
        armWatchdog();
        try {
          this.handleEvent(type, raw);
        } catch (err) {
          finish(err);
        }
      };
      const plural = this.plural ? Promise.resolve(this.plural) : this.rest.resource(this.target.apiVersion, this.target.kind).then((info) => info.plural);
      plural
        .then((name) => this.watchFn(watchPath(this.target, name), query, onEvent, (err) => finish(err ?? null)))
        .then((controller) => {
          this.abortWatch = controller;
          if (settled || this.stopController.signal.aborted) controller.abort();
        })
        .catch(finish);
    });
  }

  private handleEvent(type: WatchEventType, raw: unknown): void {
    const obj = raw as T;
    if (type === 'ERROR') {
      const status = raw as { code?: number; message?: string };
      throw new WatchError(status.code ?? 0, status.message ?? 'watch stream reported an error');
    }
    const rv = obj.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
    if (type === 'BOOKMARK') return;
    const key = objectKey(obj);
    if (type === 'DELETED') {
      this.cache.delete(key);
      const gone = deepFreeze(obj);
      this.emit((h) => h.onDelete?.(gone));
      return;
    }
    this.upsert(key, deepFreeze(obj));
  }

  private upsert(key: string, obj: T): void {
    const old = this.cache.get(key);
    if (old && old.metadata?.resourceVersion === obj.metadata?.resourceVersion) return;
    this.cache.set(key, obj);
    if (old) this.emit((h) => h.onUpdate?.(old, obj));
    else this.emit((h) => h.onAdd?.(obj));
  }

  private emit(call: (h: EventHandlers<T>) => void): void {
    for (const h of this.handlers) {
      try {
        call(h);
      } catch (err) {
        // One broken handler must not stop the cache or the other handlers.
        this.log.error({ err }, 'event handler threw');
      }
    }
  }
}

export class WatchError extends Error {
  constructor(readonly code: number, message: string) {
    super(`watch error ${code}: ${message}`);
    this.name = 'WatchError';
  }
}

function isGone(err: unknown): boolean {
  const code = (err as { code?: unknown; statusCode?: unknown } | undefined);
  return code?.code === 410 || code?.statusCode === 410;
}

/** 0.8 s, 1.6 s, … up to 30 s, with ±20 % jitter so informers do not reconnect in lockstep. */
export function backoffMs(attempt: number): number {
  const base = Math.min(BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1), BACKOFF_MAX_MS);
  return base * (0.8 + Math.random() * 0.4);
}

export function clientNodeWatch(kubeConfig: KubeConfig): WatchFn {
  const watch = new Watch(kubeConfig);
  return (path, query, onEvent, done) => watch.watch(path, query, (type: string, obj: unknown) => onEvent(type as WatchEventType, obj), done);
}
