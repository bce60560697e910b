// The pure builders of child objects: what each kind asks the cluster to run.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { AdapterCluster, LoRAServer, SparseFineTune } from '../../../operator/api/v1alpha1/index.js';
import { desiredAdapterCluster } from '../../../operator/controllers/adaptercluster/desired.js';
import { bundleSet, desiredLoRAServer, inPodBundleSet } from '../../../operator/controllers/loraserver/desired.js';
import { desiredSparseFineTune } from '../../../operator/controllers/sparsefinetune/desired.js';
import { resolveStorage } from '../../../operator/controllers/common/storage.js';
import { repoRoot } from '../../cluster/paths.js';

const settings = { image: 'ghcr.io/tessera-dev/tessera:0.1.0', statusAddress: '10.0.0.9:9443', caConfigMap: 'tessera-ca', tokenAudience: 'tessera.dev' };
const meta = { namespace: 'team-a', uid: 'uid-1', generation: 3 };

function load<T>(file: string, defaults: (o: T) => void): T {
  const obj = parse(readFileSync(join(repoRoot, 'crds', 'samples', file), 'utf8')) as T & { metadata: Record<string, unknown> };
  Object.assign(obj.metadata, meta);
  defaults(obj);
  return obj;
}

// Samples leave out what the apiserver defaults; fill the few the builders read.
const sft = (): SparseFineTune => load<SparseFineTune>('sparsefinetune-losa-2of4.yaml', (o) => Object.assign(o.spec, { backoffLimit: 2 }));
const ac = (): AdapterCluster => load<AdapterCluster>('adaptercluster-brown.yaml', () => undefined);
const ls = (): LoRAServer => load<LoRAServer>('loraserver.yaml', (o) => Object.assign(o.spec.service, { type: 'ClusterIP' }));

