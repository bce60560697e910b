// LoRAServer reconciler: Deployment + Service for the replicas, the desired bundle set from the
// referenced AdapterClusters, and status from the Deployment and the replicas' reports. Bundle
// sets reach running replicas as gRPC directives (rollout.ts), never through the pod template;
// a replica that starts later loads the last set every replica activated (status.bundles).
import type { LoRAServer } from '../../api/v1alpha1/index.js';
import { ConditionType, Reason } from '../../api/v1alpha1/index.js';
import { statusUnchanged, type ReconcileDeps, type Result } from '../common/deps.js';
import { withCondition } from '../common/run-status.js';
import { bundleSet, desiredLoRAServer, inPodBundleSet, type BundleSet, type ServedBundle } from './desired.js';
import type { RolloutFailure, RolloutView } from './rollout.js';

/** Current bundles of the referenced AdapterClusters; those without one yet are listed as missing. */
export function servedBundles(ls: LoRAServer, deps: Pick<ReconcileDeps, 'adapterCluster'>): { bundles: ServedBundle[]; missing: string[]; roots: string[] } {
  const bundles: ServedBundle[] = [];
  const missing: string[] = [];
  const roots: string[] = [];
  for (const name of [...ls.spec.adapterClusters].sort()) {
    const ac = deps.adapterCluster(ls.metadata.namespace ?? '', name);
    if (ac) roots.push(ac.spec.output.uri);
    if (ac?.status?.revision && ac.status.bundleUri) {
      bundles.push({ adapterCluster: name, revision: ac.status.revision, uri: ac.status.bundleUri, ...(ac.status.bundleDigest ? { sha256: ac.status.bundleDigest } : {}) });
    } else missing.push(name);
  }
  return { bundles, missing, roots };
}

const short = (revision: string | undefined): string => (revision ? revision.slice(0, 12) : 'none');

/** The failure to show; null removes an old one (merge patch) once it no longer concerns the desired set. */
function failedField(failure: RolloutFailure | undefined, before: RolloutFailure | undefined): { failed?: RolloutFailure | null } {
  if (failure) return { failed: failure };
  return before ? { failed: null } : {};
}

export async function reconcileLoRAServer(ls: LoRAServer, deps: ReconcileDeps): Promise<Result> {
  if (ls.metadata.deletionTimestamp) return {};
  const namespace = ls.metadata.namespace ?? '';
  const name = ls.metadata.name ?? '';
  const generation = ls.metadata.generation ?? 0;
  const now = deps.now();
  const { bundles, missing, roots } = servedBundles(ls, deps);
  const desired = bundleSet(bundles);
  const previous = ls.status?.bundleRevision;
  const current: BundleSet | undefined = previous?.current ? { revision: previous.current, bundles: ls.status?.bundles ?? [] } : undefined;
  // Until every replica has activated some set, new replicas may as well start on the desired one.
  const children = desiredLoRAServer(ls, { startSet: current ?? desired, bundleRoots: roots }, deps.settings);
  await deps.apply(children.configMap);
  await deps.apply(children.deployment);
  await deps.apply(children.service);

  const deploymentName = children.deployment.metadata?.name ?? '';
  const observed = deps.deployment(namespace, deploymentName);
  const desiredReplicas = ls.spec.replicas;
  const ready = observed?.status?.readyReplicas ?? 0;
  const updated = observed?.status?.updatedReplicas ?? 0;
  const allReady = ready >= desiredReplicas && updated >= desiredReplicas && (observed?.status?.observedGeneration ?? 0) >= (observed?.metadata?.generation ?? 0);

  const rollout: RolloutView | undefined = deps.rollouts?.observe({ namespace, name }, inPodBundleSet(desired), {
    strategy: ls.spec.rollout.strategy,
    knownFailure: previous?.failed,
  });
  const replicas = rollout?.replicas ?? [];
  const everyReplicaOnDesired = desired.revision !== '' && replicas.length > 0 && replicas.length >= ready && replicas.every((r) => r.revision === desired.revision);
  const next = everyReplicaOnDesired ? desired : current;
  const failure = rollout?.failure;
  const rollingOut = rollout !== undefined && desired.revision !== '' && !everyReplicaOnDesired && !failure && replicas.length > 0;

  let conditions = ls.status?.conditions ?? [];
  const set = (type: string, status: 'True' | 'False', reason: string, message: string) =>
    (conditions = withCondition(conditions, { type, status, reason, message, observedGeneration: generation }, now));
  set(ConditionType.Ready, allReady && desiredReplicas > 0 ? 'True' : 'False', allReady ? Reason.ReplicasReady : Reason.ReplicasUnavailable,
    `${ready} of ${desiredReplicas} replicas ready.`);
  if (!allReady) set(ConditionType.Progressing, 'True', Reason.RolloutInProgress, `${updated} of ${desiredReplicas} replicas updated.`);
  else if (rollingOut) {
    const on = replicas.filter((r) => r.revision === desired.revision).length;
    set(ConditionType.Progressing, 'True', Reason.RolloutInProgress, `Bundle revision ${short(desired.revision)} is active on ${on} of ${replicas.length} replicas.`);
  } else set(ConditionType.Progressing, 'False', Reason.BundleCurrent, `All replicas run the current template${next ? ` and serve bundle revision ${short(next.revision)}` : ''}.`);
  if (failure) {
    set(ConditionType.Degraded, 'True', Reason.RolloutFailed,
      `Bundle revision ${short(failure.revision)} did not roll out: ${failure.message}. Replicas keep serving revision ${short(current?.revision)}.`);
  } else if (missing.length > 0) {
    set(ConditionType.Degraded, 'True', Reason.InputNotReady, `AdapterCluster ${missing.join(', ')} has no bundle yet; serving the others.`);
  } else set(ConditionType.Degraded, 'False', Reason.ReplicasReady, '');

  const port = ls.spec.service.port;
  const status: Record<string, unknown> = {
    observedGeneration: generation,
    conditions,
    stage: !observed ? 'Pending' : !allReady || rollingOut ? 'RollingOut' : 'Serving',
    replicas: observed?.status?.replicas ?? 0,
    readyReplicas: ready,
    endpoint: `http://${ls.metadata.name}.${namespace}.svc:${port}/v1`,
    deploymentName,
    bundleRevision: {
      ...previous,
      desired: desired.revision,
      ...(next ? { current: next.revision } : {}),
      ...failedField(failure, previous?.failed),
    },
    ...(next ? { bundles: next.bundles.map((b) => ({ adapterCluster: b.adapterCluster, revision: b.revision, uri: b.uri, ...(b.sha256 ? { sha256: b.sha256 } : {}) })) } : {}),
  };
  if (!statusUnchanged(ls.status as Record<string, unknown> | undefined, status)) await deps.patchStatus(ls, status);
  return {};
}
