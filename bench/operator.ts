// The operator at scale on the local control plane: 200 objects of each kind (600), created 10 at
// a time. Measures
//   apply→child: from the create call until a watch sees the object's Job (SparseFineTune,
//     AdapterCluster) or Deployment (LoRAServer);
//   report→status: authenticated workers (real pod-bound tokens, worker/report Reporter, the
//     operator's own TLS hub) send progress (serving stats for LoRAServers); from the send
//     until a watch sees it in .status;
//   API requests per reconcile: every request the operator process makes, counted by a proxy in
//     front of the apiserver, over tessera_reconcile_total from its /metrics.
// The cluster has no node, so worker pods stay Pending and nothing computes; the operator runs
// as operator/main.ts in its own process, as in its pod.
// Run: npm run bench -- operator [--per-kind N]
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import type { ObjectRef } from '../operator/status/wire.js';
import type { Tally } from './operator/api-proxy.js';
import { metricSum, startApiProxy, startOperator, startPlane, waitQuiet, type ApiProxy, type OperatorProcess, type Plane } from './operator/harness.js';
import { connectWorkers, type Worker } from './operator/reporters.js';
import { CollectionWatch, GROUP, KINDS, kindInfo, percentile, VERSION, type Kind, type WatchedObject } from './operator/workload.js';

const flag = process.argv.indexOf('--per-kind');
const PER_KIND = flag > 0 ? Number(process.argv[flag + 1]) : 200;
if (!Number.isInteger(PER_KIND) || PER_KIND < 1 || PER_KIND > 1000) {
  console.error(`invalid --per-kind ${JSON.stringify(process.argv[flag + 1])}: expected an integer from 1 to 1000 (default 200)`);
  process.exit(2);
}
const CREATE_CONCURRENCY = 10;
/** Objects per kind whose pod reports; a few dozen streams in all. */
const REPORTING_PER_KIND = Math.min(20, PER_KIND);
const ROUNDS = 5;
/** Each worker reports once per round; longer than the hub's 1 s coalescing interval, so every report is written at once. */
const ROUND_MS = 2000;
const NAMESPACE = 'bench';
const OPERATOR_NAMESPACE = 'tessera-system';

const log = (message: string): void => console.error(`[operator bench] ${message}`);
const key = (kind: string, name: string): string => `${kind}/${name}`;
const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '-');

interface Sent {
  round: number;
  sentMs: number;
}

interface Snapshot {
  tally: Tally;
  metrics: string;
}

async function snapshot(proxy: ApiProxy, operator: OperatorProcess): Promise<Snapshot> {
  const [tally, metrics] = await Promise.all([proxy.snapshot(), operator.metrics()]);
  return { tally, metrics };
}

/** Requests the status hub makes (authentication, owner walk, its status writes); the rest are the controllers'. */
const byHub = (line: string): boolean =>
  /^create tokenreviews|^get (pods|jobs|replicasets|deployments)$|\[tessera-status-hub\]|^get \w+\/status$/.test(line);
const isWatchOrList = (line: string): boolean => /^(watch|list) /.test(line);
/** The proxy's count of TLS connections the operator opened, kept in the same tally. */
const CONNECTIONS = 'tls connections';

function diff(after: Tally, before: Tally): Map<string, number> {
  const out = new Map<string, number>();
  for (const [line, entry] of Object.entries(after)) {
    const n = entry.count - (before[line]?.count ?? 0);
    if (n > 0) out.set(line, n);
  }
  return out;
}

/** Non-2xx answers, e.g. `409×12`, for the table. */
function failures(after: Tally, before: Tally, line: string): string {
  const now = after[line]?.codes ?? {};
  const was = before[line]?.codes ?? {};
  return Object.entries(now)
    .map(([code, n]) => [code, n - (was[code] ?? 0)] as const)
    .filter(([code, n]) => n > 0 && !code.startsWith('2'))
    .map(([code, n]) => `${code}×${n}`)
    .join(' ');
}

