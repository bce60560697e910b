// TypeScript view of proto/tessera/v1/status.proto, shared by the operator's hub and the
// worker's reporter, plus the one loader both use.
//
// The .proto is loaded at run time with @grpc/proto-loader (no codegen step to forget).
// Options, chosen once here for both ends:
//   keepCase: false  -> fields are lowerCamelCase, like the Kubernetes status they feed;
//   longs: Number    -> int64/uint64 become JS numbers. Every 64-bit field we carry (seq,
//                       unix_ms, generation, size_bytes, step) stays far below 2^53;
//   defaults: true   -> absent scalars decode as 0 / "" / false, absent messages as null;
//   oneofs: true     -> a virtual `body` names the oneof member that is set.
// The types live in operator/ because proto/ is outside the TypeScript project; the worker
// imports this file, which depends on nothing but grpc.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_RELATIVE_PATH = 'proto/tessera/v1/status.proto';
export const PROTO_PACKAGE = 'tessera.v1';
export const CONNECT_METHOD = '/tessera.v1.StatusHub/Connect';

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** See the message comments in the .proto for what each field means. */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid: string;
  generation: number;
}

export interface Progress {
  step: number;
  totalSteps: number;
  percent: number;
  etaSeconds: number;
  stage: string;
}

export interface LayerMetric {
  index: number;
  sparsityPercent: number;
  rank: number;
  reconstructionError: number;
}

export interface Metrics {
  values: Record<string, number>;
  layers: LayerMetric[];
}

export interface Artifact {
  name: string;
  uri: string;
  sha256: string;
  sizeBytes: number;
}

export interface ServingStats {
  loadedAdapters: string[];
  activeRevision: string;
  queueDepth: number;
  requestsPerSecond: number;
  tokensPerSecond: number;
  p50LatencyMs: number;
  p99LatencyMs: number;
}

export type Heartbeat = Record<string, never>;

export interface Failure {
  reason: string;
  message: string;
  retryable: boolean;
}

export interface Completion {
  outputs: Record<string, string>;
  artifacts: Artifact[];
}

export interface DirectiveAck {
  directiveId: string;
  ok: boolean;
  message: string;
}

/** The oneof members of WorkerReport.body, by name. */
export interface ReportBodies {
  progress: Progress;
  metrics: Metrics;
  artifact: Artifact;
  serving: ServingStats;
  heartbeat: Heartbeat;
  failure: Failure;
  completion: Completion;
  ack: DirectiveAck;
}
export type ReportKind = keyof ReportBodies;

/** Every field of WorkerReport as the codec sees it (at most one body member set). */
export interface WorkerReportFields extends Partial<ReportBodies> {
  seq: number;
  object: ObjectRef | null;
  pod: string;
  unixMs: number;
}

/** A decoded report: the header plus exactly one body member, named by `body`. */
export type WorkerReport = {
  [K in ReportKind]: Omit<WorkerReportFields, ReportKind> & { body: K } & Pick<ReportBodies, K>;
}[ReportKind];

export interface BundleRef {
  adapterCluster: string;
  revision: string;
  uri: string;
  sha256: string;
}
export interface LoadBundle {
  revision: string;
  bundles: BundleRef[];
}
export interface Activate {
  revision: string;
}
export type Drain = Record<string, never>;
export interface Stop {
  reason: string;
}

export interface DirectiveBodies {
  loadBundle: LoadBundle;
  activate: Activate;
  drain: Drain;
  stop: Stop;
}
export type DirectiveKind = keyof DirectiveBodies;

export interface DirectiveFields extends Partial<DirectiveBodies> {
  id: string;
}

/** A directive: its id plus exactly one body member, named by `body`. */
export type Directive = {
  [K in DirectiveKind]: { id: string; body: K } & Pick<DirectiveBodies, K>;
}[DirectiveKind];

/** A directive before the hub gives it an id. */
export type DirectiveRequest = {
  [K in DirectiveKind]: { body: K } & Pick<DirectiveBodies, K>;
}[DirectiveKind];

type FieldSet<T> = { readonly [K in keyof Required<T>]: true };

/**
 * The field names of every message, checked against the TS types at compile time
 * (`FieldSet` demands exactly their keys) and against the .proto by a unit test; the two
 * checks together keep this file and the contract in sync.
 */
