// The status hub: one gRPC Connect stream per worker for the worker's lifetime. Reports are
// authenticated per stream, folded into per-object state and written to status through a
// coalescer; directives go down the stream of a chosen pod and resolve with its ack.
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { AuthError, bearerToken, type Authenticator, type CallerIdentity } from './auth.js';
import { systemClock, type Clock } from './clock.js';
import { Coalescer } from './coalescer.js';
import type { StatusSink } from './sink.js';
import { emptyState, foldReport, forgetPod, type ObjectState } from './state.js';
import { loadStatusProto, objectKey, REPORT_KINDS, type Directive, type DirectiveAck, type DirectiveRequest, type ObjectRef, type WorkerReport } from './wire.js';

export interface StatusHubOptions {
  authenticator: Authenticator;
  sink: StatusSink;
  logger: Logger;
  /** Where tessera_status_reports_total and friends are registered. */
  registry?: Registry;
  /** At most one status write per object per this interval (default 1000 ms). */
  patchIntervalMs?: number;
  /** How often an open stream's token is checked again (default 5 min; 0 = never). */
  reauthenticateMs?: number;
  /** How long send() waits for a DirectiveAck by default (default 30 s). */
  directiveTimeoutMs?: number;
  clock?: Clock;
  /**
   * Whether this replica takes worker streams now (default: always). With leader election only
   * the leader does: directives come from its controllers, so a worker must be connected to it.
   * The others answer UNAVAILABLE and the worker retries, through the Service, until it lands there.
   */
  accepting?: () => boolean;
}

/** Where a directive goes: one pod, or the single connected pod of an object. */
export type DirectiveTarget = { namespace: string; pod: string } | { object: Pick<ObjectRef, 'kind' | 'namespace' | 'name'> };

export class NotConnectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotConnectedError';
  }
}

type Stream = grpc.ServerDuplexStream<WorkerReport, Directive>;

interface Connection {
  id: number;
  call: Stream;
  caller: CallerIdentity;
  ownerKey: string;
  lastSeq: number;
  reauthTimer: unknown;
}

interface PendingAck {
  resolve: (ack: DirectiveAck) => void;
  reject: (err: Error) => void;
  timer: unknown;
}

const KNOWN_KINDS = new Set<string>(REPORT_KINDS);

export class StatusHub {
  private readonly server = new grpc.Server({
    // Workers may sit idle for minutes between reports; keep the HTTP/2 connection honest.
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    'grpc.max_receive_message_length': 1 << 20,
  });
  private readonly clock: Clock;
  private readonly states = new Map<string, ObjectState>();
  private readonly connections = new Map<number, Connection>();
  private readonly pending = new Map<string, PendingAck>();
  private readonly coalescer: Coalescer<ObjectState>;
  private readonly reportsTotal: Counter<'kind'>;
  private readonly streamsGauge: Gauge;
  private readonly rejectedTotal: Counter<'code'>;
  private readonly servingListeners: ((object: ObjectRef, pod: string) => void)[] = [];
  private nextConnectionId = 1;
  private port: number | undefined;

  constructor(private readonly options: StatusHubOptions) {
    this.clock = options.clock ?? systemClock;
    const registers = options.registry ? [options.registry] : [];
    this.reportsTotal = new Counter({ name: 'tessera_status_reports_total', help: 'Worker reports accepted by the status hub, by object kind.', labelNames: ['kind'], registers });
    this.rejectedTotal = new Counter({ name: 'tessera_status_streams_rejected_total', help: 'Worker streams refused by the status hub, by gRPC status code.', labelNames: ['code'], registers });
    this.streamsGauge = new Gauge({ name: 'tessera_status_streams', help: 'Worker streams open on the status hub.', registers });
    this.coalescer = new Coalescer<ObjectState>({
      intervalMs: options.patchIntervalMs ?? 1000,
      clock: this.clock,
      write: (_key, state) => options.sink.apply(state.ref, state),
      onError: (key, err) => options.logger.warn({ err, object: key }, 'status write failed; retrying with the latest state'),
    });
    this.server.addService(loadStatusProto().service, { Connect: (call: Stream) => this.onConnect(call) });
  }

