// Worker identities for the reports→status part: for each chosen object, its real (Pending) pod,
// a pod-bound token minted with the TokenRequest API (what the kubelet puts in the projected
// volume), and a worker/report Reporter that dials the operator's hub over TLS with it.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';
import { waitFor } from '../../test/cluster/probe.js';
import type { ObjectRef } from '../../operator/status/wire.js';
import { Reporter } from '../../worker/report/reporter.js';

export interface Worker {
  ref: ObjectRef;
  pod: string;
  reporter: Reporter;
}

const TOKEN_AUDIENCE = 'tessera.dev';

/** The worker pod of each object, found by the labels every child's pod template carries. */
async function podsFor(core: CoreV1Api, refs: readonly ObjectRef[], timeoutMs: number): Promise<Map<string, V1Pod>> {
  const found = new Map<string, V1Pod>();
  const namespace = refs[0]?.namespace ?? '';
  await waitFor(`worker pods of ${refs.length} objects`, async () => {
    for (const pod of (await core.listNamespacedPod({ namespace })).items) {
      const labels = pod.metadata?.labels ?? {};
      const ref = refs.find((r) => labels['tessera.dev/kind'] === r.kind.toLowerCase() && labels['tessera.dev/name'] === r.name);
      if (ref && !pod.metadata?.deletionTimestamp) found.set(ref.name, pod);
    }
    return found.size === refs.length;
  }, timeoutMs, 1000);
  return found;
}

export async function connectWorkers(kubeConfig: KubeConfig, refs: readonly ObjectRef[], hub: { address: string; caPem: string; serverName: string }, dir: string): Promise<Worker[]> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  await mkdir(dir, { recursive: true });
  const caFile = join(dir, 'ca.crt');
  await writeFile(caFile, hub.caPem);
  const pods = await podsFor(core, refs, 120_000);
  const workers: Worker[] = [];
  for (const ref of refs) {
    const pod = pods.get(ref.name) as V1Pod;
    const minted = await core.createNamespacedServiceAccountToken({
      name: pod.spec?.serviceAccountName ?? 'default', namespace: ref.namespace,
      body: { spec: { audiences: [TOKEN_AUDIENCE], expirationSeconds: 3600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata?.name, uid: pod.metadata?.uid } } },
    });
    const tokenFile = join(dir, `${ref.name}.token`);
    await writeFile(tokenFile, minted.status?.token ?? '', { mode: 0o600 });
    const reporter = new Reporter({ address: hub.address, object: ref, pod: pod.metadata?.name ?? '', tokenFile, caFile, logger: pino({ level: 'silent' }), heartbeatMs: 0,
      // Workers dial the operator Service's DNS name; the bench reaches the same listener on loopback.
      channelOptions: { 'grpc.ssl_target_name_override': hub.serverName },
    });
    workers.push({ ref, pod: pod.metadata?.name ?? '', reporter: reporter.start() });
  }
  await waitFor(`${workers.length} worker streams to be accepted by the hub`, async () => workers.every((w) => w.reporter.connected), 60_000, 200);
  return workers;
}
