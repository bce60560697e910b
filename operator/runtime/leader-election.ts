// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection package:
// try to acquire every retryPeriod; once leading, renew every retryPeriod and give up when no
// renewal succeeded for renewDeadline. Writes are compare-and-swap on resourceVersion, so of two
// candidates that read the same Lease only one can write it (the other gets 409 Conflict).
// Expiry is judged by the local clock from when this candidate last saw the record change, not
// from renewTime, so skew between nodes does not matter.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { formatMicroTime, sleep, systemClock, type Clock } from './clock.js';
import { RestClient, statusCode } from './rest.js';

export interface LeaderElectionConfig {
  namespace: string;
  name: string;
  /** Defaults to the pod name (HOSTNAME) plus a random suffix, unique per process. */
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Clear the holder on stop so a successor need not wait for the lease to expire. */
  releaseOnCancel?: boolean;
}

export interface LeaderCallbacks {
  onStartedLeading(): void;
  onStoppedLeading(): void;
  onNewLeader?(identity: string): void;
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: LeaseSpec;
}

export function defaultIdentity(): string {
  return `${process.env.HOSTNAME || process.env.POD_NAME || hostname()}_${randomBytes(4).toString('hex')}`;
}

export class LeaderElector {
  readonly identity: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly path: string;
  private readonly log: Logger;
  private readonly stopController = new AbortController();
  private observed: { spec: LeaseSpec; resourceVersion: string; at: number } | undefined;
  private leading = false;
  private lastRenew = 0;
  private reportedLeader = '';
  private running: Promise<void> | undefined;

  constructor(
    private readonly rest: RestClient,
    private readonly config: LeaderElectionConfig,
    private readonly callbacks: LeaderCallbacks,
    logger: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.identity = config.identity ?? defaultIdentity();
    this.leaseDurationMs = config.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = config.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = config.retryPeriodMs ?? 2_000;
    // client-go's checks: a lease must outlast the renew deadline, which must outlast retries with jitter.
    if (!(this.leaseDurationMs > this.renewDeadlineMs && this.renewDeadlineMs > 1.2 * this.retryPeriodMs && this.retryPeriodMs > 0)) {
      throw new Error(`invalid leader election timing: need leaseDuration (${this.leaseDurationMs} ms) > renewDeadline (${this.renewDeadlineMs} ms) > 1.2 × retryPeriod (${this.retryPeriodMs} ms) > 0`);
    }
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(config.namespace)}/leases`;
    this.log = logger.child({ lease: `${config.namespace}/${config.name}`, identity: this.identity });
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** Campaigns until stop(); leadership lost to a failed renewal ends the run (like client-go). */
  start(): Promise<void> {
    this.running ??= this.run();
    return this.running;
  }

  /** Stops campaigning; with releaseOnCancel (or `release`) a held lease is handed back at once. */
  async stop(options: { release?: boolean } = {}): Promise<void> {
    this.stopController.abort();
    await this.running;
    if (this.leading && (options.release ?? this.config.releaseOnCancel ?? true)) await this.release();
    this.setLeading(false);
  }

  private async run(): Promise<void> {
    const stopped = this.stopController.signal;
    while (!stopped.aborted && !(await this.tryAcquireOrRenew())) {
      await sleep(this.clock, this.retryPeriodMs * (1 + Math.random() * 0.2), stopped);
    }
    if (stopped.aborted) return;
    this.lastRenew = this.clock.now();
    this.setLeading(true);
    while (!stopped.aborted) {
      await sleep(this.clock, this.retryPeriodMs, stopped);
      if (stopped.aborted) return;
      if (await this.tryAcquireOrRenew()) {
        this.lastRenew = this.clock.now();
      } else if (this.clock.now() - this.lastRenew >= this.renewDeadlineMs) {
        this.log.error({ renewDeadlineMs: this.renewDeadlineMs }, 'failed to renew the lease within the renew deadline; leadership lost');
        this.setLeading(false);
        return;
      }
    }
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    if (leading) {
      this.log.info('became leader');
      this.callbacks.onStartedLeading();
    } else {
      this.log.info('stopped leading');
      this.callbacks.onStoppedLeading();
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = this.clock.now();
    const timeoutMs = Math.max(1000, this.renewDeadlineMs / 2);
    const mine: LeaseSpec = {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.max(1, Math.round(this.leaseDurationMs / 1000)),
      acquireTime: formatMicroTime(now),
      renewTime: formatMicroTime(now),
      leaseTransitions: 0,
    };
    let current: Lease;
    try {
      current = await this.rest.request<Lease>('GET', `${this.path}/${encodeURIComponent(this.config.name)}`, { timeoutMs });
    } catch (err) {
      if (statusCode(err) !== 404) {
        this.log.warn({ err }, 'could not read the leader Lease');
        return false;
      }
      try {
        const created = await this.rest.request<Lease>('POST', this.path, {
          timeoutMs,
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.config.name, namespace: this.config.namespace }, spec: mine },
        });
        this.observe(created, now);
        return true;
      } catch (createErr) {
        // 409: another candidate created it first.
        if (statusCode(createErr) !== 409) this.log.warn({ err: createErr }, 'could not create the leader Lease');
        return false;
      }
    }
    const spec = current.spec ?? {};
    this.observe(current, now);
    const holder = spec.holderIdentity ?? '';
    const heldByOther = holder !== '' && holder !== this.identity;
    if (heldByOther && this.observed && this.observed.at + this.leaseDurationMs > now) return false;
    if (holder === this.identity) {
      mine.acquireTime = spec.acquireTime ?? mine.acquireTime;
      mine.leaseTransitions = spec.leaseTransitions ?? 0;
    } else {
      mine.leaseTransitions = (spec.leaseTransitions ?? 0) + 1;
    }
    try {
      const updated = await this.rest.request<Lease>('PUT', `${this.path}/${encodeURIComponent(this.config.name)}`, {
        timeoutMs,
        body: { ...current, spec: mine },
      });
      this.observe(updated, now);
      return true;
    } catch (err) {
      // 409: someone else wrote the Lease since we read it, and won.
      if (statusCode(err) !== 409) this.log.warn({ err }, 'could not update the leader Lease');
      return false;
    }
  }

  /** Records the Lease; the expiry clock restarts only when its content changed. */
  private observe(lease: Lease, now: number): void {
    const spec = lease.spec ?? {};
    const rv = lease.metadata.resourceVersion ?? '';
    if (!this.observed || this.observed.resourceVersion !== rv) this.observed = { spec, resourceVersion: rv, at: now };
    const holder = spec.holderIdentity ?? '';
    if (holder !== this.reportedLeader) {
      this.reportedLeader = holder;
      if (holder) this.callbacks.onNewLeader?.(holder);
    }
  }

  private async release(): Promise<void> {
    const now = this.clock.now();
    try {
      const current = await this.rest.request<Lease>('GET', `${this.path}/${encodeURIComponent(this.config.name)}`, { timeoutMs: 5000 });
      if (current.spec?.holderIdentity !== this.identity) return;
      await this.rest.request('PUT', `${this.path}/${encodeURIComponent(this.config.name)}`, {
        timeoutMs: 5000,
        body: {
          ...current,
          spec: { holderIdentity: '', leaseDurationSeconds: 1, acquireTime: formatMicroTime(now), renewTime: formatMicroTime(now), leaseTransitions: current.spec?.leaseTransitions ?? 0 },
        },
      });
      this.log.info('released the leader Lease');
    } catch (err) {
      // The lease then expires on its own after leaseDuration; nothing is lost but time.
      this.log.warn({ err }, 'could not release the leader Lease');
    }
  }
}
