// An informer cache: list-then-watch one resource, keep the latest objects by namespace/name,
// and tell listeners about every change (with the previous object, for generation checks).
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { ListWatch } from '../kube/list-watch.js';

export type ChangeHandler<T> = (object: T, previous: T | undefined, deleted: boolean) => void;

export interface CacheSource<T> {
  /** Watch path, e.g. /apis/batch/v1/jobs. */
  path: string;
  query?: Record<string, string>;
  list(): Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>;
}

export const keyOf = (obj: KubernetesObject): string => `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;

export class ObjectCache<T extends KubernetesObject> {
  private readonly objects = new Map<string, T>();
  private readonly handlers: ChangeHandler<T>[] = [];
  private watch: ListWatch<T> | undefined;
  private synced = false;

  constructor(
    private readonly kubeConfig: KubeConfig,
    private readonly source: CacheSource<T>,
    private readonly log: (message: string, fields?: Record<string, unknown>) => void,
  ) {}

  onChange(handler: ChangeHandler<T>): void {
    this.handlers.push(handler);
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  async start(): Promise<void> {
    this.watch = new ListWatch<T>({
      kubeConfig: this.kubeConfig,
      path: this.source.path,
      query: this.source.query,
      list: () => this.source.list(),
      onSync: (items) => this.replace(items),
      onEvent: (type, obj) => (type === 'DELETED' ? this.remove(obj) : this.upsert(obj)),
      log: this.log,
    });
    await this.watch.start();
  }

  stop(): void {
    this.watch?.stop();
  }

  /** A copy: callers never mutate the cache. */
  get(namespace: string, name: string): T | undefined {
    const obj = this.objects.get(`${namespace}/${name}`);
    return obj ? structuredClone(obj) : undefined;
  }

  list(namespace?: string, filter: (obj: T) => boolean = () => true): T[] {
    return [...this.objects.values()].filter((o) => (namespace === undefined || o.metadata?.namespace === namespace) && filter(o)).map((o) => structuredClone(o));
  }

  private replace(items: T[]): void {
    const seen = new Set(items.map(keyOf));
    for (const [key, obj] of this.objects) if (!seen.has(key)) this.remove(obj);
    for (const item of items) this.upsert(item);
    this.synced = true;
  }

  private upsert(obj: T): void {
    const key = keyOf(obj);
    const previous = this.objects.get(key);
    if (previous?.metadata?.resourceVersion === obj.metadata?.resourceVersion) return;
    this.objects.set(key, obj);
    for (const h of this.handlers) h(obj, previous, false);
  }

  private remove(obj: T): void {
    const key = keyOf(obj);
    const previous = this.objects.get(key);
    this.objects.delete(key);
    for (const h of this.handlers) h(previous ?? obj, previous, true);
  }
}
