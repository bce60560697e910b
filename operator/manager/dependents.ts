// Which objects must be reconciled again when one of their inputs changes. Kept pure so the
// mapping is tested without a cluster: enqueueing too few loses a change, too many costs a
// reconcile per object (with every AdapterCluster per SparseFineTune event, 300 worker reports
// caused 14,320 AdapterCluster reconciles in bench/operator.ts).
import type { AdapterCluster, SparseFineTune } from '../api/v1alpha1/index.js';

/**
 * The AdapterClusters whose inputs include this SparseFineTune: those it enrolls into and those
 * listing it by name in spec.adapters, as resolveAdapters reads them. On an update, call it with
 * the old object too, so a cluster the run no longer enrolls into drops its adapter.
 */
export function adapterClustersUsing(sft: SparseFineTune, candidates: readonly AdapterCluster[]): AdapterCluster[] {
  const enrollsInto = sft.spec.output.enrollInto?.adapterCluster;
  const name = sft.metadata.name;
  return candidates.filter((ac) => (enrollsInto !== undefined && ac.metadata.name === enrollsInto) || ac.spec.adapters.some((a) => a.sparseFineTune === name));
}
