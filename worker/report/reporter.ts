// The worker's end of the status channel. The work must never wait for the operator: every
// report method returns at once and only records the latest value of its kind; a pump
// writes what changed whenever a stream is up, and a fresh stream gets the whole latest
// state again (with new sequence numbers), so nothing but superseded values is ever lost.
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { systemClock, type Clock, type TimerHandle } from '../../operator/status/clock.js';
import {
  loadStatusProto, type Artifact, type Completion, type Directive, type DirectiveAck, type Failure, type LayerMetric, type ObjectRef,
  type Progress, type ReportBodies, type ReportKind, type ServingStats, type WorkerReport,
} from '../../operator/status/wire.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from './backoff.js';
import { reporterEnv } from './env.js';

export interface DirectiveResult {
  ok: boolean;
  message?: string;
}
export type DirectiveHandler = (directive: Directive) => DirectiveResult | void | Promise<DirectiveResult | void>;

export interface ReporterOptions {
  /** host:port of the hub. */
  address: string;
  object: ObjectRef;
  pod: string;
  /** PEM CA bundle that signed the hub's certificate; absent = plaintext (local development only). */
  caFile?: string;
  /** Projected ServiceAccount token; re-read on every connect because the kubelet rotates it. */
  tokenFile?: string;
  logger?: Logger;
  clock?: Clock;
  backoff?: BackoffPolicy;
  random?: () => number;
  /** Liveness report interval while connected (default 15 s); 0 disables. */
  heartbeatMs?: number;
  /** Extra channel options, e.g. grpc.ssl_target_name_override in tests. */
  channelOptions?: grpc.ChannelOptions;
}

/** At most this many distinct artifacts and unanswered acks are kept for resending. */
const MAX_ARTIFACTS = 64;
const MAX_ACKS = 16;

type Body = { [K in ReportKind]: { kind: K; value: ReportBodies[K] } }[ReportKind];
type Call = grpc.ClientDuplexStream<WorkerReport, Directive>;

export class Reporter {
  private readonly latest = new Map<string, Body>();
  private readonly dirty = new Set<string>();
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly credentials: grpc.ChannelCredentials;
  private handler: DirectiveHandler | undefined;
  private client: grpc.Client | undefined;
  private call: Call | undefined;
  private blocked = false;
  /** The hub accepted the current stream (it sent its response headers). */
  private accepted = false;
  /** end() was called on the current stream; nothing more may be written to it. */
  private ending = false;
  private seq = 0;
  private attempt = 0;
  private retryTimer: TimerHandle | undefined;
  private heartbeatTimer: TimerHandle | undefined;
  private started = false;
  private closed = false;
  private flushing: { resolve: (delivered: boolean) => void; timer: TimerHandle } | undefined;

  constructor(private readonly options: ReporterOptions) {
    this.clock = options.clock ?? systemClock;
    this.log = (options.logger ?? pino({ level: 'info' })).child({ component: 'status-reporter' });
    this.credentials = options.caFile ? grpc.credentials.createSsl(readFileSync(options.caFile)) : grpc.credentials.createInsecure();
  }

  /** A reporter configured from the pod's environment (see env.ts). */
  static fromEnv(overrides: Partial<ReporterOptions> = {}, env: NodeJS.ProcessEnv = process.env): Reporter {
    const e = reporterEnv(env);
    return new Reporter({ address: e.address, object: e.object, pod: e.pod, caFile: e.caFile, tokenFile: e.tokenFile, ...overrides });
  }

  /** Opens the stream in the background; safe to call once, before or after the first report. */
  start(): this {
    if (this.started || this.closed) return this;
    this.started = true;
    void this.connect();
    return this;
  }

  /** True while a stream is open and the hub has accepted it. */
  get connected(): boolean {
    return this.call !== undefined && this.accepted;
  }

  progress(value: Partial<Progress>): void {
    this.record('progress', { step: 0, totalSteps: 0, percent: 0, etaSeconds: 0, stage: '', ...value });
  }

