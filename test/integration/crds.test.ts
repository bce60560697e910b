// The real apiserver installs the CRDs, accepts every sample, fills defaults, and rejects bad specs
// at admission with an error that names the offending field.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ApiException, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { repoRoot } from '../cluster/paths.js';
import { session } from '../cluster/session.js';
import { deleteNamespace, freshNamespace } from './helpers.js';

type J = { [key: string]: unknown };
type Kind = 'SparseFineTune' | 'AdapterCluster' | 'LoRAServer';
interface Fixture { kind: Kind; file: string }

const samplesDir = join(repoRoot, 'crds', 'samples');
const sampleFiles = readdirSync(samplesDir).filter((f) => f.endsWith('.yaml')).sort();
const load = (file: string): J & { kind: Kind; metadata: J; spec: J } => parse(readFileSync(join(samplesDir, file), 'utf8')) as J & { kind: Kind; metadata: J; spec: J };

// Fixture builders in the style of cert-manager's gen.X(...): a valid sample, then one mutation.
const gen = {
  losa: { kind: 'SparseFineTune', file: 'sparsefinetune-losa-2of4.yaml' },
  loram: { kind: 'SparseFineTune', file: 'sparsefinetune-loram.yaml' },
  shears: { kind: 'SparseFineTune', file: 'sparsefinetune-shears-elastic.yaml' },
  enroll: { kind: 'SparseFineTune', file: 'sparsefinetune-sparsepeft-enroll.yaml' },
  cluster: { kind: 'AdapterCluster', file: 'adaptercluster-brown.yaml' },
  server: { kind: 'LoRAServer', file: 'loraserver.yaml' },
} satisfies Record<string, Fixture>;

function build(fixture: Fixture, mutate: (spec: J) => void): J {
  const obj = load(fixture.file);
  assert.equal(obj.kind, fixture.kind);
  mutate(obj.spec);
  return obj;
}

/** The object under a dotted path of the spec (created when missing, so mutations read simply). */
const at = (spec: J, path: string): J => path.split('.').reduce<J>((cur, key) => (cur[key] ??= {}) as J, spec);
const item = (spec: J, list: string, index: number): J => (spec[list] as J[])[index]!;
const HTTPS = 'https://files.example.com/data.jsonl';

// (what is wrong, fixture, mutation, field path the error must name, optional words of the message)
type Case = [string, Fixture, (spec: J) => void, string, string?];

