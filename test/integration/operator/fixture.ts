// The operator as the integration tests run it: its status hub (TLS, TokenReview auth) and its
// controllers in this process, workers as real processes on the process node, data in a temp folder.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Manager } from '../../../operator/manager/manager.js';
import { createKubeStatusHub, type StatusHub } from '../../../operator/status/index.js';
import { hubCredentials, TlsStore } from '../../../operator/tls/index.js';
import { repoRoot } from '../../cluster/paths.js';
import { session } from '../../cluster/session.js';
import { writeTinyModel } from '../../unit/serve/fixture.js';
import { deleteNamespace, freshNamespace } from '../helpers.js';

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

export interface OperatorFixture {
  ns: string;
  /** A temp folder the worker pods see at the same path (file:// URIs). */
  data: string;
  hub: StatusHub;
  manager: Manager;
  get<T = Record<string, unknown>>(plural: string, name: string): Promise<T & { metadata: { generation?: number }; status?: Record<string, unknown> & { conditions?: Condition[] } }>;
  stop(): Promise<void>;
}

export const condition = (o: { status?: { conditions?: Condition[] } }, type: string): Condition | undefined => o.status?.conditions?.find((c) => c.type === type);

/**
 * CRDs installed, a fresh namespace, and a data folder whose `models/tiny` holds a tiny random
 * checkpoint with a tokenizer (serve replicas load its weights) that fits the compress fixtures' modules.
 */
export async function prepareNamespace(prefix: string): Promise<{ ns: string; data: string }> {
  const crds = await session().kubectl(['apply', '--server-side', '-f', join(repoRoot, 'crds')]);
  assert.equal(crds.code, 0, crds.stderr);
  const ns = await freshNamespace(prefix);
  const data = mkdtempSync(join(tmpdir(), 'tessera-data-'));
  for (const dir of ['models/tiny', 'data', 'out', 'adapters/a', 'bundles']) mkdirSync(join(data, dir), { recursive: true });
  await writeTinyModel(join(data, 'models/tiny'));
  return { ns, data };
}

/** Starts hub and controllers for a fresh namespace; `models/tiny` is as prepareNamespace writes it. */
export async function startOperator(prefix: string): Promise<OperatorFixture> {
  const { ns, data } = await prepareNamespace(prefix);
  const logger = pino({ level: process.env.TESSERA_TEST_VERBOSE ? 'debug' : 'silent' });
  const kubeConfig = session().kubeConfig;
  const tlsOptions = { kubeConfig, namespace: ns, names: { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }, caNamespaces: [] };
  const creds = await hubCredentials({ ...tlsOptions, logger });
  const material = await new TlsStore(tlsOptions).ensure();
  const hub = createKubeStatusHub({ kubeConfig, logger, patchIntervalMs: 200 });
  const port = await hub.listen('127.0.0.1:0', creds.credentials);
  const manager = new Manager({
    kubeConfig, logger, caBundlePem: material.caBundlePem, hub,
    settings: { image: 'ghcr.io/tessera-dev/tessera:test', statusAddress: `127.0.0.1:${port}`, caConfigMap: 'tessera-ca', tokenAudience: 'tessera.dev' },
  });
  await manager.start();
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  return {
    ns, data, hub, manager,
    get: async (plural, name) => (await custom.getNamespacedCustomObject({ group: 'tessera.dev', version: 'v1alpha1', namespace: ns, plural, name })) as never,
    async stop() {
      await manager.stop();
      await hub.close();
      creds.stop();
      await deleteNamespace(ns);
      rmSync(data, { recursive: true, force: true });
    },
  };
}