async function createAll(plane: Plane, created: Map<string, { startMs: number; ref: ObjectRef }>): Promise<void> {
  const api = plane.kubeConfig.makeApiClient(CustomObjectsApi);
  // Kinds interleaved, as a GitOps sync of a mixed folder would apply them.
  const queue = Array.from({ length: PER_KIND }, (_, i) => KINDS.map((k) => ({ info: k, name: `${k.prefix}-${String(i).padStart(3, '0')}` }))).flat();
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let item = queue[next++]; item; item = queue[next++]) {
      const startMs = performance.now();
      const obj = (await api.createNamespacedCustomObject({
        group: GROUP, version: VERSION, namespace: NAMESPACE, plural: item.info.plural,
        body: { apiVersion: `${GROUP}/${VERSION}`, kind: item.info.kind, metadata: { name: item.name }, spec: item.info.spec(item.name) },
      })) as { metadata: { uid: string; generation?: number } };
      const ref = { apiVersion: `${GROUP}/${VERSION}`, kind: item.info.kind, namespace: NAMESPACE, name: item.name, uid: obj.metadata.uid, generation: obj.metadata.generation ?? 1 };
      created.set(key(item.info.kind, item.name), { startMs, ref });
    }
  };
  await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, worker));
}

async function until(what: () => string, done: () => boolean, timeoutMs: number, watches: readonly CollectionWatch[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    const broken = watches.find((w) => w.error);
    if (broken) throw broken.error;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * What a worker of each kind reports in round n, and how status shows it: trainers and
 * compressors report progress (status.progress.step = n); serve replicas report serving stats
 * (status.serving.queueDepth = n), since a LoRAServer's status has no progress.
 */
const REPORTS: Record<Kind, { send(w: Worker, round: number): void; shown(status: Record<string, unknown> | undefined): number | undefined }> = {
  SparseFineTune: { send: (w, n) => progress(w, n, 'Training'), shown: (s) => (s?.progress as { step?: number } | undefined)?.step },
  AdapterCluster: { send: (w, n) => progress(w, n, 'Compressing'), shown: (s) => (s?.progress as { step?: number } | undefined)?.step },
  LoRAServer: {
    send: (w, n) => w.reporter.serving({ loadedAdapters: ['sotu'], activeRevision: '', queueDepth: n, requestsPerSecond: 3, tokensPerSecond: 120, p50LatencyMs: 40, p99LatencyMs: 90 }),
    shown: (s) => (s?.serving as { queueDepth?: number } | undefined)?.queueDepth,
  },
};

function progress(w: Worker, round: number, stage: string): void {
  w.reporter.progress({ step: round, totalSteps: ROUNDS, percent: (100 * round) / ROUNDS, etaSeconds: (ROUNDS - round) * 2, stage });
}

async function sendReports(workers: readonly Worker[], pending: Map<string, Sent[]>): Promise<void> {
  // Spread each round's reports over half the round, as independent workers would send them.
  const spacing = Math.min(50, (ROUND_MS / 2) / workers.length);
  for (let round = 1; round <= ROUNDS; round++) {
    const roundStart = performance.now();
    for (const w of workers) {
      const id = key(w.ref.kind, w.ref.name);
      pending.set(id, [...(pending.get(id) ?? []), { round, sentMs: performance.now() }]);
      REPORTS[w.ref.kind as Kind].send(w, round);
      await new Promise((r) => setTimeout(r, spacing));
    }
    await new Promise((r) => setTimeout(r, Math.max(0, roundStart + ROUND_MS - performance.now())));
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-bench-operator-'));
  const total = PER_KIND * KINDS.length;
  const watches: CollectionWatch[] = [];
  let plane: Plane | undefined;
  let proxy: ApiProxy | undefined;
  let operator: OperatorProcess | undefined;
  let workers: Worker[] = [];
  const benchStart = Date.now();
  const loadStart = loadavg()[0] ?? NaN;
  try {
    log(`starting the local control plane (no node) in ${dir}`);
    plane = await startPlane(join(dir, 'cluster'), [OPERATOR_NAMESPACE, NAMESPACE], log);
    proxy = await startApiProxy(plane.plane);
    operator = await startOperator(dir, plane.plane, proxy.port, OPERATOR_NAMESPACE);
    await waitQuiet(operator, 2000, 30_000);
    const s0 = await snapshot(proxy, operator);

    // Phase 1: apply → child.
    const created = new Map<string, { startMs: number; ref: ObjectRef }>();
    const childAt = new Map<string, number>();
    for (const path of new Set(KINDS.map((k) => k.child.path(NAMESPACE)))) {
      const w = new CollectionWatch(plane.kubeConfig, path, (type, obj, atMs) => {
        const owner = obj.metadata?.ownerReferences?.find((o) => o.controller);
        if (type === 'ADDED' && owner && kindInfo(owner.kind) && !childAt.has(key(owner.kind, owner.name))) childAt.set(key(owner.kind, owner.name), atMs);
      });
      await w.start();
      watches.push(w);
    }
    log(`creating ${total} objects, ${CREATE_CONCURRENCY} at a time`);
    const phase1Start = performance.now();
    await createAll(plane, created);
    const createSeconds = (performance.now() - phase1Start) / 1000;
    await until(() => `the children of ${total} objects (${childAt.size} seen)`, () => childAt.size >= total, 300_000, watches);
    const childrenSeconds = (performance.now() - phase1Start) / 1000;
    log(`created in ${createSeconds.toFixed(1)} s; all children after ${childrenSeconds.toFixed(1)} s; waiting for the operator to settle`);
    const settled1 = await waitQuiet(operator, 3000, 120_000);
    const phase1Seconds = (performance.now() - phase1Start) / 1000;
    const s1 = await snapshot(proxy, operator);
    const sample = await sampleStatus(plane);

    // Phase 2: report → status, through the hub with real pod identities.
    const secret = await plane.kubeConfig.makeApiClient(CoreV1Api).readNamespacedSecret({ name: 'tessera-operator-tls', namespace: OPERATOR_NAMESPACE });
    const caPem = Buffer.from(secret.data?.['ca.crt'] ?? '', 'base64').toString('utf8');
    const reporting = KINDS.flatMap((k) => Array.from({ length: REPORTING_PER_KIND }, (_, i) => created.get(key(k.kind, `${k.prefix}-${String(i).padStart(3, '0')}`))?.ref as ObjectRef));
    // Reports still on their way, per object; a slow one is not overwritten by the next round's.
    const pending = new Map<string, Sent[]>();
    const statusMs = new Map<Kind, number[]>(KINDS.map((k) => [k.kind, []]));
    for (const k of KINDS) {
      const w = new CollectionWatch(plane.kubeConfig, `/apis/${GROUP}/${VERSION}/namespaces/${NAMESPACE}/${k.plural}`, (type, obj: WatchedObject, atMs) => {
        const id = key(k.kind, obj.metadata?.name ?? '');
        const shown = REPORTS[k.kind].shown(obj.status);
        if (type !== 'MODIFIED' || shown === undefined) return;
        // A coalesced write shows the latest round, and with it every earlier one.
        const waiting = pending.get(id) ?? [];
        for (const sent of waiting.filter((s) => s.round <= shown)) statusMs.get(k.kind)?.push(atMs - sent.sentMs);
        const left = waiting.filter((s) => s.round > shown);
        if (left.length > 0) pending.set(id, left);
        else pending.delete(id);
      });
      await w.start();
      watches.push(w);
    }
    log(`connecting ${reporting.length} workers to the hub with pod-bound tokens`);
    workers = await connectWorkers(plane.kubeConfig, reporting, { address: `127.0.0.1:${operator.grpcPort}`, caPem, serverName: `tessera-operator.${OPERATOR_NAMESPACE}.svc` }, join(dir, 'workers'));
    log(`${ROUNDS} rounds of reports, one per worker every ${ROUND_MS / 1000} s`);
    await sendReports(workers, pending);
    await until(() => `the last reports to reach status (${pending.size} objects behind)`, () => pending.size === 0, 30_000, watches).catch((err: unknown) => log(String(err)));
    const missing = [...pending.values()].reduce((n, sent) => n + sent.length, 0);
    const settled2 = await waitQuiet(operator, 3000, 60_000);
    const s2 = await snapshot(proxy, operator);

    print({
      total, createSeconds, childrenSeconds, phase1Seconds, settled1, settled2, missing, s0, s1, s2,
      childMs: new Map(KINDS.map((k) => [k.kind, [...created].filter(([id]) => id.startsWith(`${k.kind}/`)).map(([id, c]) => (childAt.get(id) ?? NaN) - c.startMs)])),
      statusMs, watches, workers: workers.length, sample, load: [loadStart, loadavg()[0] ?? NaN],
    });
    log(`done in ${((Date.now() - benchStart) / 1000).toFixed(0)} s`);
  } catch (err) {
    if (operator) log(`operator log: ${operator.logFile}`);
    throw err;
  } finally {
    for (const w of workers) w.reporter.close();
    for (const w of watches) w.stop();
    await operator?.stop();
    proxy?.stop();
    await plane?.plane.stop();
    if (!process.env.TESSERA_KEEP_CLUSTER_DIR) await rm(dir, { recursive: true, force: true });
  }
}

interface Results {
  total: number;
  createSeconds: number;
  childrenSeconds: number;
  phase1Seconds: number;
  settled1: boolean;
  settled2: boolean;
  missing: number;
  s0: Snapshot;
  s1: Snapshot;
  s2: Snapshot;
  childMs: Map<Kind, number[]>;
  statusMs: Map<Kind, number[]>;
  watches: CollectionWatch[];
  workers: number;
  sample: string;
  /** 1-minute load average at the start and the end: the machine is shared. */
  load: [number, number];
}

function reportsAccepted(r: Results): number {
  return metricSum(r.s2.metrics, 'tessera_status_reports_total') - metricSum(r.s1.metrics, 'tessera_status_reports_total');
}

/** What a SparseFineTune's status says while its pod cannot be scheduled, for the reader to judge. */
async function sampleStatus(plane: Plane): Promise<string> {
  const name = `${KINDS[0]?.prefix}-000`;
  type Obj = { status?: { stage?: string; conditions?: { type: string; reason: string; message: string }[] } };
  const obj = (await plane.kubeConfig.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NAMESPACE, plural: 'sparsefinetunes', name })) as Obj;
  const progressing = obj.status?.conditions?.find((c) => c.type === 'Progressing');
  const pods = await plane.kubeConfig.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: NAMESPACE, labelSelector: `tessera.dev/name=${name}` });
  return `SparseFineTune ${name}: stage ${obj.status?.stage}, Progressing ${progressing?.reason} "${progressing?.message}", while its pod is ${pods.items.map((p) => p.status?.phase).join(', ')}`;
}