  /** Binds and starts serving; returns the bound port (useful with port 0). */
  async listen(address: string, credentials: grpc.ServerCredentials): Promise<number> {
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(address, credentials, (err, port) => (err ? reject(new Error(`cannot bind the status hub to ${address}: ${err.message}`, { cause: err })) : resolve(port))),
    );
    this.options.logger.info({ address, port: this.port, secure: credentials._isSecure() }, 'status hub listening');
    return this.port;
  }

  /** Writes pending status, ends every stream (workers reconnect elsewhere) and stops. */
  async close(graceMs = 5000): Promise<void> {
    for (const p of this.pending.values()) this.clock.clearTimeout(p.timer);
    for (const [id, p] of this.pending) p.reject(new Error(`status hub closed before directive ${id} was acknowledged`));
    this.pending.clear();
    for (const c of this.connections.values()) c.call.end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await this.coalescer.flush();
    this.coalescer.close();
  }

  /** The latest state known for an object, for reconcilers and tests. */
  state(ref: Pick<ObjectRef, 'kind' | 'namespace' | 'name'>): Readonly<ObjectState> | undefined {
    return this.states.get(objectKey(ref));
  }

  /** Pods with an open stream for an object. */
  connectedPods(ref: Pick<ObjectRef, 'kind' | 'namespace' | 'name'>): string[] {
    const key = objectKey(ref);
    return [...this.connections.values()].filter((c) => c.ownerKey === key).map((c) => c.caller.pod.podName).sort();
  }

  /**
   * Sends a directive and resolves with the worker's ack. An ack that arrives on a later
   * stream of the same worker (after a reconnect) still counts. Rejects with
   * NotConnectedError when no stream matches, or after timeoutMs without an ack.
   */
  send(target: DirectiveTarget, request: DirectiveRequest, timeoutMs = this.options.directiveTimeoutMs ?? 30_000): Promise<DirectiveAck> {
    const conn = this.pick(target);
    const id = randomUUID();
    const directive = { ...request, id } as Directive;
    return new Promise<DirectiveAck>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no ack for directive ${id} (${request.body}) from ${conn.caller.pod.namespace}/${conn.caller.pod.podName} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      conn.call.write(directive);
    });
  }

  private pick(target: DirectiveTarget): Connection {
    const all = [...this.connections.values()];
    if ('pod' in target) {
      // The newest stream wins: an older one may be a half-dead connection not yet noticed.
      const match = all.filter((c) => c.caller.pod.namespace === target.namespace && c.caller.pod.podName === target.pod).pop();
      if (!match) throw new NotConnectedError(`pod ${target.namespace}/${target.pod} has no open status stream`);
      return match;
    }
    const key = objectKey(target.object);
    const pods = new Map(all.filter((c) => c.ownerKey === key).map((c) => [c.caller.pod.podName, c]));
    if (pods.size === 0) throw new NotConnectedError(`${key} has no worker with an open status stream`);
    if (pods.size > 1) throw new NotConnectedError(`${key} has ${pods.size} workers (${[...pods.keys()].join(', ')}); address one pod`);
    return [...pods.values()][0] as Connection;
  }

  private onConnect(call: Stream): void {
    // Reports that arrive before authentication finishes wait in the stream's buffer.
    call.pause();
    const peer = call.getPeer();
    if (this.options.accepting && !this.options.accepting()) {
      this.rejectedTotal.inc({ code: grpc.status[grpc.status.UNAVAILABLE] });
      this.options.logger.debug({ peer }, 'status stream refused: not the leader');
      this.fail(call, grpc.status.UNAVAILABLE, 'this operator replica is not the leader; reconnect to reach the leader');
      return;
    }
    const token = bearerToken(call.metadata.get('authorization'));
    this.options.authenticator.authenticate(token).then(
      (caller) => this.accept(call, caller, token),
      (err: unknown) => {
        const code = err instanceof AuthError ? err.code : grpc.status.INTERNAL;
        const details = err instanceof AuthError ? err.message : 'internal error while authenticating';
        this.rejectedTotal.inc({ code: grpc.status[code] });
        this.options.logger.warn({ peer, code: grpc.status[code], reason: details, err: err instanceof AuthError ? undefined : err }, 'status stream refused');
        this.fail(call, code, details);
      },
    );
  }

  private accept(call: Stream, caller: CallerIdentity, token: string | undefined): void {
    const conn: Connection = { id: this.nextConnectionId++, call, caller, ownerKey: objectKey(caller.owner), lastSeq: 0, reauthTimer: undefined };
    this.connections.set(conn.id, conn);
    this.streamsGauge.set(this.connections.size);
    const log = this.options.logger.child({ object: conn.ownerKey, pod: caller.pod.podName, stream: conn.id });
    log.debug('status stream opened');
    // Tells the worker its stream is accepted, so it can reset its backoff.
    call.sendMetadata(new grpc.Metadata());
    const closed = () => {
      if (conn.reauthTimer !== undefined) this.clock.clearTimeout(conn.reauthTimer);
      if (!this.connections.delete(conn.id)) return;
      this.streamsGauge.set(this.connections.size);
      log.debug('status stream closed');
    };
    const refuse = (err: unknown) => {
      if (!this.connections.has(conn.id)) return;
      const code = err instanceof AuthError ? err.code : grpc.status.INTERNAL;
      const details = err instanceof AuthError ? err.message : 'internal error while processing a report';
      if (err instanceof AuthError) log.warn({ code: grpc.status[code], reason: details }, 'stream refused; ending it');
      else log.error({ err }, 'cannot process a report; ending the stream so the worker reconnects and resends');
      this.rejectedTotal.inc({ code: grpc.status[code] });
      closed();
      this.fail(call, code, details);
    };
    call.on('data', (report: WorkerReport) => {
      try {
        this.onReport(conn, report);
      } catch (err) {
        refuse(err);
      }
    });
    // A stream outlives its token's checks; re-ask (cheap through the cache) so a revoked
    // token, e.g. of a deleted pod whose process lingers, stops speaking for the object.
    const reauthMs = this.options.reauthenticateMs ?? 300_000;
    const reauth = () => {
      conn.reauthTimer = undefined;
      if (!this.connections.has(conn.id)) return;
      this.options.authenticator.authenticate(token).then(
        () => {
          if (this.connections.has(conn.id)) conn.reauthTimer = this.clock.setTimeout(reauth, reauthMs);
        },
        (err: unknown) => {
          if (err instanceof AuthError && err.code === grpc.status.UNAVAILABLE) conn.reauthTimer = this.clock.setTimeout(reauth, reauthMs);
          else refuse(err);
        },
      );
    };
    if (reauthMs > 0) conn.reauthTimer = this.clock.setTimeout(reauth, reauthMs);
    call.on('end', () => {
      closed();
      call.end();
    });
    call.on('cancelled', closed);
    call.on('error', (err) => {
      log.debug({ err }, 'status stream error');
      closed();
    });
    call.on('close', closed);
    call.resume();
  }

  private onReport(conn: Connection, report: WorkerReport): void {
    const owner = conn.caller.owner;
    const object = report.object;
    if (!object || object.kind !== owner.kind || object.namespace !== owner.namespace || object.name !== owner.name || object.uid !== owner.uid) {
      const claimed = object ? `${objectKey(object)} (uid ${object.uid || 'none'})` : 'no object';
      throw new AuthError(grpc.status.PERMISSION_DENIED, `pod ${owner.namespace}/${conn.caller.pod.podName} may report only for ${objectKey(owner)} (uid ${owner.uid}), not for ${claimed}`);
    }
    if (!KNOWN_KINDS.has(report.body)) return; // a newer worker's report kind: ignore, do not fail
    if (report.seq <= conn.lastSeq) return;
    conn.lastSeq = report.seq;
    this.reportsTotal.inc({ kind: owner.kind });
    if (report.body === 'ack') {
      this.onAck(report.ack);
      return;
    }
    const key = conn.ownerKey;
    let state = this.states.get(key);
    if (!state || state.ref.uid !== owner.uid) {
      state = emptyState({ ...object, apiVersion: object.apiVersion || owner.apiVersion });
      this.states.set(key, state);
    }
    const pod = conn.caller.pod.podName;
    const servedBefore = state.serving[pod]?.activeRevision;
    if (foldReport(state, report, pod, this.clock.now())) this.coalescer.offer(key, state);
    // A replica seen for the first time (a new pod, or a new hub after a restart) or serving
    // something else: whoever rolls bundles out must look again; the status write may be a no-op.
    if (report.body === 'serving' && servedBefore !== report.serving.activeRevision) {
      for (const listener of this.servingListeners) listener(object, pod);
    }
  }

  /** Calls `listener` when a replica first reports what it serves, or reports a change. */
  onServingChange(listener: (object: ObjectRef, pod: string) => void): void {
    this.servingListeners.push(listener);
  }

  private onAck(ack: DirectiveAck): void {
    const pending = this.pending.get(ack.directiveId);
    if (!pending) return; // timed out already, or a duplicate after reconnect
    this.pending.delete(ack.directiveId);
    this.clock.clearTimeout(pending.timer);
    pending.resolve(ack);
  }

  /** Drops what is known about an object (it was deleted) or about one of its pods. */
  forget(ref: Pick<ObjectRef, 'kind' | 'namespace' | 'name'>, pod?: string): void {
    const key = objectKey(ref);
    const state = this.states.get(key);
    if (!state) return;
    if (pod === undefined) {
      this.states.delete(key);
      this.coalescer.forget(key);
    } else if (forgetPod(state, pod)) {
      this.coalescer.offer(key, state);
    }
  }

  private fail(call: Stream, code: grpc.status, details: string): void {
    // grpc-js turns an 'error' on the server stream into the call's final status.
    call.emit('error', Object.assign(new Error(details), { code, details }));
  }
}
