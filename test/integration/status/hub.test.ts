// The status hub against the real control plane: real TokenReview, real ownerReferences,
// real /status patches, and the TLS Secret and CA ConfigMap it manages.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createKubeStatusHub } from '../../../operator/status/index.js';
import type { StatusHub } from '../../../operator/status/hub.js';
import { hubCredentials, TlsStore } from '../../../operator/tls/index.js';
import { Reporter } from '../../../worker/report/reporter.js';
import { waitFor } from '../../cluster/probe.js';
import { session } from '../../cluster/session.js';
import { rawStream } from '../../unit/status/harness.js';
import { clients, deleteNamespace, freshNamespace } from '../helpers.js';
import { createWorkload, deletePodAndWait, installCrd, podToken, readStatus, type Workload } from './fixtures.js';

const AUTH_CACHE_TTL_MS = 500;

describe('the status hub on a real cluster', function () {
  let ns: string;
  let uninstallCrd: () => Promise<void> = async () => undefined;
  let a: Workload;
  let b: Workload;
  let tokenA: string;
  let hub: StatusHub;
  let address: string;
  let dir: string;
  const logLines: string[] = [];
  const reporters: Reporter[] = [];
  const streams: { close(): void }[] = [];

  before(async () => {
    ns = await freshNamespace('status');
    uninstallCrd = await installCrd();
    [a, b] = await Promise.all([createWorkload(ns, 'a'), createWorkload(ns, 'b')]);
    tokenA = await podToken(a.pod, 'tessera.dev');
    dir = mkdtempSync(join(tmpdir(), 'tessera-status-it-'));
    const logs = new Writable({ write: (chunk: Buffer, _enc, done) => (logLines.push(chunk.toString()), done()) });
    hub = createKubeStatusHub({ kubeConfig: session().kubeConfig, logger: pino({ level: 'debug' }, logs), registry: new Registry(), authCacheTtlMs: AUTH_CACHE_TTL_MS });
    address = `127.0.0.1:${await hub.listen('127.0.0.1:0', grpc.ServerCredentials.createInsecure())}`;
  });
  afterEach(() => {
    for (const r of reporters.splice(0)) r.close();
    for (const s of streams.splice(0)) s.close();
  });
  after(async () => {
    await hub?.close(1000);
    if (dir) rmSync(dir, { recursive: true, force: true });
    await deleteNamespace(ns);
    await uninstallCrd();
  });

  const reporterFor = (w: Workload, token: string) => {
    const tokenFile = join(dir, `${w.ref.name}-${reporters.length}.token`);
    writeFileSync(tokenFile, token);
    const r = new Reporter({ address, object: w.ref, pod: w.pod.metadata?.name ?? '', tokenFile, logger: pino({ level: 'silent' }), heartbeatMs: 0 });
    reporters.push(r);
    return r;
  };
  const statusOf = async (token: string | undefined, object = a.ref) => {
    const s = rawStream(address, token);
    streams.push(s);
    s.call.write({ seq: 1, object, pod: 'x', unixMs: Date.now(), body: 'progress', progress: { step: 1, totalSteps: 2, percent: 50, etaSeconds: 0, stage: 'Hijacked' } });
    return s.status;
  };

  it("accepts the reports of A's pod and patches A's status within 2 s", async () => {
    const r = reporterFor(a, tokenA).start();
    await waitFor('the worker stream to be accepted', async () => r.connected, 15_000, 50);
    const sent = Date.now();
    r.progress({ step: 30, totalSteps: 100, percent: 30.7, etaSeconds: 70, stage: 'Training' });
    r.metrics({ loss: 2.5 }, [{ index: 0, sparsityPercent: 70, rank: 8, reconstructionError: 0.05 }]);
    await waitFor("A's status.progress", async () => ((await readStatus(a.ref))?.progress as { percent?: number } | undefined)?.percent === 30, 2000, 50);
    const latencyMs = Date.now() - sent;
    const got = await session().kubectl(['get', 'sparsefinetunes.tessera.dev', 'a', '-n', ns, '-o', 'json']);
    assert.equal(got.code, 0, got.stderr);
    const status = (JSON.parse(got.stdout) as { status: Record<string, unknown> }).status;
    assert.deepEqual(status.progress, { step: 30, totalSteps: 100, percent: 30, etaSeconds: 70 });
    assert.equal(status.stage, 'Training');
    await waitFor("A's status.metrics", async () => ((await readStatus(a.ref))?.metrics as { loss?: number } | undefined)?.loss === 2.5, 3000, 50);
    console.error(`      status visible ${latencyMs} ms after the report`);
  });

  it('turns a failure report into a Failed condition with reason, message and observedGeneration', async () => {
    const r = reporterFor(a, tokenA).start();
    r.failure({ reason: 'DatasetUnreadable', message: 'line 3 of train.jsonl is not JSON', retryable: false });
    type Conditions = { type: string; status: string; reason: string; message: string; observedGeneration?: number }[];
    let conditions: Conditions = [];
    await waitFor('the Failed condition', async () => {
      conditions = ((await readStatus(a.ref))?.conditions as Conditions | undefined) ?? [];
      return conditions.some((c) => c.type === 'Failed');
    }, 5000, 100);
    const failed = conditions.find((c) => c.type === 'Failed');
    assert.deepEqual(
      { status: failed?.status, reason: failed?.reason, message: failed?.message, observedGeneration: failed?.observedGeneration },
      { status: 'True', reason: 'DatasetUnreadable', message: 'line 3 of train.jsonl is not JSON', observedGeneration: a.ref.generation },
    );
    assert.equal(((await readStatus(a.ref))?.progress as { percent?: number } | undefined)?.percent, 30, 'the progress written before is kept');
  });

  it('refuses a stream without a token with UNAUTHENTICATED', async () => {
    assert.equal((await statusOf(undefined)).code, grpc.status.UNAUTHENTICATED);
  });

  it('refuses a garbage token with UNAUTHENTICATED', async () => {
    assert.equal((await statusOf('not.a.jwt')).code, grpc.status.UNAUTHENTICATED);
  });

  it('refuses a token minted for another audience with UNAUTHENTICATED', async () => {
    const status = await statusOf(await podToken(a.pod, 'someone-else'));
    assert.equal(status.code, grpc.status.UNAUTHENTICATED);
  });

  it("refuses A's token reporting for B with PERMISSION_DENIED and leaves B's status alone", async () => {
    const status = await statusOf(tokenA, b.ref);
    assert.equal(status.code, grpc.status.PERMISSION_DENIED);
    await new Promise((resolve) => setTimeout(resolve, 1200)); // a coalesced write would have landed by now
    assert.equal((await readStatus(b.ref))?.progress, undefined);
  });

  it('refuses with PERMISSION_DENIED a valid token of a pod that no Tessera object owns', async () => {
    const { core } = clients();
    const pod = await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: 'stray' }, spec: { containers: [{ name: 'c', image: 'node:20-bookworm-slim', command: ['node', '-e', 'setInterval(() => {}, 1 << 30)'] }] } },
    });
    const status = await statusOf(await podToken(pod, 'tessera.dev'));
    assert.equal(status.code, grpc.status.PERMISSION_DENIED);
    assert.match(status.details, /is not owned by/);
    await core.deleteNamespacedPod({ name: 'stray', namespace: ns, gracePeriodSeconds: 0 });
  });

  it('accepts a LoRAServer replica (Pod → ReplicaSet → Deployment → LoRAServer) and writes status.serving', async () => {
    const srv = await createWorkload(ns, 'srv', 'LoRAServer');
    const r = reporterFor(srv, await podToken(srv.pod, 'tessera.dev')).start();
    r.serving({ loadedAdapters: ['a', 'b'], activeRevision: '3', queueDepth: 2, requestsPerSecond: 4.5, tokensPerSecond: 90, p50LatencyMs: 20, p99LatencyMs: 80 });
    let status: Record<string, unknown> | undefined;
    await waitFor('LoRAServer status.serving', async () => (status = await readStatus(srv.ref))?.serving !== undefined, 10_000, 100);
    assert.deepEqual(status?.serving, { requestsPerSecond: 4.5, tokensPerSecond: 90, p50LatencyMs: 20, p99LatencyMs: 80, queueDepth: 2 });
    assert.deepEqual((status?.bundleRevision as { active?: unknown } | undefined)?.active, [{ pod: srv.pod.metadata?.name, revision: '3' }]);
    assert.equal(status?.servedAdapters, 2);
  });

  it('never writes a token into its logs', () => {
    assert.ok(logLines.length > 0, 'the hub logged something');
    const text = logLines.join('');
    assert.ok(!text.includes(tokenA), 'token of A found in the logs');
    assert.ok(!text.includes('not.a.jwt'), 'garbage token found in the logs');
  });

  it("rejects A's token once A's pod is deleted and the cached verdict expires", async () => {
    const token = await podToken(a.pod, 'tessera.dev');
    assert.equal(await streamCode(token), grpc.status.OK, 'accepted while the pod exists');
    await deletePodAndWait(a.pod);
    await new Promise((resolve) => setTimeout(resolve, AUTH_CACHE_TTL_MS + 100));
    assert.equal(await streamCode(token), grpc.status.UNAUTHENTICATED);
  });

  it('keeps its CA and serving certificate in a Secret, publishes the CA, and serves TLS with them', async () => {
    const names = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] };
    const tls = await hubCredentials({ logger: pino({ level: 'silent' }), kubeConfig: session().kubeConfig, namespace: ns, names, caNamespaces: [ns] });
    const tlsHub = createKubeStatusHub({ kubeConfig: session().kubeConfig, logger: pino({ level: 'silent' }), authCacheTtlMs: AUTH_CACHE_TTL_MS });
    try {
      const { core } = clients();
      const secret = await core.readNamespacedSecret({ name: 'tessera-operator-tls', namespace: ns });
      assert.equal(secret.type, 'kubernetes.io/tls');
      assert.deepEqual(Object.keys(secret.data ?? {}).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
      const bundle = (await core.readNamespacedConfigMap({ name: 'tessera-ca', namespace: ns })).data?.['ca.crt'];
      assert.equal(bundle, Buffer.from(secret.data?.['ca.crt'] ?? '', 'base64').toString());
      writeFileSync(join(dir, 'ca.crt'), bundle ?? '');
      const port = await tlsHub.listen('127.0.0.1:0', tls.credentials);
      const tokenFile = join(dir, 'b.token');
      writeFileSync(tokenFile, await podToken(b.pod, 'tessera.dev'));
      const r = new Reporter({
        address: `127.0.0.1:${port}`, object: b.ref, pod: b.pod.metadata?.name ?? '', tokenFile, caFile: join(dir, 'ca.crt'),
        logger: pino({ level: 'silent' }), heartbeatMs: 0, channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
      });
      reporters.push(r);
      r.start().progress({ step: 1, totalSteps: 4, percent: 25, stage: 'Pruning' });
      await waitFor("B's status over TLS", async () => (await readStatus(b.ref))?.stage === 'Pruning', 10_000, 100);
    } finally {
      tls.stop();
      await tlsHub.close(1000);
    }
  });

  it('reuses a valid Secret and re-issues the serving certificate from the same CA when it is due', async () => {
    const names = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] };
    const store = (now: Date) => new TlsStore({ kubeConfig: session().kubeConfig, namespace: ns, secretName: 'renewal-test', names, caNamespaces: [ns], caConfigMapName: 'renewal-ca', now: () => now });
    const first = await store(new Date()).ensure();
    assert.equal((await store(new Date()).ensure()).certPem, first.certPem, 'a valid Secret is reused');
    const later = await store(new Date(Date.now() + 70 * 24 * 3600_000)).ensure(); // 20 of 90 days left
    assert.notEqual(later.certPem, first.certPem, 'the serving certificate was re-issued');
    assert.equal(later.caBundlePem, first.caBundlePem, 'workers keep trusting the same CA');
    const secret = await clients().core.readNamespacedSecret({ name: 'renewal-test', namespace: ns });
    assert.equal(Buffer.from(secret.data?.['tls.crt'] ?? '', 'base64').toString(), later.certPem);
  });

  async function streamCode(token: string): Promise<grpc.status> {
    const s = rawStream(address, token);
    streams.push(s);
    s.call.write({ seq: 1, object: a.ref, pod: 'x', unixMs: Date.now(), body: 'heartbeat', heartbeat: {} });
    s.call.end();
    return (await s.status).code;
  }
});
