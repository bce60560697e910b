// Which AdapterClusters a SparseFineTune change requeues: only those that read it.
import assert from 'node:assert/strict';
import type { AdapterCluster, SparseFineTune } from '../../../operator/api/v1alpha1/index.js';
import { adapterClustersUsing } from '../../../operator/manager/dependents.js';

function sft(name: string, enrollInto?: string): SparseFineTune {
  return {
    apiVersion: 'tessera.dev/v1alpha1', kind: 'SparseFineTune', metadata: { name, namespace: 'ns' },
    spec: { output: { uri: `pvc://out/${name}`, ...(enrollInto ? { enrollInto: { adapterCluster: enrollInto, adapterName: name } } : {}) } },
  } as unknown as SparseFineTune;
}

function ac(name: string, adapters: { name: string; uri?: string; sparseFineTune?: string }[]): AdapterCluster {
  return { apiVersion: 'tessera.dev/v1alpha1', kind: 'AdapterCluster', metadata: { name, namespace: 'ns' }, spec: { adapters } } as unknown as AdapterCluster;
}

const clusters = [
  ac('pool', [{ name: 'a', uri: 'pvc://a' }]),
  ac('by-name', [{ name: 'trained', sparseFineTune: 'trainer' }]),
  ac('unrelated', [{ name: 'b', uri: 'pvc://b' }, { name: 'c', sparseFineTune: 'someone-else' }]),
];
const names = (xs: AdapterCluster[]): string[] => xs.map((x) => x.metadata.name ?? '');

describe('adapterClustersUsing', () => {
  it('names the cluster a SparseFineTune enrolls into', () => {
    assert.deepEqual(names(adapterClustersUsing(sft('news', 'pool'), clusters)), ['pool']);
  });

  it('names the clusters that list the SparseFineTune in spec.adapters', () => {
    assert.deepEqual(names(adapterClustersUsing(sft('trainer'), clusters)), ['by-name']);
  });

  it('names both when a run enrolls into one cluster and is listed by another', () => {
    assert.deepEqual(names(adapterClustersUsing(sft('trainer', 'pool'), clusters)), ['pool', 'by-name']);
  });

  it('names no cluster for a SparseFineTune that feeds none', () => {
    assert.deepEqual(names(adapterClustersUsing(sft('loner'), clusters)), []);
  });
});
