// Real owners for the status hub's ownership check: SparseFineTune objects, Jobs they
// control, and pod-bound tokens minted with the TokenRequest API for those Jobs' pods.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiException, CustomObjectsApi, type V1Pod } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from '../../cluster/paths.js';
import { waitFor } from '../../cluster/probe.js';
import { session } from '../../cluster/session.js';
import { clients } from '../helpers.js';
import type { ObjectRef } from '../../../operator/status/wire.js';

export const GROUP = 'tessera.dev';
export const VERSION = 'v1alpha1';
export type Kind = 'SparseFineTune' | 'LoRAServer';
export const PLURALS: Record<Kind, string> = { SparseFineTune: 'sparsefinetunes', LoRAServer: 'loraservers' };
const crdName = (kind: Kind) => `${PLURALS[kind]}.${GROUP}`;

/** A stand-in for a project CRD that does not install: any spec, any status, with /status. */
function minimalCrd(kind: Kind) {
  const plural = PLURALS[kind];
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: crdName(kind), labels: { 'tessera.dev/test-fixture': 'status' } },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [{
        name: VERSION, served: true, storage: true, subresources: { status: {} },
        schema: { openAPIV3Schema: { type: 'object', properties: {
          spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
          status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
        } } },
      }],
    },
  };
}

function crdFiles(): string[] {
  const dir = join(repoRoot, 'crds');
  return existsSync(dir) ? readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => join(dir, f)) : [];
}

/**
 * A spec the project's CRD accepts: the first SparseFineTune in crds/samples, else the
 * smallest one the schema allows today (every other field has a default).
 */
function sampleSpec(kind: Kind): Record<string, unknown> {
  const dir = join(repoRoot, 'crds', 'samples');
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort() : [];
  for (const file of files) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, file), 'utf8'))) {
      const obj = doc.toJSON() as { kind?: string; spec?: Record<string, unknown> } | null;
      if (obj?.kind === kind && obj.spec) return obj.spec;
    }
  }
  if (kind === 'LoRAServer') return { baseModel: { uri: 'file:///models/tiny' } };
  return { baseModel: { uri: 'file:///models/tiny' }, dataset: { uri: 'file:///data/train.jsonl' }, method: 'lora', output: { uri: 'file:///out/a' } };
}

const minimal = new Set<Kind>();

/**
 * Installs the project's CRDs (server-side apply, as a user would). While those do not
 * install, falls back to minimal CRDs for the kinds it lacks so the hub is still tested against
 * real owners, and says so. Returns a cleanup for what it created.
 */
export async function installCrd(): Promise<() => Promise<void>> {
  const kubectl = session().kubectl;
  const files = crdFiles();
  if (files.length > 0) {
    const applied = await kubectl(['apply', '--server-side', '-f', join(repoRoot, 'crds')]);
    if (applied.code === 0) {
      const established = await kubectl(['wait', '--for=condition=Established', ...Object.keys(PLURALS).map((k) => `crd/${crdName(k as Kind)}`), '--timeout=60s']);
      if (established.code === 0) return async () => undefined;
    }
    console.error(`      crds/ did not install (${applied.stderr.split('\n')[0]?.slice(0, 200)}); using minimal CRDs`);
  }
  const created: string[] = [];
  for (const kind of Object.keys(PLURALS) as Kind[]) {
    if ((await kubectl(['get', 'crd', crdName(kind)])).code === 0) continue;
    minimal.add(kind);
    const result = await kubectl(['create', '-f', '-'], { input: JSON.stringify(minimalCrd(kind)) });
    if (result.code !== 0) throw new Error(`cannot create a minimal ${kind} CRD: ${result.stderr}`);
    created.push(crdName(kind));
  }
  for (const name of created) {
    const established = await kubectl(['wait', '--for=condition=Established', `crd/${name}`, '--timeout=60s']);
    if (established.code !== 0) throw new Error(`CRD ${name} not established: ${established.stderr}`);
  }
  return async () => {
    if (created.length > 0) await kubectl(['delete', 'crd', ...created, '--wait=false']);
  };
}

