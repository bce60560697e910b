// tessera.dev/v1alpha1: the three kinds' schemas and types, their CRDs, and condition types and reasons.
import type { V1ObjectMeta } from '@kubernetes/client-node';
import type { AdapterClusterSpec, AdapterClusterStatus } from './adaptercluster.js';
import type { LoRAServerSpec, LoRAServerStatus } from './loraserver.js';
import type { SparseFineTuneSpec, SparseFineTuneStatus } from './sparsefinetune.js';

export * from './adaptercluster.js';
export * from './conditions.js';
export * from './crd.js';
export * from './loraserver.js';
export * from './sparsefinetune.js';
export { type CelRule } from './common.js';

/**
 * An object as read from the apiserver: defaults are filled in by then, which is why the spec
 * types (Static<> of the schemas) have defaulted fields required.
 */
interface Resource<K extends string, S, T> {
  apiVersion: 'tessera.dev/v1alpha1';
  kind: K;
  metadata: V1ObjectMeta;
  spec: S;
  status?: T;
}

export type SparseFineTune = Resource<'SparseFineTune', SparseFineTuneSpec, SparseFineTuneStatus>;
export type AdapterCluster = Resource<'AdapterCluster', AdapterClusterSpec, AdapterClusterStatus>;
export type LoRAServer = Resource<'LoRAServer', LoRAServerSpec, LoRAServerStatus>;
