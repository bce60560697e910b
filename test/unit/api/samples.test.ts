// The samples in crds/samples are checked against the very TypeBox schemas the CRDs come from, and
// the check is a type guard: a sample that passes IS a value of the TypeScript type, so YAML, CRD and
// types cannot drift apart. (CEL rules need the apiserver: test/integration/crds.test.ts.)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parseAllDocuments } from 'yaml';
import {
  AdapterClusterSpec, AdapterClusterStatus, LoRAServerSpec, LoRAServerStatus, SPARSE_METHODS, SparseFineTuneSpec, SparseFineTuneStatus,
  type AdapterCluster, type Condition, type LoRAServer, type SparseFineTune,
} from '../../../operator/api/v1alpha1/index.js';
import { repoRoot } from '../../cluster/paths.js';

type Obj = { apiVersion: string; kind: string; metadata: { name: string }; spec: unknown };

const dir = join(repoRoot, 'crds', 'samples');
const samples = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort().flatMap((file) =>
  parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((doc) => ({ file, obj: doc.toJS() as Obj })));

const SPECS: Record<string, TSchema> = { SparseFineTune: SparseFineTuneSpec, AdapterCluster: AdapterClusterSpec, LoRAServer: LoRAServerSpec };

/** What the apiserver does before anyone reads the object: fill defaults. */
const defaulted = (schema: TSchema, spec: unknown): unknown => Value.Default(schema, structuredClone(spec));

describe('the samples', () => {
  it('cover every kind, and every method but plain lora', () => {
    assert.deepEqual([...new Set(samples.map((s) => s.obj.kind))].sort(), ['AdapterCluster', 'LoRAServer', 'SparseFineTune']);
    const methods = new Set(samples.filter((s) => s.obj.kind === 'SparseFineTune').map((s) => (s.obj.spec as { method: string }).method));
    assert.deepEqual(SPARSE_METHODS.filter((m) => !methods.has(m)), ['lora']);
  });

  for (const { file, obj } of samples) {
    describe(`${file} (${obj.kind} ${obj.metadata.name})`, () => {
      const schema = SPECS[obj.kind];

      it('names tessera.dev/v1alpha1 and a known kind', () => {
        assert.equal(obj.apiVersion, 'tessera.dev/v1alpha1');
        assert.ok(schema, `unknown kind ${obj.kind}`);
      });

      it('has no field the schema does not declare (the apiserver would refuse or prune it)', () => {
        assert.deepEqual(Value.Clean(schema!, structuredClone(obj.spec)), obj.spec);
      });

      it('is, once defaulted, a value of the generated TypeScript type', () => {
        // The three branches are the compile-time half of the test: each guard narrows to Static<schema>.
        if (obj.kind === 'SparseFineTune') {
          const spec = defaulted(SparseFineTuneSpec, obj.spec);
          assert.ok(Value.Check(SparseFineTuneSpec, spec), JSON.stringify([...Value.Errors(SparseFineTuneSpec, spec)].map((e) => `${e.path}: ${e.message}`)));
          const typed: SparseFineTune = { apiVersion: 'tessera.dev/v1alpha1', kind: 'SparseFineTune', metadata: obj.metadata, spec };
          assert.ok(typed.spec.training.learningRate.length > 0);
        } else if (obj.kind === 'AdapterCluster') {
          const spec = defaulted(AdapterClusterSpec, obj.spec);
          assert.ok(Value.Check(AdapterClusterSpec, spec), JSON.stringify([...Value.Errors(AdapterClusterSpec, spec)].map((e) => `${e.path}: ${e.message}`)));
          const typed: AdapterCluster = { apiVersion: 'tessera.dev/v1alpha1', kind: 'AdapterCluster', metadata: obj.metadata, spec };
          assert.ok(typed.spec.adapters.length > 0);
        } else {
          const spec = defaulted(LoRAServerSpec, obj.spec);
          assert.ok(Value.Check(LoRAServerSpec, spec), JSON.stringify([...Value.Errors(LoRAServerSpec, spec)].map((e) => `${e.path}: ${e.message}`)));
          const typed: LoRAServer = { apiVersion: 'tessera.dev/v1alpha1', kind: 'LoRAServer', metadata: obj.metadata, spec };
          assert.ok(typed.spec.engine.maxQueue > 0);
        }
      });
    });
  }
});

describe('the TypeBox schemas behind the CRDs', () => {
  const losa = samples.find((s) => s.file === 'sparsefinetune-losa-2of4.yaml')!.obj.spec as Record<string, Record<string, unknown>>;

  it('fill the same nested defaults the CRD declares (an empty training block becomes a full one)', () => {
    const spec = defaulted(SparseFineTuneSpec, { ...losa, training: undefined, resources: undefined }) as SparseFineTuneSpec;
    assert.equal(spec.training.learningRate, '2e-4');
    assert.equal(spec.training.scheduler, 'cosine');
    assert.equal(spec.resources.gpus, 1);
  });

  it('refuse a value outside a string enum, a broken pattern and an out-of-range integer', () => {
    const bad = (mutate: (s: Record<string, Record<string, unknown>>) => void): boolean => {
      const spec = structuredClone(losa);
      mutate(spec);
      return Value.Check(SparseFineTuneSpec, defaulted(SparseFineTuneSpec, spec));
    };
    assert.equal(bad((s) => (s.sparsity!.pruner = 'random')), false);
    assert.equal(bad((s) => (s.baseModel!.uri = 's3://bucket/model')), false);
    assert.equal(bad((s) => (s.sparsity!.targetPercent = 99)), false);
    assert.equal(bad(() => undefined), true);
  });

  it('accept a status as the status hub writes it', () => {
    const condition: Condition = { type: 'Failed', status: 'True', reason: 'DatasetUnreadable', message: 'line 3 is not JSON', lastTransitionTime: '2026-01-02T03:04:05.000Z', observedGeneration: 2 };
    const sft: SparseFineTuneStatus = {
      observedGeneration: 2, stage: 'Training', conditions: [condition],
      progress: { step: 10, totalSteps: 100, percent: 10, etaSeconds: 90 },
      metrics: { loss: 2.5, layers: [{ index: 0, sparsityPercent: 50, rank: 8, reconstructionError: 0.01 }] },
      outputs: { adapterUri: 'pvc://out/a', digests: [{ name: 'adapter_model.safetensors', uri: 'pvc://out/a/adapter_model.safetensors', sha256: 'a'.repeat(64), sizeBytes: 1024 }] },
    };
    const ac: AdapterClusterStatus = { adapterCount: 1, revision: 'r1', adapters: [{ name: 'a', cluster: 0, servedAs: 'compressed' }], clusters: [{ id: 0, size: 1, rank: 16 }] };
    const ls: LoRAServerStatus = { readyReplicas: 1, servedAdapters: 3, bundleRevision: { desired: 'r1', active: [{ pod: 'p', revision: 'r1' }] }, serving: { queueDepth: 0, p99LatencyMs: 12 } };
    assert.ok(Value.Check(SparseFineTuneStatus, sft));
    assert.ok(Value.Check(AdapterClusterStatus, ac));
    assert.ok(Value.Check(LoRAServerStatus, ls));
    assert.equal(Value.Check(SparseFineTuneStatus, { conditions: [{ ...condition, reason: 'not one word' }] }), false);
  });
});
