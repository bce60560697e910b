// The worker's reporter never blocks the work, keeps only the latest of each report kind,
// and brings a hub that appears later (or comes back) up to date.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Reporter, type ReporterOptions } from '../../../worker/report/reporter.js';
import { backoffDelay } from '../../../worker/report/backoff.js';
import { reporterEnv } from '../../../worker/report/env.js';
import { eventually, freePort, objectRef, quietLogger, RecordingServer } from './harness.js';

const FAST_BACKOFF = { initialMs: 20, maxMs: 100, multiplier: 2 };

describe('the worker status reporter', () => {
  const reporters: Reporter[] = [];
  const servers: RecordingServer[] = [];
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-reporter-test-'));
  });
  afterEach(() => {
    for (const r of reporters.splice(0)) r.close();
    for (const s of servers.splice(0)) s.stop();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const reporter = (port: number, options: Partial<ReporterOptions> = {}) => {
    const r = new Reporter({ address: `127.0.0.1:${port}`, object: objectRef('a'), pod: 'a-pod', logger: quietLogger, backoff: FAST_BACKOFF, heartbeatMs: 0, ...options });
    reporters.push(r);
    return r;
  };
  const server = async (port: number) => {
    const s = new RecordingServer();
    servers.push(s);
    await s.listen(port);
    return s;
  };

  it('returns from every report call at once while the hub is down', async () => {
    const r = reporter(await freePort()).start();
    const started = process.hrtime.bigint();
    for (let i = 0; i < 10_000; i++) r.progress({ step: i, totalSteps: 10_000, percent: i / 100 });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assert.ok(ms < 500, `10,000 progress calls took ${ms.toFixed(0)} ms`);
  });

  it('flush() resolves false within its timeout when the hub is unreachable', async () => {
    const r = reporter(await freePort()).start();
    r.failure({ reason: 'OutOfMemory', message: 'the step needed 9 GiB', retryable: false });
    const started = Date.now();
    assert.equal(await r.flush(300), false);
    assert.ok(Date.now() - started < 2000);
  });

  it('sends only the latest report of each kind to a hub that starts later', async () => {
    const port = await freePort();
    const r = reporter(port).start();
    for (let i = 1; i <= 100; i++) r.progress({ step: i, totalSteps: 100, percent: i });
    r.metrics({ loss: 3 });
    r.metrics({ loss: 2 });
    r.artifact({ name: 'adapter', uri: 'file:///old', sha256: 'aa', sizeBytes: 1 });
    r.artifact({ name: 'model', uri: 'file:///m', sha256: 'bb', sizeBytes: 2 });
    r.artifact({ name: 'adapter', uri: 'file:///new', sha256: 'cc', sizeBytes: 3 });
    const hub = await server(port);
    await eventually('the resent state', () => hub.kinds().length >= 4);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(hub.kinds().sort(), ['artifact', 'artifact', 'metrics', 'progress']);
    const byKind = Object.fromEntries(hub.reports.map((x) => [x.body === 'artifact' ? `artifact:${x.artifact.name}` : x.body, x]));
    assert.equal(byKind.progress?.body === 'progress' && byKind.progress.progress.step, 100);
    assert.equal(byKind.metrics?.body === 'metrics' && byKind.metrics.metrics.values.loss, 2);
    assert.equal(byKind['artifact:adapter']?.body === 'artifact' && byKind['artifact:adapter'].artifact.uri, 'file:///new');
    const seqs = hub.reports.map((x) => x.seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'sequence numbers increase');
  });

  it('reconnects after the hub restarts, resends its state with fresh sequence numbers and re-reads the token', async () => {
    const port = await freePort();
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'first\n');
    const r = reporter(port, { tokenFile }).start();
    const first = await server(port);
    r.progress({ step: 5, totalSteps: 10, percent: 50, stage: 'Training' });
    await eventually('the first report', () => first.kinds().includes('progress'));
    const lastSeq = first.reports.at(-1)?.seq ?? 0;
    first.stop();
    writeFileSync(tokenFile, 'second\n'); // the kubelet rotated it
    const second = await server(port);
    await eventually('the resent progress', () => second.kinds().includes('progress'), 10_000);
    const resent = second.reports.find((x) => x.body === 'progress');
    assert.equal(resent?.body === 'progress' && resent.progress.step, 5);
    assert.ok((resent?.seq ?? 0) > lastSeq, 'fresh sequence numbers');
    assert.deepEqual([first.tokens[0], second.tokens.at(-1)], ['Bearer first', 'Bearer second']);
  });

  it('flush() delivers the final report and resolves true', async () => {
    const port = await freePort();
    const hub = await server(port);
    const r = reporter(port).start();
    r.completion({ outputs: { adapterUri: 'file:///out' }, artifacts: [] });
    assert.equal(await r.flush(5000), true);
    assert.ok(hub.kinds().includes('completion'));
  });

  it('acks a directive with its handler result, and says so when there is no handler', async () => {
    const port = await freePort();
    const hub = await server(port);
    const r = reporter(port).start();
    await eventually('the stream', () => hub.streams.length === 1);
    hub.streams[0]?.write({ id: 'd1', body: 'activate', activate: { revision: '3' } });
    await eventually('the ack without a handler', () => hub.reports.some((x) => x.body === 'ack'));
    r.onDirective(async (d) => ({ ok: d.body === 'activate', message: 'switched' }));
    hub.streams[0]?.write({ id: 'd2', body: 'activate', activate: { revision: '4' } });
    await eventually('the second ack', () => hub.reports.filter((x) => x.body === 'ack').length === 2);
    const acks = hub.reports.flatMap((x) => (x.body === 'ack' ? [x.ack] : []));
    assert.deepEqual(acks.map((x) => [x.directiveId, x.ok]), [['d1', false], ['d2', true]]);
  });

  it('backs off exponentially with jitter, never to zero, capped', () => {
    const policy = { initialMs: 100, maxMs: 1000, multiplier: 2 };
    assert.equal(backoffDelay(0, policy, () => 0), 25);
    assert.equal(backoffDelay(3, policy, () => 0.5), 400);
    assert.equal(backoffDelay(20, policy, () => 0.999), 999);
  });

  it('reads its settings from the environment and names what is missing', () => {
    const env = {
      TESSERA_STATUS_ADDRESS: 'hub:9443', TESSERA_TOKEN_FILE: '/var/run/tessera/token', POD_NAME: 'p',
      TESSERA_OBJECT_KIND: 'LoRAServer', TESSERA_OBJECT_NAMESPACE: 'ns', TESSERA_OBJECT_NAME: 'srv', TESSERA_OBJECT_UID: 'u', TESSERA_OBJECT_GENERATION: '4',
    };
    const parsed = reporterEnv(env);
    assert.deepEqual(parsed.object, { apiVersion: 'tessera.dev/v1alpha1', kind: 'LoRAServer', namespace: 'ns', name: 'srv', uid: 'u', generation: 4 });
    assert.equal(parsed.caFile, undefined);
    assert.throws(() => reporterEnv({ ...env, POD_NAME: '' }), /POD_NAME is not set/);
    assert.throws(() => reporterEnv({ ...env, TESSERA_OBJECT_GENERATION: 'x' }), /invalid TESSERA_OBJECT_GENERATION "x"/);
  });
});
