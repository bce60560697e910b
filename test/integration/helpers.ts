// Small helpers for integration tests: namespaces per test file, bounded waits on objects.
import { AppsV1Api, BatchV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { waitFor } from '../cluster/probe.js';
import { session } from '../cluster/session.js';

export function clients() {
  const kc = session().kubeConfig;
  return { core: kc.makeApiClient(CoreV1Api), apps: kc.makeApiClient(AppsV1Api), batch: kc.makeApiClient(BatchV1Api) };
}

/** Creates a namespace and waits for its default ServiceAccount, which pods need at admission. */
export async function freshNamespace(prefix: string): Promise<string> {
  const { core } = clients();
  const name = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  await core.createNamespace({ body: { metadata: { name } } });
  await waitFor(`ServiceAccount ${name}/default`, async () => {
    await core.readNamespacedServiceAccount({ name: 'default', namespace: name });
    return true;
  }, 30_000);
  return name;
}

export async function deleteNamespace(name: string): Promise<void> {
  await clients().core.deleteNamespace({ name }).catch(() => undefined);
}

export async function podsOf(namespace: string, selector: string): Promise<V1Pod[]> {
  return (await clients().core.listNamespacedPod({ namespace, labelSelector: selector })).items;
}

export async function waitForPod(namespace: string, name: string, what: string, check: (pod: V1Pod) => boolean, timeoutMs = 60_000): Promise<V1Pod> {
  let last: V1Pod | undefined;
  await waitFor(`pod ${namespace}/${name} ${what}`, async () => {
    last = await clients().core.readNamespacedPod({ name, namespace });
    return check(last);
  }, timeoutMs);
  return last as V1Pod;
}

export const isReady = (pod: V1Pod): boolean => pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