const INVALID: Case[] = [
  ['a sparsity target above 95 %', gen.losa, (s) => Object.assign(at(s, 'sparsity'), { pattern: 'unstructured', targetPercent: 96 }), 'spec.sparsity.targetPercent'],
  ['a negative sparsity target', gen.losa, (s) => (at(s, 'sparsity').targetPercent = -1), 'spec.sparsity.targetPercent'],
  ['an N:M pattern with N > M', gen.losa, (s) => (at(s, 'sparsity').pattern = '4:2'), 'spec.sparsity.pattern', 'N < M'],
  ['an N:M pattern with N = M', gen.losa, (s) => (at(s, 'sparsity').pattern = '4:4'), 'spec.sparsity.pattern'],
  ['a 2:4 pattern with a 60 % target', gen.losa, (s) => (at(s, 'sparsity').targetPercent = 60), 'spec.sparsity.targetPercent', 'pattern 2:4 fixes the sparsity'],
  ['an N:M pattern with layerwise allocation', gen.losa, (s) => (at(s, 'sparsity').layerwise = 'rmi'), 'spec.sparsity.layerwise'],
  ['an unknown sparsity pattern', gen.losa, (s) => (at(s, 'sparsity').pattern = 'checkerboard'), 'spec.sparsity.pattern'],
  ['an unknown pruner', gen.losa, (s) => (at(s, 'sparsity').pruner = 'random'), 'spec.sparsity.pruner'],
  ['rank 0', gen.losa, (s) => (at(s, 'adapter').rank = 0), 'spec.adapter.rank'],
  ['a rank above maxRank', gen.losa, (s) => (at(s, 'adapter').rank = 32), 'spec.adapter.rank'],
  ['rank allocation by reconstruction error without maxRank', gen.losa, (s) => delete at(s, 'adapter').maxRank, 'spec.adapter.maxRank'],
  ['an unknown method', gen.losa, (s) => (s.method = 'magic'), 'spec.method'],
  ['a pruning method without sparsity', gen.losa, (s) => delete s.sparsity, 'spec.sparsity'],
  ['sparsity with plain lora', gen.losa, (s) => (s.method = 'lora'), 'spec.sparsity'],
  ['sparsity with loram, which prunes by spec.loram', gen.loram, (s) => (s.sparsity = { targetPercent: 50 }), 'spec.sparsity'],
  ['loram settings with method losa', gen.losa, (s) => (s.loram = { pruning: 'structured' }), 'spec.loram'],
  ['spallm settings with method losa', gen.losa, (s) => (s.spallm = { bits: 4 }), 'spec.spallm'],
  ['elastic settings with method losa', gen.losa, (s) => (s.elastic = { rankChoices: [8, 4] }), 'spec.elastic'],
  ['quantization settings with method losa', gen.losa, (s) => (s.quantization = { bits: 4 }), 'spec.quantization'],
  ['semi-structured loram pruning of 60 %', gen.loram, (s) => Object.assign(at(s, 'loram'), { pruning: 'semi', prunePercent: 60 }), 'spec.loram.prunePercent'],
  ['an elastic rank above the super-adapter rank', gen.shears, (s) => (at(s, 'elastic').rankChoices = [64, 32]), 'spec.elastic.rankChoices'],
  ['a base model on an unsupported scheme', gen.losa, (s) => (at(s, 'baseModel').uri = 's3://bucket/llama'), 'spec.baseModel.uri'],
  ['an https base model without a digest', gen.losa, (s) => (at(s, 'baseModel').uri = 'https://models.example/llama.tar'), 'spec.baseModel.sha256'],
  ['a digest that is not 64 hex characters', gen.losa, (s) => (at(s, 'baseModel').sha256 = 'abc123'), 'spec.baseModel.sha256'],
  ['an https evaluation set without a digest', gen.losa, (s) => (at(s, 'dataset').evalUri = HTTPS), 'spec.dataset.evalSha256'],
  ['https calibration data without a digest', gen.losa, (s) => (at(s, 'calibration').uri = HTTPS), 'spec.calibration.sha256'],
  ['a learning rate that is not a number', gen.losa, (s) => (at(s, 'training').learningRate = 'fast'), 'spec.training.learningRate'],
  ['a learning rate of 2', gen.losa, (s) => (at(s, 'training').learningRate = '2'), 'spec.training.learningRate', 'not 2'],
  ['a learning rate of 0', gen.losa, (s) => (at(s, 'training').learningRate = '0'), 'spec.training.learningRate'],
  ['a weight decay of 1.5', gen.losa, (s) => (at(s, 'training').weightDecay = '1.5'), 'spec.training.weightDecay'],
  ['a warm-up of 80 % of the steps', gen.losa, (s) => (at(s, 'training').warmupPercent = 80), 'spec.training.warmupPercent'],
  ['an output with neither model nor adapter', gen.losa, (s) => Object.assign(at(s, 'output'), { mergedModel: false, adapter: false }), 'spec.output.adapter'],
  ['an enrollment without the adapter written', gen.enroll, (s) => (at(s, 'output').adapter = false), 'spec.output.enrollInto'],
  ['an output on http', gen.losa, (s) => (at(s, 'output').uri = 'https://outputs.example/x'), 'spec.output.uri'],
  ['duplicate target modules', gen.losa, (s) => (at(s, 'adapter').targetModules = ['q_proj', 'q_proj']), 'spec.adapter.targetModules'],
  ['an unknown target module', gen.losa, (s) => (at(s, 'adapter').targetModules = ['lm_head']), 'spec.adapter.targetModules[0]'],
  ['an enrollment name that is not DNS-1123', gen.enroll, (s) => (at(s, 'output.enrollInto').adapterName = 'Bad_Name'), 'spec.output.enrollInto.adapterName'],
  ['17 GPUs', gen.losa, (s) => (at(s, 'resources').gpus = 17), 'spec.resources.gpus'],
  ['a memory request that is not a quantity', gen.losa, (s) => (at(s, 'resources').memory = 'lots'), 'spec.resources.memory'],
  ['a toleration with an unknown operator', gen.losa, (s) => (at(s, 'resources').tolerations = [{ key: 'gpu', operator: 'Maybe' }]), 'spec.resources.tolerations[0].operator'],
  ['duplicate adapter names', gen.cluster, (s) => (item(s, 'adapters', 1).name = item(s, 'adapters', 0).name), 'spec.adapters[1]'],
  ['an adapter name with capitals', gen.cluster, (s) => (item(s, 'adapters', 0).name = 'Press'), 'spec.adapters[0].name'],
  ['an adapter with both uri and sparseFineTune', gen.cluster, (s) => (item(s, 'adapters', 0).sparseFineTune = 'news'), 'spec.adapters[0].uri'],
  ['an adapter with neither uri nor sparseFineTune', gen.cluster, (s) => { delete item(s, 'adapters', 0).uri; delete item(s, 'adapters', 0).sha256; }, 'spec.adapters[0].uri'],
  ['an https adapter without a digest', gen.cluster, (s) => delete item(s, 'adapters', 3).sha256, 'spec.adapters[3].sha256'],
  ['an empty adapter list', gen.cluster, (s) => (s.adapters = []), 'spec.adapters'],
  ['clusters that are neither a number nor auto', gen.cluster, (s) => (at(s, 'compression').clusters = 'many'), 'spec.compression.clusters'],
  ['zero clusters', gen.cluster, (s) => (at(s, 'compression').clusters = 0), 'spec.compression.clusters'],
  ['clusters: auto without a target error', gen.cluster, (s) => { at(s, 'compression').clusters = 'auto'; delete at(s, 'compression').targetErrorPercent; }, 'spec.compression.targetErrorPercent'],
  ['several clusters with per-adapter SVD', gen.cluster, (s) => (at(s, 'compression').method = 'svd'), 'spec.compression.clusters'],
  ['an unknown compression method', gen.cluster, (s) => (at(s, 'compression').method = 'zip'), 'spec.compression.method'],
  ['an https quality-gate set without a digest', gen.cluster, (s) => (at(s, 'qualityGate').evalUri = HTTPS), 'spec.qualityGate.evalSha256'],
  ['minReplicas above maxReplicas', gen.server, (s) => Object.assign(at(s, 'autoscaling'), { minReplicas: 5, maxReplicas: 2 }), 'spec.autoscaling.minReplicas'],
  ['replicas outside the autoscaling bounds', gen.server, (s) => (s.replicas = 10), 'spec.replicas'],
  ['a service port above 65535', gen.server, (s) => (at(s, 'service').port = 70000), 'spec.service.port'],
  ['an unknown routing policy', gen.server, (s) => (at(s, 'routing').policy = 'random'), 'spec.routing.policy'],
  ['a duplicate AdapterCluster reference', gen.server, (s) => (s.adapterClusters = ['brown-genres', 'brown-genres']), 'spec.adapterClusters'],
  ['fewer batch tokens than batch sequences', gen.server, (s) => (at(s, 'engine').maxBatchTokens = 32), 'spec.engine.maxBatchTokens'],
  ['a KV cache smaller than one batch', gen.server, (s) => (at(s, 'engine').kvCacheTokens = 2048), 'spec.engine.kvCacheTokens'],
  ['no base model', gen.server, (s) => delete s.baseModel, 'spec.baseModel'],
];

