// The status hub on a real grpc-js server (port 0) with a stubbed authenticator.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { NotConnectedError, StatusHub } from '../../../operator/status/hub.js';
import type { WorkerReport } from '../../../operator/status/wire.js';
import { Reporter } from '../../../worker/report/reporter.js';
import { FakeClock } from '../fake-clock.js';
import { callerFor, eventually, objectRef, quietLogger, rawStream, RecordingSink, stubAuthenticator } from './harness.js';

describe('the status hub', () => {
  const a = objectRef('a');
  const b = objectRef('b');
  const sink = new RecordingSink();
  const registry = new Registry();
  let hub: StatusHub;
  let address: string;
  const opened: { close(): void }[] = [];
  const reporters: Reporter[] = [];

  before(async () => {
    hub = new StatusHub({
      authenticator: stubAuthenticator({ 'token-a': callerFor(a), 'token-b': callerFor(b) }),
      sink,
      logger: quietLogger,
      registry,
      patchIntervalMs: 50,
    });
    address = `127.0.0.1:${await hub.listen('127.0.0.1:0', grpc.ServerCredentials.createInsecure())}`;
  });
  afterEach(() => {
    for (const s of opened.splice(0)) s.close();
    for (const r of reporters.splice(0)) r.close();
  });
  after(async () => {
    await hub.close(1000);
  });

  const report = (seq: number, step: number, object = a): WorkerReport => ({
    seq, object, pod: 'a-pod', unixMs: 0, body: 'progress', progress: { step, totalSteps: 100, percent: step, etaSeconds: 0, stage: 'Training' },
  });
  const stream = (token: string | undefined) => {
    const s = rawStream(address, token);
    opened.push(s);
    return s;
  };

  it('refuses a stream without a token with UNAUTHENTICATED', async () => {
    const s = stream(undefined);
    s.call.write(report(1, 1));
    assert.equal((await s.status).code, grpc.status.UNAUTHENTICATED);
  });

  it('refuses an unknown token with UNAUTHENTICATED', async () => {
    const s = stream('garbage');
    assert.equal((await s.status).code, grpc.status.UNAUTHENTICATED);
  });

  it('ends the stream with PERMISSION_DENIED when a pod reports for another object, and records nothing for it', async () => {
    const s = stream('token-a');
    s.call.write(report(1, 42, b));
    const status = await s.status;
    assert.equal(status.code, grpc.status.PERMISSION_DENIED);
    assert.match(status.details, /may report only for SparseFineTune\/ns\/a/);
    assert.equal(hub.state(b), undefined);
    assert.ok(!sink.applied.some((x) => x.ref.name === 'b'));
  });

  it('ignores reports whose sequence number is not above the last one seen on the stream', async () => {
    const s = stream('token-a');
    s.call.write(report(1, 1));
    s.call.write(report(3, 3));
    s.call.write(report(2, 2));
    s.call.write(report(3, 99));
    s.call.end();
    assert.equal((await s.status).code, grpc.status.OK);
    assert.equal(hub.state(a)?.progress?.step, 3);
    await eventually('the coalesced trailing write', () => sink.applied.at(-1)?.state.progress?.step === 3);
    assert.ok(!sink.applied.some((x) => x.state.progress?.step === 99 || x.state.progress?.step === 2));
  });

  it('counts accepted reports by kind in tessera_status_reports_total', async () => {
    const text = await registry.getSingleMetricAsString('tessera_status_reports_total');
    assert.match(text, /tessera_status_reports_total\{kind="SparseFineTune"\} [1-9]/);
  });

  it('delivers a directive to the worker and resolves with its ack', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-hub-test-'));
    writeFileSync(join(dir, 'token'), 'token-a\n');
    const worker = new Reporter({ address, object: a, pod: 'a-pod', tokenFile: join(dir, 'token'), logger: quietLogger, heartbeatMs: 0 });
    reporters.push(worker);
    worker.onDirective((d) => {
      if (d.body === 'loadBundle') return { ok: true, message: `loaded ${d.loadBundle.revision}` };
      throw new Error(`cannot ${d.body}`);
    });
    worker.start();
    await eventually('the worker stream', () => hub.connectedPods(a).includes('a-pod'));
    const ack = await hub.send({ namespace: 'ns', pod: 'a-pod' }, { body: 'loadBundle', loadBundle: { revision: '7', bundles: [{ adapterCluster: 'ac', revision: 'r1', uri: '/b', sha256: 'ab' }] } }, 5000);
    assert.deepEqual({ ok: ack.ok, message: ack.message }, { ok: true, message: 'loaded 7' });
    const refused = await hub.send({ object: a }, { body: 'drain', drain: {} }, 5000);
    assert.deepEqual({ ok: refused.ok, message: refused.message }, { ok: false, message: 'cannot drain' });
    rmSync(dir, { recursive: true, force: true });
  });

  it('rejects a directive for a pod with no stream, and one that is never acknowledged', async () => {
    assert.throws(() => hub.send({ namespace: 'ns', pod: 'nobody' }, { body: 'stop', stop: { reason: 'x' } }), NotConnectedError);
    const s = stream('token-b');
    s.call.write(report(1, 1, b));
    await eventually('the raw stream', () => hub.connectedPods(b).length === 1);
    await assert.rejects(hub.send({ object: b }, { body: 'stop', stop: { reason: 'done' } }, 100), /no ack for directive/);
    assert.equal(s.directives[0]?.body, 'stop');
  });
});

