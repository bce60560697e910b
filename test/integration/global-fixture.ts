// Mocha global fixture: one real cluster for the whole integration suite. By default the local
// control plane and process node; with TESSERA_TEST_CLUSTER=existing, the current $KUBECONFIG context.
import { ensureBinaries } from '../cluster/binaries.js';
import { ExistingCluster } from '../cluster/existing-cluster.js';
import { LocalCluster } from '../cluster/local-cluster.js';
import { setSession } from '../cluster/session.js';

let local: LocalCluster | undefined;

const log = (message: string, fields?: Record<string, unknown>): void => {
  if (process.env.TESSERA_TEST_VERBOSE) console.error(JSON.stringify({ msg: message, ...fields }));
};

export async function mochaGlobalSetup(): Promise<void> {
  if (process.env.TESSERA_TEST_CLUSTER === 'existing') {
    const kubeconfig = (process.env.KUBECONFIG ?? '').split(':')[0];
    if (!kubeconfig) throw new Error('TESSERA_TEST_CLUSTER=existing needs KUBECONFIG to point at the cluster');
    await ensureBinaries();
    setSession(new ExistingCluster(kubeconfig));
    return;
  }
  const started = Date.now();
  local = await LocalCluster.start({ log });
  process.env.KUBECONFIG = local.kubeconfigPath;
  setSession(local);
  console.error(`local control plane ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${local.dir})`);
}

export async function mochaGlobalTeardown(): Promise<void> {
  setSession(undefined);
  await local?.stop();
}
