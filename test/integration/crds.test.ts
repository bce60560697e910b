// The real apiserver accepts the samples and rejects bad specs at admission, naming the field.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { repoRoot } from '../cluster/paths.js';
import { session } from '../cluster/session.js';
import { deleteNamespace, freshNamespace } from './helpers.js';

type Obj = { [key: string]: unknown };
const sample = (file: string): Obj => parse(readFileSync(join(repoRoot, 'crds', 'samples', file), 'utf8')) as Obj;

// Fixture builders in the style of cert-manager's gen.X(...): a valid object, then one mutation.
const sft = (mutate: (o: Obj & { spec: Obj }) => void) => build('sparsefinetune-losa-2of4.yaml', mutate);
const ac = (mutate: (o: Obj & { spec: Obj }) => void) => build('adaptercluster-brown.yaml', mutate);
const ls = (mutate: (o: Obj & { spec: Obj }) => void) => build('loraserver.yaml', mutate);

function build(file: string, mutate: (o: Obj & { spec: Obj }) => void): Obj {
  const obj = structuredClone(sample(file)) as Obj & { spec: Obj };
  mutate(obj);
  return obj;
}

const at = (o: Obj, path: string): Obj => path.split('.').reduce<Obj>((cur, key) => cur[key] as Obj, o);
const adapters = (o: Obj & { spec: Obj }) => o.spec.adapters as Obj[];

