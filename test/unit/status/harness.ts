// Fixture builders for status tests: identities, a stub authenticator, a recording sink,
// a bare recording StatusHub server, and a quiet logger.
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { AuthError, type Authenticator, type CallerIdentity } from '../../../operator/status/auth.js';
import type { StatusSink } from '../../../operator/status/sink.js';
import type { ObjectState } from '../../../operator/status/state.js';
import { loadStatusProto, type Directive, type ObjectRef, type WorkerReport } from '../../../operator/status/wire.js';

export const quietLogger = pino({ level: process.env.TESSERA_TEST_VERBOSE ? 'debug' : 'silent' });

export function objectRef(name: string, overrides: Partial<ObjectRef> = {}): ObjectRef {
  return { apiVersion: 'tessera.dev/v1alpha1', kind: 'SparseFineTune', namespace: 'ns', name, uid: `uid-${name}`, generation: 1, ...overrides };
}

export function callerFor(ref: ObjectRef, pod = `${ref.name}-pod`): CallerIdentity {
  return {
    pod: { namespace: ref.namespace, podName: pod, podUid: `uid-${pod}`, serviceAccount: 'default' },
    owner: { apiVersion: ref.apiVersion, kind: ref.kind, namespace: ref.namespace, name: ref.name, uid: ref.uid },
  };
}

/** Accepts exactly the tokens it was given. */
export function stubAuthenticator(tokens: Record<string, CallerIdentity>): Authenticator {
  return {
    authenticate: async (token) => {
      const caller = token ? tokens[token] : undefined;
      if (!caller) throw new AuthError(grpc.status.UNAUTHENTICATED, token ? 'unknown token' : 'missing token');
      return caller;
    },
  };
}

export class RecordingSink implements StatusSink {
  readonly applied: { ref: ObjectRef; state: ObjectState }[] = [];
  async apply(ref: ObjectRef, state: Readonly<ObjectState>): Promise<void> {
    this.applied.push({ ref: { ...ref }, state: structuredClone(state) as ObjectState });
  }
}

/** A StatusHub server that records every report and every stream's metadata, for reporter tests. */
export class RecordingServer {
  readonly reports: WorkerReport[] = [];
  readonly tokens: (string | undefined)[] = [];
  readonly streams: grpc.ServerDuplexStream<WorkerReport, Directive>[] = [];
  private readonly server = new grpc.Server();

  constructor() {
    this.server.addService(loadStatusProto().service, {
      Connect: (call: grpc.ServerDuplexStream<WorkerReport, Directive>) => {
        this.tokens.push(call.metadata.get('authorization')[0]?.toString());
        this.streams.push(call);
        call.sendMetadata(new grpc.Metadata());
        call.on('data', (r: WorkerReport) => this.reports.push(r));
        call.on('end', () => call.end());
        call.on('error', () => undefined);
      },
    });
  }

  listen(port: number): Promise<number> {
    return new Promise((resolve, reject) =>
      this.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
  }

  stop(): void {
    this.server.forceShutdown();
  }

  kinds(): string[] {
    return this.reports.filter((r) => r.body !== 'heartbeat').map((r) => r.body);
  }
}

/** A port nothing listens on (bound then released). */
export async function freePort(): Promise<number> {
  const server = new grpc.Server();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  server.forceShutdown();
  return port;
}

/** Polls until check() is true; fails with `what` after timeoutMs. */
export async function eventually(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Opens a raw Connect stream with an optional bearer token; resolves its final status. */
export function rawStream(address: string, token: string | undefined, credentials = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}) {
  const { Client } = loadStatusProto();
  const client = new Client(address, credentials, options);
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  const call = (client as unknown as { Connect(md: grpc.Metadata): grpc.ClientDuplexStream<WorkerReport, Directive> }).Connect(metadata);
  const directives: Directive[] = [];
  call.on('data', (d: Directive) => directives.push(d));
  call.on('error', () => undefined);
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  return { call, directives, status, close: () => { call.cancel(); client.close(); } };
}
