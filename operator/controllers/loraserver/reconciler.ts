// LoRAServer reconciler: Deployment + Service for the replicas, the desired bundle revision from
// the referenced AdapterClusters, and status from the Deployment. Revisions reach running
// replicas as gRPC directives (the hub), never through the pod template.
import type { LoRAServer } from '../../api/v1alpha1/index.js';
import { ConditionType, Reason } from '../../api/v1alpha1/index.js';
import { statusUnchanged, type ReconcileDeps, type Result } from '../common/deps.js';
import { contentHash } from '../common/hash.js';
import { withCondition } from '../common/run-status.js';
import { desiredLoRAServer, type ServedBundle } from './desired.js';

/** Current bundles of the referenced AdapterClusters; those without one yet are listed as missing. */
export function servedBundles(ls: LoRAServer, deps: Pick<ReconcileDeps, 'adapterCluster'>): { bundles: ServedBundle[]; missing: string[] } {
  const bundles: ServedBundle[] = [];
  const missing: string[] = [];
  for (const name of [...ls.spec.adapterClusters].sort()) {
    const ac = deps.adapterCluster(ls.metadata.namespace ?? '', name);
    if (ac?.status?.revision && ac.status.bundleUri) bundles.push({ adapterCluster: name, revision: ac.status.revision, uri: ac.status.bundleUri });
    else missing.push(name);
  }
  return { bundles, missing };
}

export async function reconcileLoRAServer(ls: LoRAServer, deps: ReconcileDeps): Promise<Result> {
  if (ls.metadata.deletionTimestamp) return {};
  const namespace = ls.metadata.namespace ?? '';
  const generation = ls.metadata.generation ?? 0;
  const now = deps.now();
  const { bundles, missing } = servedBundles(ls, deps);
  const children = desiredLoRAServer(ls, bundles, deps.settings);
  await deps.apply(children.configMap);
  await deps.apply(children.deployment);
  await deps.apply(children.service);

  const deploymentName = children.deployment.metadata?.name ?? '';
  const observed = deps.deployment(namespace, deploymentName);
  const desiredReplicas = ls.spec.replicas;
  const ready = observed?.status?.readyReplicas ?? 0;
  const updated = observed?.status?.updatedReplicas ?? 0;
  const desiredRevision = bundles.length > 0 ? contentHash(bundles.map((b) => [b.adapterCluster, b.revision])) : '';
  const allReady = ready >= desiredReplicas && updated >= desiredReplicas && (observed?.status?.observedGeneration ?? 0) >= (observed?.metadata?.generation ?? 0);

  let conditions = ls.status?.conditions ?? [];
  const set = (type: string, status: 'True' | 'False', reason: string, message: string) =>
    (conditions = withCondition(conditions, { type, status, reason, message, observedGeneration: generation }, now));
  set(ConditionType.Ready, allReady && desiredReplicas > 0 ? 'True' : 'False', allReady ? Reason.ReplicasReady : Reason.ReplicasUnavailable,
    `${ready} of ${desiredReplicas} replicas ready.`);
  set(ConditionType.Progressing, allReady ? 'False' : 'True', allReady ? Reason.ReplicasReady : Reason.RolloutInProgress,
    allReady ? 'All replicas run the current template.' : `${updated} of ${desiredReplicas} replicas updated.`);
  set(ConditionType.Degraded, missing.length > 0 ? 'True' : 'False', missing.length > 0 ? Reason.InputNotReady : Reason.ReplicasReady,
    missing.length > 0 ? `AdapterCluster ${missing.join(', ')} has no bundle yet; serving the others.` : '');

  const port = ls.spec.service.port;
  const status: Record<string, unknown> = {
    observedGeneration: generation,
    conditions,
    stage: allReady ? 'Serving' : observed ? 'RollingOut' : 'Pending',
    replicas: observed?.status?.replicas ?? 0,
    readyReplicas: ready,
    endpoint: `http://${ls.metadata.name}.${namespace}.svc:${port}/v1`,
    deploymentName,
    bundleRevision: { ...ls.status?.bundleRevision, desired: desiredRevision },
  };
  if (!statusUnchanged(ls.status as Record<string, unknown> | undefined, status)) await deps.patchStatus(ls, status);
  return {};
}