describe('the CRDs on the real apiserver', function () {
  let ns: string;
  const api = () => session().kubeConfig.makeApiClient(CustomObjectsApi);

  before(async () => {
    const applied = await session().kubectl(['apply', '--server-side', '--force-conflicts', '-f', join(repoRoot, 'crds')]);
    assert.equal(applied.code, 0, applied.stderr);
    const waited = await session().kubectl(['wait', '--for=condition=Established', '--timeout=60s',
      ...['sparsefinetunes', 'adapterclusters', 'loraservers'].map((plural) => `crd/${plural}.tessera.dev`)]);
    assert.equal(waited.code, 0, waited.stderr);
    ns = await freshNamespace('crds');
  });
  after(async () => {
    if (ns) await deleteNamespace(ns);
  });

  it('installs the CRDs as structural schemas, without a NonStructuralSchema condition', async () => {
    const got = await session().kubectl(['get', 'crd', '-o', 'json', 'sparsefinetunes.tessera.dev', 'adapterclusters.tessera.dev', 'loraservers.tessera.dev']);
    const crds = JSON.parse(got.stdout) as { items: { status: { conditions: { type: string; status: string }[] } }[] };
    assert.equal(crds.items.length, 3);
    for (const crd of crds.items) assert.deepEqual(crd.status.conditions.filter((c) => c.type === 'NonStructuralSchema'), []);
  });

  it('accepts every sample', async () => {
    const result = await session().kubectl(['apply', '-n', ns, '-f', samplesDir]);
    assert.equal(result.code, 0, result.stderr);
    const listed = await session().kubectl(['get', 'tessera', '-n', ns, '-o', 'name']);
    assert.equal(listed.stdout.trim().split('\n').length, sampleFiles.length, listed.stdout);
  });

  it('fills the defaults a sample left out, nested ones included', async () => {
    const read = async (plural: string, name: string) => (await api().getNamespacedCustomObject({ group: 'tessera.dev', version: 'v1alpha1', namespace: ns, plural, name })) as { spec: J };
    const sparsepeft = (await read('sparsefinetunes', 'news-sparsepeft')).spec;
    assert.deepEqual(sparsepeft.training, { steps: 200, batchSize: 8, gradientAccumulation: 1, sequenceLength: 512, learningRate: '2e-4', warmupPercent: 3, scheduler: 'cosine', maxGradNorm: '0.3', weightDecay: '0', seed: 42, checkpointEvery: 0 });
    assert.deepEqual(at(sparsepeft, 'sparsity'), { targetPercent: 60, pruner: 'wanda', pattern: 'unstructured', layerwise: 'uniform', schedule: { kind: 'oneshot', steps: 1 } });
    assert.deepEqual(sparsepeft.resources, { gpus: 1 });
    assert.equal(at(sparsepeft, 'output').mergedModel, true);
    assert.equal(at((await read('sparsefinetunes', 'llama-tiny-loram')).spec, 'loram').prunePercent, 50);
    const server = (await read('loraservers', 'tiny-multi-lora')).spec;
    assert.equal(at(server, 'service').type, 'ClusterIP');
  });

  it('shows the printer columns in kubectl get', async () => {
    const header = async (kind: string) => ((await session().kubectl(['get', kind, '-n', ns])).stdout.split('\n')[0] ?? '').trim().split(/\s+/);
    assert.deepEqual(await header('sft'), ['NAME', 'METHOD', 'SPARSITY', 'STAGE', 'PROGRESS', 'READY', 'AGE']);
    assert.deepEqual(await header('ac'), ['NAME', 'METHOD', 'ADAPTERS', 'SAVED', 'REVISION', 'STAGE', 'READY', 'AGE']);
    assert.deepEqual(await header('ls'), ['NAME', 'REPLICAS', 'READY-REPLICAS', 'ADAPTERS', 'REVISION', 'STAGE', 'READY', 'AGE']);
    assert.match((await session().kubectl(['get', 'sft', '-n', ns])).stdout, /llama-tiny-losa\s+losa\s+50/);
  });

  it('lists SparseFineTunes by field selector on method and on the AdapterCluster they enroll into', async () => {
    const names = async (selector: string) => (await session().kubectl(['get', 'sft', '-n', ns, '-o', 'name', '--field-selector', selector])).stdout.trim();
    assert.equal(await names('spec.method=loram'), 'sparsefinetune.tessera.dev/llama-tiny-loram');
    assert.equal(await names('spec.output.enrollInto.adapterCluster=brown-genres'), 'sparsefinetune.tessera.dev/news-sparsepeft');
  });

  it('changes status only through the status subresource', async () => {
    const target = { group: 'tessera.dev', version: 'v1alpha1', namespace: ns, plural: 'loraservers', name: 'tiny-multi-lora' };
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    await api().patchNamespacedCustomObject({ ...target, body: { status: { stage: 'Ignored' } } }, merge);
    const afterMain = (await api().getNamespacedCustomObject(target)) as { status?: { stage?: string } };
    assert.equal(afterMain.status?.stage, undefined, 'a status change through the main resource is dropped');
    await api().patchNamespacedCustomObjectStatus({ ...target, body: { status: { stage: 'Serving', readyReplicas: 2 } } }, merge);
    const afterStatus = (await api().getNamespacedCustomObject(target)) as { status?: { stage?: string; readyReplicas?: number } };
    assert.equal(afterStatus.status?.stage, 'Serving');
    assert.equal(afterStatus.status?.readyReplicas, 2);
  });

  it('rejects a status condition whose reason is not one CamelCase word', async () => {
    const target = { group: 'tessera.dev', version: 'v1alpha1', namespace: ns, plural: 'sparsefinetunes', name: 'llama-tiny-losa' };
    const condition = { type: 'Ready', status: 'False', reason: 'not ready yet', message: '', lastTransitionTime: new Date().toISOString() };
    const patched = api().patchNamespacedCustomObjectStatus({ ...target, body: { status: { conditions: [condition] } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    await assert.rejects(patched, (err: unknown) => err instanceof ApiException && err.code === 422 && String(err.body).includes('status.conditions[0].reason'));
  });

  it(`rejects at least 25 kinds of invalid spec (${INVALID.length} here)`, () => {
    assert.ok(INVALID.length >= 25);
  });

  for (const [what, fixture, mutate, field, words] of INVALID) {
    const article = /^[AEIOU]/.test(fixture.kind) ? 'an' : 'a';
    it(`rejects ${article} ${fixture.kind} with ${what}, naming ${field}`, async () => {
      const obj = build(fixture, mutate);
      const named = { ...obj, metadata: { name: 'invalid', namespace: ns } };
      const result = await session().kubectl(['apply', '--dry-run=server', '-f', '-'], { input: JSON.stringify(named) });
      assert.notEqual(result.code, 0, `accepted ${what}`);
      assert.ok(result.stderr.includes(field), `the error should name ${field}: ${result.stderr}`);
      if (words) assert.ok(result.stderr.includes(words), `the error should say "${words}": ${result.stderr}`);
    });
  }
});