export const MESSAGE_FIELDS = {
  ObjectRef: { apiVersion: true, kind: true, namespace: true, name: true, uid: true, generation: true } satisfies FieldSet<ObjectRef>,
  WorkerReport: {
    seq: true, object: true, pod: true, unixMs: true,
    progress: true, metrics: true, artifact: true, serving: true, heartbeat: true, failure: true, completion: true, ack: true,
  } satisfies FieldSet<WorkerReportFields>,
  Progress: { step: true, totalSteps: true, percent: true, etaSeconds: true, stage: true } satisfies FieldSet<Progress>,
  Metrics: { values: true, layers: true } satisfies FieldSet<Metrics>,
  LayerMetric: { index: true, sparsityPercent: true, rank: true, reconstructionError: true } satisfies FieldSet<LayerMetric>,
  Artifact: { name: true, uri: true, sha256: true, sizeBytes: true } satisfies FieldSet<Artifact>,
  ServingStats: {
    loadedAdapters: true, activeRevision: true, queueDepth: true, requestsPerSecond: true,
    tokensPerSecond: true, p50LatencyMs: true, p99LatencyMs: true,
  } satisfies FieldSet<ServingStats>,
  Heartbeat: {} satisfies FieldSet<Heartbeat>,
  Failure: { reason: true, message: true, retryable: true } satisfies FieldSet<Failure>,
  Completion: { outputs: true, artifacts: true } satisfies FieldSet<Completion>,
  DirectiveAck: { directiveId: true, ok: true, message: true } satisfies FieldSet<DirectiveAck>,
  Directive: { id: true, loadBundle: true, activate: true, drain: true, stop: true } satisfies FieldSet<DirectiveFields>,
  LoadBundle: { revision: true, bundles: true } satisfies FieldSet<LoadBundle>,
  BundleRef: { adapterCluster: true, revision: true, uri: true, sha256: true } satisfies FieldSet<BundleRef>,
  Activate: { revision: true } satisfies FieldSet<Activate>,
  Drain: {} satisfies FieldSet<Drain>,
  Stop: { reason: true } satisfies FieldSet<Stop>,
} as const;

/** The oneof member names, for the unit test and for validating decoded messages. */
export const REPORT_KINDS: readonly ReportKind[] = ['progress', 'metrics', 'artifact', 'serving', 'heartbeat', 'failure', 'completion', 'ack'];
export const DIRECTIVE_KINDS: readonly DirectiveKind[] = ['loadBundle', 'activate', 'drain', 'stop'];

/**
 * Finds the .proto by walking up from this file: it sits at a different depth under dist/
 * than in the source tree. TESSERA_PROTO_FILE overrides it for unusual layouts.
 */
export function protoFile(): string {
  const override = process.env.TESSERA_PROTO_FILE;
  if (override) return override;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, PROTO_RELATIVE_PATH);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find ${PROTO_RELATIVE_PATH} above ${dirname(fileURLToPath(import.meta.url))}; set TESSERA_PROTO_FILE`);
    dir = parent;
  }
}

export interface StatusProto {
  packageDefinition: protoLoader.PackageDefinition;
  /** The StatusHub service, for `server.addService`. */
  service: grpc.ServiceDefinition;
  /** The generated client class for StatusHub. */
  Client: grpc.ServiceClientConstructor;
}

let cached: StatusProto | undefined;

/** Loads the contract once per process. */
export function loadStatusProto(): StatusProto {
  if (cached) return cached;
  const packageDefinition = protoLoader.loadSync(protoFile(), LOADER_OPTIONS);
  const root = grpc.loadPackageDefinition(packageDefinition);
  const Client = (root.tessera as grpc.GrpcObject | undefined)?.v1 as grpc.GrpcObject | undefined;
  const ctor = Client?.StatusHub as grpc.ServiceClientConstructor | undefined;
  if (!ctor) throw new Error(`${protoFile()} does not define service ${PROTO_PACKAGE}.StatusHub`);
  cached = { packageDefinition, service: ctor.service, Client: ctor };
  return cached;
}

/** Same object, same key: how the hub and sinks index per-object state. */
export function objectKey(ref: Pick<ObjectRef, 'kind' | 'namespace' | 'name'>): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`;
}