export interface Workload {
  ref: ObjectRef;
  pod: V1Pod;
}

const SLEEPER = { name: 'worker', image: 'node:20-bookworm-slim', command: ['node', '-e', 'setInterval(() => {}, 1 << 30)'] };

/**
 * A Tessera object and the child its controller would create, with a sleeping pod:
 * SparseFineTune → Job → Pod, or LoRAServer → Deployment → ReplicaSet → Pod.
 * Resolves once the pod exists.
 */
export async function createWorkload(namespace: string, name: string, kind: Kind = 'SparseFineTune'): Promise<Workload> {
  const api = session().kubeConfig.makeApiClient(CustomObjectsApi);
  const created = (await api.createNamespacedCustomObject({
    group: GROUP, version: VERSION, namespace, plural: PLURALS[kind],
    body: { apiVersion: `${GROUP}/${VERSION}`, kind, metadata: { name }, spec: minimal.has(kind) ? {} : sampleSpec(kind) },
  })) as { metadata: { uid: string; generation?: number } };
  const uid = created.metadata.uid;
  const ownerReferences = [{ apiVersion: `${GROUP}/${VERSION}`, kind, name, uid, controller: true }];
  const { apps, batch, core } = clients();
  const child = `${name}-worker`;
  const labels = { 'tessera.dev/test-workload': child };
  if (kind === 'SparseFineTune') {
    await batch.createNamespacedJob({
      namespace,
      body: {
        metadata: { name: child, ownerReferences },
        spec: { backoffLimit: 0, template: { metadata: { labels }, spec: { restartPolicy: 'Never', terminationGracePeriodSeconds: 1, containers: [SLEEPER] } } },
      },
    });
  } else {
    await apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: child, ownerReferences },
        spec: { replicas: 1, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { terminationGracePeriodSeconds: 1, containers: [SLEEPER] } } },
      },
    });
  }
  let pod: V1Pod | undefined;
  await waitFor(`a pod of ${kind} ${namespace}/${name}`, async () => {
    pod = (await core.listNamespacedPod({ namespace, labelSelector: `tessera.dev/test-workload=${child}` })).items.find((p) => !p.metadata?.deletionTimestamp);
    return pod !== undefined;
  }, 60_000);
  const ref: ObjectRef = { apiVersion: `${GROUP}/${VERSION}`, kind, namespace, name, uid, generation: created.metadata.generation ?? 1 };
  return { ref, pod: pod as V1Pod };
}

/** A token bound to the pod, as the kubelet mints it for a projected serviceAccountToken volume. */
export async function podToken(pod: V1Pod, audience: string): Promise<string> {
  const result = await clients().core.createNamespacedServiceAccountToken({
    name: pod.spec?.serviceAccountName ?? 'default',
    namespace: pod.metadata?.namespace ?? '',
    body: { spec: { audiences: [audience], expirationSeconds: 600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata?.name, uid: pod.metadata?.uid } } },
  });
  const token = result.status?.token;
  if (!token) throw new Error(`TokenRequest for pod ${pod.metadata?.name} returned no token`);
  return token;
}

export async function readStatus(ref: ObjectRef): Promise<Record<string, unknown> | undefined> {
  const api = session().kubeConfig.makeApiClient(CustomObjectsApi);
  const plural = PLURALS[ref.kind as Kind];
  const obj = (await api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ref.namespace, plural, name: ref.name })) as { status?: Record<string, unknown> };
  return obj.status;
}

/** Deletes a pod at once and waits until the API server no longer has it. */
export async function deletePodAndWait(pod: V1Pod): Promise<void> {
  const { core } = clients();
  const name = pod.metadata?.name ?? '';
  const namespace = pod.metadata?.namespace ?? '';
  await core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 });
  await waitFor(`pod ${namespace}/${name} to be gone`, async () => {
    try {
      const current = await core.readNamespacedPod({ name, namespace });
      return current.metadata?.uid !== pod.metadata?.uid;
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return true;
      throw err;
    }
  }, 60_000);
}