function print(r: Results): void {
  const row = (cells: (string | number)[], widths: number[]): string => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[0] ?? 0) : String(c).padStart(widths[i] ?? 0))).join('  ');
  const lat = [44, 5, 8, 8, 8];
  console.log(`\noperator bench: ${r.total} objects (${KINDS.map((k) => `${PER_KIND} ${k.kind}`).join(', ')}), created ${CREATE_CONCURRENCY} at a time in ${r.createSeconds.toFixed(1)} s;`);
  console.log('no node, so every worker pod stays Pending and nothing computes; the operator is operator/main.ts in its own process.');
  console.log(`(2-core machine shared with other work: load average ${r.load[0].toFixed(1)} at the start, ${r.load[1].toFixed(1)} at the end)\n`);
  console.log(row(['latency', 'n', 'p50 ms', 'p99 ms', 'max ms'], lat));
  const all = (m: Map<Kind, number[]>): number[] => [...m.values()].flat();
  for (const k of KINDS) {
    const xs = r.childMs.get(k.kind) ?? [];
    console.log(row([`apply→child  ${k.kind} → ${k.child.kind}`, xs.length, ms(percentile(xs, 50)), ms(percentile(xs, 99)), ms(Math.max(...xs))], lat));
  }
  const childAll = all(r.childMs);
  console.log(row(['apply→child  all', childAll.length, ms(percentile(childAll, 50)), ms(percentile(childAll, 99)), ms(Math.max(...childAll))], lat));
  for (const k of KINDS) {
    const xs = r.statusMs.get(k.kind) ?? [];
    console.log(row([`report→status  ${k.kind}`, xs.length, ms(percentile(xs, 50)), ms(percentile(xs, 99)), ms(Math.max(...xs))], lat));
  }
  const statusAll = all(r.statusMs);
  console.log(row(['report→status  all', statusAll.length, ms(percentile(statusAll, 50)), ms(percentile(statusAll, 99)), ms(Math.max(...statusAll))], lat));
  console.log(`  (all ${r.total} children within ${r.childrenSeconds.toFixed(1)} s of the first create; ${r.workers} workers × ${ROUNDS} reports, one per ${ROUND_MS / 1000} s each${r.missing ? `; ${r.missing} reports never reached status` : ''})`);

  const phase1 = diff(r.s1.tally, r.s0.tally);
  const phase2 = diff(r.s2.tally, r.s1.tally);
  const lines = [...new Set([...phase1.keys(), ...phase2.keys()])].sort((a, b) => (phase1.get(b) ?? 0) + (phase2.get(b) ?? 0) - (phase1.get(a) ?? 0) - (phase2.get(a) ?? 0));
  const req = [52, 8, 8, 8, 14];
  console.log(`\n${row(['operator API requests', 'apply', 'reports', 'ms/req', 'non-2xx'], req)}`);
  for (const line of lines) {
    const bad = [failures(r.s1.tally, r.s0.tally, line), failures(r.s2.tally, r.s1.tally, line)].filter((s) => s).join(' / ');
    const n = (r.s2.tally[line]?.count ?? 0) - (r.s0.tally[line]?.count ?? 0);
    const meanMs = line === CONNECTIONS || line.startsWith('watch ') ? '' : (((r.s2.tally[line]?.upstreamMs ?? 0) - (r.s0.tally[line]?.upstreamMs ?? 0)) / n).toFixed(0);
    const who = line === CONNECTIONS ? '' : byHub(line) ? 'hub   ' : 'ctrl  ';
    console.log(row([`${who}${line}`, phase1.get(line) ?? 0, phase2.get(line) ?? 0, meanMs, bad], req));
  }
  const reconciles = (a: Snapshot, b: Snapshot, controller?: string): number =>
    metricSum(b.metrics, 'tessera_reconcile_total', controller ? { controller } : {}) - metricSum(a.metrics, 'tessera_reconcile_total', controller ? { controller } : {});
  for (const k of KINDS) console.log(row([`reconciles ${k.kind}`, reconciles(r.s0, r.s1, k.kind), reconciles(r.s1, r.s2, k.kind), ''], req));
  const meanMs = (a: Snapshot, b: Snapshot, controller: string): string => {
    const d = (name: string): number => metricSum(b.metrics, name, { controller }) - metricSum(a.metrics, name, { controller });
    return ((1000 * d('tessera_reconcile_duration_seconds_sum')) / d('tessera_reconcile_duration_seconds_count')).toFixed(0);
  };
  for (const k of KINDS) console.log(row([`mean reconcile ms ${k.kind}`, meanMs(r.s0, r.s1, k.kind), meanMs(r.s1, r.s2, k.kind), ''], req));
  const errors = (a: Snapshot, b: Snapshot): number => metricSum(b.metrics, 'tessera_reconcile_total', { result: 'error' }) - metricSum(a.metrics, 'tessera_reconcile_total', { result: 'error' });
  console.log(row(['reconciles that failed (requeued)', errors(r.s0, r.s1), errors(r.s1, r.s2), ''], req));
  const sum = (m: Map<string, number>, pick: (line: string) => boolean): number => [...m].filter(([l]) => pick(l)).reduce((a, [, n]) => a + n, 0);
  const ctrl1 = sum(phase1, (l) => l !== CONNECTIONS && !byHub(l) && !isWatchOrList(l));
  const ctrl2 = sum(phase2, (l) => l !== CONNECTIONS && !byHub(l) && !isWatchOrList(l));
  const rec1 = reconciles(r.s0, r.s1);
  const rec2 = reconciles(r.s1, r.s2);
  console.log(row(['controller requests per reconcile (no watch/list)', (ctrl1 / rec1).toFixed(2), (ctrl2 / rec2).toFixed(2), ''], req));
  console.log(row(['controller requests per object / per report', (ctrl1 / r.total).toFixed(2), (ctrl2 / reportsAccepted(r)).toFixed(2), ''], req));
  const reports = reportsAccepted(r);
  console.log(row(['hub requests per accepted report', '', (sum(phase2, byHub) / reports).toFixed(2), ''], req));
  console.log(`  (apply: from the first create until the operator was idle${r.settled1 ? '' : ' (it never was, within 2 min)'}, ${r.phase1Seconds.toFixed(0)} s; reports: ${reports} reports accepted by the hub${r.settled2 ? '' : '; the operator was still busy after 1 min'})`);
  console.log(`  (${r.sample})`);
  const restarts = r.watches.reduce((a, w) => a + w.restarts, 0);
  if (restarts > 0) console.log(`  (the bench's watches were restarted ${restarts} times, resuming from their last resourceVersion)`);
  console.log(`RESULT operator child_p99_ms=${ms(percentile(childAll, 99))} status_p99_ms=${ms(percentile(statusAll, 99))} objects=${r.total}`);
}

await main();