  metrics(values: Record<string, number>, layers: LayerMetric[] = []): void {
    this.record('metrics', { values: { ...values }, layers: layers.map((l) => ({ ...l })) });
  }

  artifact(value: Artifact): void {
    this.record('artifact', { ...value }, value.name || value.uri);
  }

  serving(value: ServingStats): void {
    this.record('serving', { ...value, loadedAdapters: [...value.loadedAdapters] });
  }

  failure(value: Failure): void {
    this.record('failure', { ...value });
  }

  completion(value: Completion): void {
    this.record('completion', { outputs: { ...value.outputs }, artifacts: value.artifacts.map((a) => ({ ...a })) });
  }

  /** Registers the one handler for directives; each directive is acked with its result. */
  onDirective(handler: DirectiveHandler): void {
    this.handler = handler;
  }

  /**
   * Sends everything recorded, half-closes the stream and resolves true once the hub has
   * processed it, or false after timeoutMs (hub unreachable). Closes the reporter either way.
   */
  flush(timeoutMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.flushing) return Promise.reject(new Error('flush() is already in progress'));
    return new Promise<boolean>((resolve) => {
      const timer = this.clock.setTimeout(() => this.finishFlush(false), timeoutMs);
      this.flushing = { resolve, timer };
      if (!this.started) this.start();
      else if (!this.call) {
        // Waiting out a backoff would waste the little time left before exit.
        this.cancelRetry();
        void this.connect();
      } else this.pump();
    });
  }

  /** Stops reconnecting and drops the stream; recorded state is discarded. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelRetry();
    this.stopHeartbeat();
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.client?.close();
    this.client = undefined;
    if (this.flushing) this.finishFlush(false);
  }

  private record<K extends ReportKind>(kind: K, value: ReportBodies[K], name?: string): void {
    if (this.closed) return;
    const key = name === undefined ? kind : `${kind}:${name}`;
    if (kind === 'artifact' && !this.latest.has(key) && this.countOf('artifact') >= MAX_ARTIFACTS) {
      this.log.warn({ artifact: name }, `more than ${MAX_ARTIFACTS} artifacts; this one is not reported`);
      return;
    }
    this.latest.delete(key); // re-insert so resends keep the order things happened in
    this.latest.set(key, { kind, value } as Body);
    this.dirty.delete(key);
    this.dirty.add(key);
    this.pump();
  }

  private countOf(kind: ReportKind): number {
    let n = 0;
    for (const body of this.latest.values()) if (body.kind === kind) n++;
    return n;
  }

  private async connect(): Promise<void> {
    this.retryTimer = undefined;
    if (this.closed || this.call) return;
    const metadata = new grpc.Metadata();
    if (this.options.tokenFile) {
      try {
        const token = (await readFile(this.options.tokenFile, 'utf8')).trim();
        if (token) metadata.set('authorization', `Bearer ${token}`);
      } catch (err) {
        this.log.warn({ err, tokenFile: this.options.tokenFile }, 'cannot read the token file; connecting without a token');
      }
    }
    if (this.closed || this.call) return;
    const { Client } = loadStatusProto();
    this.client?.close();
    const client = new Client(this.options.address, this.credentials, this.options.channelOptions ?? {});
    this.client = client;
    const call = (client as unknown as { Connect(md: grpc.Metadata): Call }).Connect(metadata);
    this.call = call;
    this.blocked = false;
    this.accepted = false;
    this.ending = false;
    call.on('metadata', () => {
      if (this.call !== call) return;
      this.accepted = true;
      if (this.attempt > 0) this.log.info({ address: this.options.address }, 'status stream connected');
      this.attempt = 0;
      this.startHeartbeat();
    });
    call.on('data', (directive: Directive) => void this.onDirectiveMessage(directive));
    call.on('drain', () => {
      if (this.call !== call) return;
      this.blocked = false;
      this.pump();
    });
    call.on('error', () => undefined); // the 'status' event below carries the outcome
    call.on('status', (status: grpc.StatusObject) => this.onStatus(call, status));
    // A new stream knows nothing: resend the whole latest state with fresh sequence numbers.
    for (const key of this.latest.keys()) this.dirty.add(key);
    this.pump();
  }

  private onStatus(call: Call, status: grpc.StatusObject): void {
    if (this.call !== call) return;
    this.call = undefined;
    this.accepted = false;
    this.stopHeartbeat();
    if (this.flushing && status.code === grpc.status.OK && this.dirty.size === 0) {
      this.finishFlush(true);
      return;
    }
    if (this.closed) return;
    const delay = backoffDelay(this.attempt++, this.options.backoff ?? DEFAULT_BACKOFF, this.options.random);
    const level = status.code === grpc.status.UNAUTHENTICATED || status.code === grpc.status.PERMISSION_DENIED ? 'warn' : 'debug';
    this.log[level]({ code: grpc.status[status.code], details: status.details, retryInMs: delay, attempt: this.attempt }, 'status stream ended; reconnecting');
    this.retryTimer = this.clock.setTimeout(() => void this.connect(), delay);
  }

  /** Writes dirty entries in order until the stream pushes back; then waits for 'drain'. */
  private pump(): void {
    const call = this.call;
    if (!call || this.blocked || this.ending) return;
    for (const key of this.dirty) {
      const body = this.latest.get(key);
      this.dirty.delete(key);
      if (!body) continue;
      const ok = call.write(this.report(body));
      if (body.kind === 'ack') this.trimAcks();
      if (!ok) {
        this.blocked = true;
        return;
      }
    }
    // Half-close only after everything is queued: the hub answers OK once it has read it all.
    if (this.flushing && this.dirty.size === 0) {
      this.ending = true;
      call.end();
    }
  }

  private report(body: Body): WorkerReport {
    return { seq: ++this.seq, object: this.options.object, pod: this.options.pod, unixMs: this.clock.now(), body: body.kind, [body.kind]: body.value } as WorkerReport;
  }

  /** Acks are kept for a resend after reconnect (the hub ignores duplicates), but only a few. */
  private trimAcks(): void {
    let excess = this.countOf('ack') - MAX_ACKS;
    for (const [key, body] of this.latest) {
      if (excess <= 0) break;
      if (body.kind === 'ack') {
        this.latest.delete(key);
        excess--;
      }
    }
  }

  private async onDirectiveMessage(directive: Directive): Promise<void> {
    let ack: DirectiveAck;
    if (!this.handler) {
      ack = { directiveId: directive.id, ok: false, message: `no handler for ${directive.body} directives in this worker` };
    } else {
      try {
        const result = await this.handler(directive);
        ack = { directiveId: directive.id, ok: result?.ok ?? true, message: result?.message ?? '' };
      } catch (err) {
        this.log.warn({ err, directive: directive.body, id: directive.id }, 'directive failed');
        ack = { directiveId: directive.id, ok: false, message: err instanceof Error ? err.message : String(err) };
      }
    }
    this.record('ack', ack, directive.id);
  }

  private startHeartbeat(): void {
    const every = this.options.heartbeatMs ?? 15_000;
    if (every <= 0 || this.heartbeatTimer !== undefined) return;
    const tick = () => {
      this.heartbeatTimer = undefined;
      if (!this.call || this.closed) return;
      if (!this.blocked && !this.ending) this.call.write(this.report({ kind: 'heartbeat', value: {} }));
      this.heartbeatTimer = this.clock.setTimeout(tick, every);
    };
    this.heartbeatTimer = this.clock.setTimeout(tick, every);
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer !== undefined) this.clock.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private cancelRetry(): void {
    if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private finishFlush(delivered: boolean): void {
    const flushing = this.flushing;
    if (!flushing) return;
    this.flushing = undefined;
    this.clock.clearTimeout(flushing.timer);
    flushing.resolve(delivered);
    this.close();
  }
}
