// An EventRecorder writing events.k8s.io/v1 Events (client-go's tools/events). A repeat of the
// same event about the same object within the series window does not create a new Event: the
// first one gets a `series` whose count and lastObservedTime are patched, so a reconcile loop
// that keeps failing leaves one Event with a count, not thousands.
import { randomBytes } from 'node:crypto';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { formatMicroTime, systemClock, type Clock } from './clock.js';
import type { RestClient } from './rest.js';

export const REPORTING_CONTROLLER = 'tessera.dev/operator';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  /** Usually the pod name; tells replicas apart. */
  reportingInstance: string;
  logger: Logger;
  clock?: Clock;
  /** Repeats within this window join a series (client-go uses 6 minutes). */
  seriesWindowMs?: number;
  /** At most this many distinct events remembered for de-duplication. */
  maxTracked?: number;
}

interface Tracked {
  name: string;
  namespace: string;
  count: number;
  lastSeen: number;
  /** The last write for this event; the next waits for it, so a series patch never precedes the create. */
  last: Promise<void>;
}

const NOTE_MAX = 1024;

export class EventRecorder {
  private readonly clock: Clock;
  private readonly seriesWindowMs: number;
  private readonly maxTracked: number;
  private readonly tracked = new Map<string, Tracked>();
  private readonly log: Logger;
  /** Writes in flight, so tests and shutdown can wait for them. */
  private pending = new Set<Promise<void>>();

  constructor(private readonly rest: RestClient, private readonly options: EventRecorderOptions) {
    this.clock = options.clock ?? systemClock;
    this.seriesWindowMs = options.seriesWindowMs ?? 6 * 60_000;
    this.maxTracked = options.maxTracked ?? 4096;
    this.log = options.logger.child({ component: 'events' });
  }

  /**
   * Records an event about `regarding`; never throws and never blocks the reconcile (events are
   * best effort, as in client-go). `action` says what the operator did (Create, Delete, Reconcile).
   */
  record(regarding: KubernetesObject, type: EventType, reason: string, action: string, note: string): void {
    const write = this.write(regarding, type, reason, action, note).catch((err: unknown) => {
      this.log.warn({ err, reason, regarding: `${regarding.kind} ${regarding.metadata?.namespace}/${regarding.metadata?.name}` }, 'could not record an event');
    });
    this.pending.add(write);
    void write.finally(() => this.pending.delete(write));
  }

  /** Resolves when every event recorded so far has been written (or failed). */
  async flush(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }

  private write(regarding: KubernetesObject, type: EventType, reason: string, action: string, note: string): Promise<void> {
    const meta = regarding.metadata ?? {};
    // Events about cluster-scoped objects live in "default", as client-go puts them.
    const namespace = meta.namespace || 'default';
    const key = [regarding.apiVersion, regarding.kind, namespace, meta.name, meta.uid, type, reason, action, note].join('\u0000');
    const now = this.clock.now();
    const seen = this.tracked.get(key);
    if (seen && now - seen.lastSeen < this.seriesWindowMs) {
      seen.count++;
      seen.lastSeen = now;
      const count = seen.count;
      seen.last = seen.last.catch(() => undefined).then(() => this.patchSeries(seen, count, now));
      return seen.last;
    }
    const name = `${meta.name ?? 'unknown'}.${now.toString(16)}${randomBytes(2).toString('hex')}`.slice(-253);
    const created = this.rest.create({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace },
      eventTime: formatMicroTime(now),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.options.reportingInstance,
      action,
      reason,
      type,
      note: note.length > NOTE_MAX ? `${note.slice(0, NOTE_MAX - 1)}…` : note,
      regarding: {
        apiVersion: regarding.apiVersion,
        kind: regarding.kind,
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resourceVersion: meta.resourceVersion,
      },
    } as KubernetesObject).then(() => undefined);
    this.remember(key, { name, namespace, count: 1, lastSeen: now, last: created });
    return created;
  }

  private async patchSeries(seen: Tracked, count: number, now: number): Promise<void> {
    // A later repeat already wrote a higher count; skip the stale one.
    if (count < seen.count) return;
    await this.rest.patch(
      { apiVersion: 'events.k8s.io/v1', kind: 'Event', metadata: { name: seen.name, namespace: seen.namespace } },
      'merge',
      { series: { count, lastObservedTime: formatMicroTime(now) } },
    );
  }

  private remember(key: string, entry: Tracked): void {
    this.tracked.delete(key);
    this.tracked.set(key, entry);
    // Map iteration order is insertion order, so the first key is the least recently recorded.
    while (this.tracked.size > this.maxTracked) {
      const oldest = this.tracked.keys().next().value;
      if (oldest === undefined) break;
      this.tracked.delete(oldest);
    }
  }
}