describe('the status hub re-checking open streams', () => {
  it("ends a stream with UNAUTHENTICATED once its token is revoked, at the next re-check", async () => {
    const a = objectRef('a');
    const tokens = { 'token-a': callerFor(a) };
    const clock = new FakeClock();
    const hub = new StatusHub({ authenticator: stubAuthenticator(tokens), sink: new RecordingSink(), logger: quietLogger, clock, reauthenticateMs: 60_000 });
    const address = `127.0.0.1:${await hub.listen('127.0.0.1:0', grpc.ServerCredentials.createInsecure())}`;
    const s = rawStream(address, 'token-a');
    try {
      s.call.write({ seq: 1, object: a, pod: 'a-pod', unixMs: 0, body: 'heartbeat', heartbeat: {} });
      await eventually('the stream', () => hub.connectedPods(a).length === 1);
      await clock.advance(60_000);
      assert.deepEqual(hub.connectedPods(a), ['a-pod'], 'still valid at the first re-check');
      delete (tokens as Partial<typeof tokens>)['token-a'];
      await clock.advance(60_000);
      assert.equal((await s.status).code, grpc.status.UNAUTHENTICATED);
      assert.deepEqual(hub.connectedPods(a), []);
    } finally {
      s.close();
      await hub.close(1000);
    }
  });
});

describe('the status hub on a standby replica', () => {
  it('refuses streams with UNAVAILABLE until this replica leads, then takes them', async () => {
    const sink = new RecordingSink();
    let leading = false;
    const hub = new StatusHub({
      authenticator: stubAuthenticator({ 'token-a': callerFor(objectRef('a')) }), sink, logger: quietLogger, patchIntervalMs: 50, accepting: () => leading,
    });
    const address = `127.0.0.1:${await hub.listen('127.0.0.1:0', grpc.ServerCredentials.createInsecure())}`;
    try {
      const refused = rawStream(address, 'token-a');
      const status = await refused.status;
      refused.close();
      assert.equal(status.code, grpc.status.UNAVAILABLE);
      assert.match(status.details, /not the leader/);
      leading = true;
      const taken = rawStream(address, 'token-a');
      taken.call.write({ seq: 1, object: objectRef('a'), pod: 'a-pod', unixMs: 0, body: 'heartbeat', heartbeat: {} } satisfies WorkerReport);
      await eventually('the stream to be taken', () => hub.connectedPods(objectRef('a')).join() === 'a-pod');
      taken.close();
    } finally {
      await hub.close(1000);
    }
  });
});

describe('the status hub telling the rollout about replicas', () => {
  it('calls serving listeners when a replica first reports what it serves and when that changes, not on repeats', async () => {
    const hub = new StatusHub({ authenticator: stubAuthenticator({ 'token-a': callerFor(objectRef('a')) }), sink: new RecordingSink(), logger: quietLogger, patchIntervalMs: 50 });
    const address = `127.0.0.1:${await hub.listen('127.0.0.1:0', grpc.ServerCredentials.createInsecure())}`;
    const heard: string[] = [];
    hub.onServingChange((object, pod) => heard.push(`${object.name}/${pod}`));
    const s = rawStream(address, 'token-a');
    try {
      const serving = (seq: number, activeRevision: string): WorkerReport => ({
        seq, object: objectRef('a'), pod: 'a-pod', unixMs: 0, body: 'serving',
        serving: { loadedAdapters: [], activeRevision, queueDepth: 0, requestsPerSecond: 0, tokensPerSecond: 0, p50LatencyMs: 0, p99LatencyMs: 0 },
      });
      s.call.write(serving(1, 'r1'));
      s.call.write(serving(2, 'r1'));
      s.call.write(serving(3, 'r2'));
      await eventually('three reports folded in', () => hub.state(objectRef('a'))?.serving['a-pod']?.activeRevision === 'r2');
      assert.deepEqual(heard, ['a/a-pod', 'a/a-pod']);
    } finally {
      s.close();
      await hub.close(1000);
    }
  });
});
