// List-then-watch that never gives up: re-lists after any watch error or close, like a
// hardened informer (client-node's stops on non-410 errors).
import { Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';

export interface ListWatchOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  path: string;
  query?: Record<string, string>;
  list(): Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>;
  /** Every object currently known, after each (re-)list and on each event; deleted ones under `deleted`. */
  onEvent(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: T): void;
  onSync?(items: T[]): void;
  log(message: string, fields?: Record<string, unknown>): void;
}

export class ListWatch<T extends KubernetesObject> {
  private stopped = false;
  private abort: AbortController | undefined;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly options: ListWatchOptions<T>) {}

  async start(): Promise<void> {
    await this.cycle();
  }

  private async cycle(): Promise<void> {
    if (this.stopped) return;
    try {
      const list = await this.options.list();
      this.options.onSync?.(list.items);
      const watch = new Watch(this.options.kubeConfig);
      this.abort = await watch.watch(
        this.options.path,
        { ...this.options.query, resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true },
        (type: string, object: T) => {
          if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') this.options.onEvent(type, object);
        },
        (err: unknown) => {
          if (this.stopped) return;
          if (err) this.options.log('watch ended; re-listing', { path: this.options.path, err: String(err) });
          this.schedule(err ? 500 : 0);
        },
      );
    } catch (err) {
      if (this.stopped) return;
      this.options.log('list failed; retrying', { path: this.options.path, err: String(err) });
      this.schedule(1000);
    }
  }

  private schedule(ms: number): void {
    clearTimeout(this.retry);
    this.retry = setTimeout(() => void this.cycle(), ms);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.abort?.abort();
  }
}
