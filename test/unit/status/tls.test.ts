// The hub serves TLS with the operator's CA; a reporter trusting that CA connects, and a
// rotated certificate is used by new connections without restarting the server.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { StatusHub } from '../../../operator/status/hub.js';
import { RotatingServerCredentials } from '../../../operator/tls/credentials.js';
import { certInfo, createCa, DAY_MS, issueServingCert, signedBy, splitPem } from '../../../operator/tls/pki.js';
import { Reporter } from '../../../worker/report/reporter.js';
import { callerFor, eventually, objectRef, quietLogger, rawStream, RecordingSink, stubAuthenticator } from './harness.js';

/** The certificate names localhost; dialing 127.0.0.1 with SNI set to an IP is deprecated in Node. */
const SNI = { 'grpc.ssl_target_name_override': 'localhost' };

describe('the status hub over TLS', () => {
  const a = objectRef('a');
  const names = { dnsNames: ['localhost', 'tessera-operator.tessera-system.svc'], ipAddresses: ['127.0.0.1'] };
  let dir: string;
  let hub: StatusHub;
  let credentials: RotatingServerCredentials;
  let address: string;
  const sink = new RecordingSink();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-tls-test-'));
    const ca = await createCa('test-ca', 365 * DAY_MS);
    writeFileSync(join(dir, 'ca.crt'), ca.certPem);
    writeFileSync(join(dir, 'token'), 'token-a');
    credentials = new RotatingServerCredentials(await issueServingCert(ca, names, DAY_MS));
    hub = new StatusHub({ authenticator: stubAuthenticator({ 'token-a': callerFor(a) }), sink, logger: quietLogger, patchIntervalMs: 10 });
    address = `127.0.0.1:${await hub.listen('127.0.0.1:0', credentials)}`;
  });
  after(async () => {
    await hub.close(1000);
    rmSync(dir, { recursive: true, force: true });
  });

  it('issues a serving certificate for the requested names, signed by the CA', async () => {
    const ca = await createCa('c', DAY_MS);
    const leaf = await issueServingCert(ca, names, DAY_MS);
    const info = certInfo(leaf.certPem);
    assert.deepEqual(info.dnsNames, names.dnsNames);
    assert.deepEqual(info.ipAddresses, names.ipAddresses);
    assert.equal(await signedBy(leaf.certPem, ca.certPem), true);
    assert.equal(await signedBy(leaf.certPem, (await createCa('other', DAY_MS)).certPem), false);
  });

  it('writes PEM that a bundle split gives back byte for byte, so a kept CA compares equal', async () => {
    const ca = await createCa('c', DAY_MS);
    const other = await createCa('d', DAY_MS);
    assert.deepEqual(splitPem(ca.certPem + other.certPem), [ca.certPem, other.certPem]);
  });

  it('accepts a reporter that trusts the CA', async () => {
    const r = new Reporter({ address, object: a, pod: 'a-pod', caFile: join(dir, 'ca.crt'), tokenFile: join(dir, 'token'), logger: quietLogger, heartbeatMs: 0, channelOptions: SNI });
    r.start();
    r.progress({ step: 1, totalSteps: 2, percent: 50 });
    try {
      await eventually('the report over TLS', () => sink.applied.some((x) => x.state.progress?.step === 1));
    } finally {
      r.close();
    }
  });

  it('is refused by a client that does not trust the CA', async () => {
    const other = await createCa('stranger', DAY_MS);
    const s = rawStream(address, 'token-a', grpc.credentials.createSsl(Buffer.from(other.certPem)), SNI);
    assert.equal((await s.status).code, grpc.status.UNAVAILABLE);
    s.close();
  });

  it('serves a rotated certificate to new connections without a restart', async () => {
    const next = await createCa('next-ca', DAY_MS);
    credentials.rotate(await issueServingCert(next, names, DAY_MS));
    const s = rawStream(address, 'token-a', grpc.credentials.createSsl(Buffer.from(next.certPem)), SNI);
    s.call.write({ seq: 1, object: a, pod: 'a-pod', unixMs: 0, body: 'heartbeat', heartbeat: {} });
    s.call.end();
    assert.equal((await s.status).code, grpc.status.OK);
    s.close();
  });
});