describe('desired children', () => {
  it('run a SparseFineTune as a Job with its GPUs, claims, token, CA and a hardened container', () => {
    const { job, configMap } = desiredSparseFineTune(sft(), settings);
    const pod = job.spec?.template.spec;
    const container = pod?.containers[0];
    assert.equal(container?.resources?.limits?.['nvidia.com/gpu'], '1');
    assert.deepEqual(container?.args, ['train', '--spec', '/etc/tessera/spec/spec.json']);
    assert.equal(container?.securityContext?.runAsNonRoot, true);
    assert.equal(container?.securityContext?.readOnlyRootFilesystem, true);
    assert.deepEqual(container?.securityContext?.capabilities?.drop, ['ALL']);
    assert.equal(pod?.automountServiceAccountToken, false);
    const claims = pod?.volumes?.filter((v) => v.persistentVolumeClaim).map((v) => v.persistentVolumeClaim?.claimName).sort();
    assert.deepEqual(claims, ['datasets', 'models', 'outputs']);
    const outputs = container?.volumeMounts?.find((m) => m.name === 'pvc-outputs');
    assert.equal(outputs?.readOnly, false);
    assert.equal(container?.volumeMounts?.find((m) => m.name === 'pvc-models')?.readOnly, true);
    const token = pod?.volumes?.find((v) => v.name === 'tessera-token')?.projected?.sources?.[0]?.serviceAccountToken;
    assert.equal(token?.audience, 'tessera.dev');
    assert.deepEqual(job.metadata?.ownerReferences?.[0], { apiVersion: 'tessera.dev/v1alpha1', kind: 'SparseFineTune', name: 'llama-tiny-losa', uid: 'uid-1', controller: true, blockOwnerDeletion: true });
    assert.equal(job.spec?.backoffLimit, 2);
    const file = JSON.parse(configMap.data?.['spec.json'] ?? '{}') as { locations: Record<string, string>; metadata: { generation: number } };
    assert.equal(file.locations['pvc://models/llama-tiny'], '/mnt/pvc/models/llama-tiny');
    assert.equal(file.metadata.generation, 3);
  });

  it('start a new Job when a spec field changes, and keep the name when nothing does', () => {
    const first = desiredSparseFineTune(sft(), settings).job.metadata?.name;
    assert.equal(desiredSparseFineTune(sft(), settings).job.metadata?.name, first);
    const changed = sft();
    changed.spec.training.steps = 1000;
    assert.notEqual(desiredSparseFineTune(changed, settings).job.metadata?.name, first);
    assert.ok((first ?? '').length <= 63);
  });

  it('compress the resolved adapters of an AdapterCluster, with the inputs in the run hash', () => {
    const adapters = [{ name: 'a', uri: 'pvc://adapters/a' }, { name: 'b', uri: 'pvc://adapters/b' }];
    const one = desiredAdapterCluster(ac(), adapters, settings);
    assert.deepEqual(one.job.spec?.template.spec?.containers[0]?.args?.[0], 'compress');
    const two = desiredAdapterCluster(ac(), [...adapters, { name: 'c', uri: 'pvc://adapters/c' }], settings);
    assert.notEqual(one.runHash, two.runHash);
  });

  it('serve a LoRAServer from a Deployment and Service whose pods survive adapter and revision changes', () => {
    const r1 = bundleSet([{ adapterCluster: 'brown-genres', revision: 'r1', uri: 'pvc://bundles/brown-genres/r1', sha256: 'ab'.repeat(32) }]);
    const roots = ['pvc://bundles/brown-genres'];
    const a = desiredLoRAServer(ls(), { startSet: r1, bundleRoots: roots }, settings);
    assert.equal(a.deployment.spec?.replicas, 2);
    assert.equal(a.service.spec?.ports?.[0]?.port, 8000);
    assert.equal(a.deployment.spec?.template.spec?.containers[0]?.readinessProbe?.httpGet?.path, '/health');
    const env = a.deployment.spec?.template.spec?.containers[0]?.env ?? [];
    assert.ok(!env.some((e) => e.name === 'TESSERA_OBJECT_GENERATION'), 'the generation would restart replicas on every spec change');
    assert.equal(env.find((e) => e.name === 'POD_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.podIP');
    const spec = JSON.parse(a.configMap.data?.['spec.json'] ?? '{}') as { inputs: { bundleSet: { revision: string; bundles: { uri: string; sha256: string }[] } } };
    assert.equal(spec.inputs.bundleSet.revision, r1.revision);
    assert.deepEqual(spec.inputs.bundleSet.bundles.map((b) => [b.uri, b.sha256]), [['/mnt/pvc/bundles/brown-genres/r1', 'ab'.repeat(32)]]);

    // A new revision, another adapter on a mounted claim, another generation: same pods.
    const more = ls();
    more.metadata.generation = 7;
    more.spec.adapters.push({ name: 'extra', uri: 'pvc://adapters/extra' });
    const r2 = bundleSet([{ adapterCluster: 'brown-genres', revision: 'r2', uri: 'pvc://bundles/brown-genres/r2' }]);
    const b = desiredLoRAServer(more, { startSet: r2, bundleRoots: roots }, settings);
    assert.notEqual(r2.revision, r1.revision);
    assert.equal(b.templateHash, a.templateHash);
    assert.deepEqual(b.deployment.spec?.template, a.deployment.spec?.template);
    const bigger = ls();
    bigger.spec.engine.maxBatchSize = 128;
    assert.notEqual(desiredLoRAServer(bigger, { startSet: r1, bundleRoots: roots }, settings).templateHash, a.templateHash);
  });

  it('mount an AdapterCluster output folder itself, so later revisions appear inside running pods', () => {
    const root = resolveStorage('file:///data/bundles/jd', false, true);
    assert.equal(root.volume?.hostPath?.path, '/data/bundles/jd');
    assert.equal(root.mount?.readOnly, true);
    assert.equal(resolveStorage('file:///data/bundles/jd/r1', false).mount?.mountPath, '/data/bundles/jd');
    const set = inPodBundleSet(bundleSet([{ adapterCluster: 'jd', revision: 'r1', uri: 'file:///data/bundles/jd/r1' }]));
    assert.equal(set.bundles[0]?.uri, '/data/bundles/jd/r1');
    assert.equal(bundleSet([]).revision, '');
  });

  it('map storage URIs to volumes and refuse unknown schemes by name', () => {
    assert.equal(resolveStorage('file:///data/models/tiny', false).location, '/data/models/tiny');
    assert.equal(resolveStorage('https://x.example/a.tar', false).volume, undefined);
    assert.throws(() => resolveStorage('s3://bucket/x', false), /unsupported storage URI "s3:\/\/bucket\/x"/);
  });
});