const INVALID: [string, Obj, string][] = [
  ['a sparsity target above 95 %', sft((o) => (at(o, 'spec.sparsity').targetPercent = 96)), 'spec.sparsity.targetPercent'],
  ['a negative sparsity target', sft((o) => (at(o, 'spec.sparsity').targetPercent = -1)), 'spec.sparsity.targetPercent'],
  ['an N:M pattern with N > M', sft((o) => (at(o, 'spec.sparsity').pattern = '4:2')), 'spec.sparsity.pattern'],
  ['an N:M pattern with N = M', sft((o) => (at(o, 'spec.sparsity').pattern = '4:4')), 'spec.sparsity.pattern'],
  ['an unknown sparsity pattern', sft((o) => (at(o, 'spec.sparsity').pattern = 'checkerboard')), 'spec.sparsity.pattern'],
  ['rank 0', sft((o) => (at(o, 'spec.adapter').rank = 0)), 'spec.adapter.rank'],
  ['a rank above maxRank', sft((o) => (at(o, 'spec.adapter').rank = 32)), 'spec.adapter.rank'],
  ['an unknown method', sft((o) => (o.spec.method = 'magic')), 'spec.method'],
  ['a pruning method without sparsity', sft((o) => delete o.spec.sparsity), 'spec.sparsity'],
  ['loram settings with method losa', sft((o) => (o.spec.loram = { pruning: 'structured' })), 'spec.loram'],
  ['spallm settings with method losa', sft((o) => (o.spec.spallm = { bits: 4 })), 'spec.spallm'],
  ['elastic settings with method losa', sft((o) => (o.spec.elastic = { rankChoices: [8, 4] })), 'spec.elastic'],
  ['plain lora with a sparsity target', sft((o) => { o.spec.method = 'lora'; }), 'spec.sparsity.targetPercent'],
  ['a base model on an unsupported scheme', sft((o) => (at(o, 'spec.baseModel').uri = 's3://bucket/llama')), 'spec.baseModel.uri'],
  ['an https base model without a digest', sft((o) => (at(o, 'spec.baseModel').uri = 'https://models.example/llama.tar')), 'spec.baseModel.sha256'],
  ['a digest that is not 64 hex characters', sft((o) => (at(o, 'spec.baseModel').sha256 = 'abc123')), 'spec.baseModel.sha256'],
  ['a learning rate that is not a number', sft((o) => (at(o, 'spec.training').learningRate = 'fast')), 'spec.training.learningRate'],
  ['a learning rate of 2', sft((o) => (at(o, 'spec.training').learningRate = '2')), 'spec.training.learningRate'],
  ['an output with neither model nor adapter', sft((o) => Object.assign(at(o, 'spec.output'), { mergedModel: false, adapter: false })), 'spec.output.adapter'],
  ['an output on http', sft((o) => (at(o, 'spec.output').uri = 'https://outputs.example/x')), 'spec.output.uri'],
  ['duplicate target modules', sft((o) => (at(o, 'spec.adapter').targetModules = ['q_proj', 'q_proj'])), 'spec.adapter.targetModules'],
  ['an unknown target module', sft((o) => (at(o, 'spec.adapter').targetModules = ['lm_head'])), 'spec.adapter.targetModules[0]'],
  ['an enrollment name that is not DNS-1123', sft((o) => (at(o, 'spec.output').enrollInto = { adapterCluster: 'brown', adapterName: 'Bad_Name' })), 'spec.output.enrollInto.adapterName'],
  ['17 GPUs', sft((o) => (at(o, 'spec.resources').gpus = 17)), 'spec.resources.gpus'],
  ['a memory request that is not a quantity', sft((o) => (at(o, 'spec.resources').memory = 'lots')), 'spec.resources.memory'],
  ['duplicate adapter names', ac((o) => (adapters(o)[1]!.name = adapters(o)[0]!.name)), 'spec.adapters[1]'],
  ['an adapter name with capitals', ac((o) => (adapters(o)[0]!.name = 'Press')), 'spec.adapters[0].name'],
  ['an adapter with both uri and sparseFineTune', ac((o) => (adapters(o)[0]!.sparseFineTune = 'news')), 'spec.adapters[0].uri'],
  ['an adapter with neither uri nor sparseFineTune', ac((o) => { delete adapters(o)[0]!.uri; delete adapters(o)[0]!.sha256; }), 'spec.adapters[0].uri'],
  ['an https adapter without a digest', ac((o) => delete adapters(o)[3]!.sha256), 'spec.adapters[3].sha256'],
  ['clusters that are neither a number nor auto', ac((o) => (at(o, 'spec.compression').clusters = 'many')), 'spec.compression.clusters'],
  ['zero clusters', ac((o) => (at(o, 'spec.compression').clusters = 0)), 'spec.compression.clusters'],
  ['clusters: auto without a target error', ac((o) => (at(o, 'spec.compression').clusters = 'auto')), 'spec.compression.targetErrorPercent'],
  ['an unknown compression method', ac((o) => (at(o, 'spec.compression').method = 'zip')), 'spec.compression.method'],
  ['an empty adapter list', ac((o) => (o.spec.adapters = [])), 'spec.adapters'],
  ['minReplicas above maxReplicas', ls((o) => Object.assign(at(o, 'spec.autoscaling'), { minReplicas: 5, maxReplicas: 2 })), 'spec.autoscaling.minReplicas'],
  ['replicas outside the autoscaling bounds', ls((o) => (o.spec.replicas = 10)), 'spec.replicas'],
  ['a service port above 65535', ls((o) => (at(o, 'spec.service').port = 70000)), 'spec.service.port'],
  ['an unknown routing policy', ls((o) => (at(o, 'spec.routing').policy = 'random')), 'spec.routing.policy'],
  ['a duplicate AdapterCluster reference', ls((o) => (o.spec.adapterClusters = ['brown-genres', 'brown-genres'])), 'spec.adapterClusters'],
  ['fewer batch tokens than batch sequences', ls((o) => (at(o, 'spec.engine').maxBatchTokens = 32)), 'spec.engine.maxBatchTokens'],
  ['no base model', ls((o) => delete o.spec.baseModel), 'spec.baseModel'],
];

describe('the CRDs on the real apiserver', function () {
  let ns: string;

  before(async () => {
    const applied = await session().kubectl(['apply', '--server-side', '-f', join(repoRoot, 'crds')]);
    assert.equal(applied.code, 0, applied.stderr);
    for (const plural of ['sparsefinetunes', 'adapterclusters', 'loraservers']) {
      const waited = await session().kubectl(['wait', '--for=condition=Established', `crd/${plural}.tessera.dev`, '--timeout=60s']);
      assert.equal(waited.code, 0, waited.stderr);
    }
    ns = await freshNamespace('crds');
  });
  after(async () => {
    await deleteNamespace(ns);
  });

  it('accepts every sample', async () => {
    const result = await session().kubectl(['apply', '-n', ns, '-f', join(repoRoot, 'crds', 'samples')]);
    assert.equal(result.code, 0, result.stderr);
    const listed = await session().kubectl(['get', 'tessera', '-n', ns, '-o', 'name']);
    assert.equal(listed.stdout.trim().split('\n').length, 5, listed.stdout);
  });

  it('fills defaults the sample left out', async () => {
    const got = await session().kubectl(['get', 'sft', 'news-sparsepeft', '-n', ns, '-o', 'json']);
    const obj = JSON.parse(got.stdout) as { spec: { training: { learningRate: string; scheduler: string }; resources: { gpus: number }; sparsity: { pattern: string; schedule: { kind: string } }; output: { mergedModel: boolean } } };
    assert.equal(obj.spec.training.learningRate, '2e-4');
    assert.equal(obj.spec.training.scheduler, 'cosine');
    assert.equal(obj.spec.resources.gpus, 1);
    assert.equal(obj.spec.sparsity.pattern, 'unstructured');
    assert.equal(obj.spec.sparsity.schedule.kind, 'oneshot');
    assert.equal(obj.spec.output.mergedModel, true);
  });

  it('shows printer columns in kubectl get', async () => {
    const got = await session().kubectl(['get', 'sft', '-n', ns]);
    assert.match(got.stdout.split('\n')[0] ?? '', /NAME\s+METHOD\s+SPARSITY\s+STAGE\s+PROGRESS\s+READY\s+AGE/);
    assert.match(got.stdout, /llama-tiny-losa\s+losa\s+50/);
  });

  it('changes status only through the status subresource', async () => {
    const api = session().kubeConfig.makeApiClient(CustomObjectsApi);
    const target = { group: 'tessera.dev', version: 'v1alpha1', namespace: ns, plural: 'loraservers', name: 'tiny-multi-lora' };
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    await api.patchNamespacedCustomObject({ ...target, body: { status: { stage: 'Ignored' } } }, merge);
    const afterMain = (await api.getNamespacedCustomObject(target)) as { status?: { stage?: string } };
    assert.equal(afterMain.status?.stage, undefined, 'a status change through the main resource is dropped');
    await api.patchNamespacedCustomObjectStatus({ ...target, body: { status: { stage: 'Serving', readyReplicas: 2 } } }, merge);
    const afterStatus = (await api.getNamespacedCustomObject(target)) as { status?: { stage?: string; readyReplicas?: number } };
    assert.equal(afterStatus.status?.stage, 'Serving');
    assert.equal(afterStatus.status?.readyReplicas, 2);
  });

  it(`rejects at least 25 invalid specs (${INVALID.length} here)`, () => {
    assert.ok(INVALID.length >= 25);
  });

  for (const [what, obj, field] of INVALID) {
    it(`rejects ${what}, naming ${field}`, async () => {
      const named = { ...obj, metadata: { ...(obj.metadata as Obj), name: 'invalid', namespace: ns } };
      const result = await session().kubectl(['apply', '--dry-run=server', '-f', '-'], { input: JSON.stringify(named) });
      assert.notEqual(result.code, 0, `accepted ${what}`);
      assert.ok(result.stderr.includes(field), `the error should name ${field}: ${result.stderr}`);
    });
  }
});
