// A local-path provisioner: every claim of the node's StorageClass gets a PersistentVolume backed by
// a host folder, so `persistentVolumeClaim` volumes are real folders on the process node.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { statusCode, type NodeApi } from './api.js';
import { ListWatch } from './list-watch.js';

export const STORAGE_CLASS = 'tessera-local';
const PROVISIONER = 'tessera.dev/process-node';

export class LocalPathProvisioner {
  private watch: ListWatch<V1PersistentVolumeClaim> | undefined;

  constructor(
    private readonly api: NodeApi,
    readonly root: string,
    private readonly log: (message: string, fields?: Record<string, unknown>) => void,
  ) {}

  /** Host folder of a claim: stable by namespace and name, so tests can put files there before pods run. */
  claimFolder(namespace: string, claim: string): string {
    return join(this.root, namespace, claim);
  }

  async start(): Promise<void> {
    try {
      await this.api.storage.createStorageClass({
        body: {
          metadata: { name: STORAGE_CLASS, annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
          provisioner: PROVISIONER,
          reclaimPolicy: 'Retain',
          volumeBindingMode: 'Immediate',
        },
      });
    } catch (err) {
      if (statusCode(err) !== 409) throw err;
    }
    this.watch = new ListWatch<V1PersistentVolumeClaim>({
      kubeConfig: this.api.kubeConfig,
      path: '/api/v1/persistentvolumeclaims',
      list: () => this.api.core.listPersistentVolumeClaimForAllNamespaces(),
      onSync: (items) => items.forEach((c) => void this.provision(c)),
      onEvent: (type, claim) => {
        if (type !== 'DELETED') void this.provision(claim);
      },
      log: this.log,
    });
    await this.watch.start();
  }

  private async provision(claim: V1PersistentVolumeClaim): Promise<void> {
    const namespace = claim.metadata?.namespace ?? '';
    const name = claim.metadata?.name ?? '';
    if (claim.spec?.volumeName || claim.status?.phase === 'Bound') return;
    if ((claim.spec?.storageClassName ?? STORAGE_CLASS) !== STORAGE_CLASS) return;
    const folder = this.claimFolder(namespace, name);
    await mkdir(folder, { recursive: true });
    try {
      await this.api.core.createPersistentVolume({
        body: {
          metadata: { name: `pvc-${claim.metadata?.uid}`, annotations: { 'pv.kubernetes.io/provisioned-by': PROVISIONER } },
          spec: {
            capacity: { storage: claim.spec?.resources?.requests?.storage ?? '1Gi' },
            accessModes: claim.spec?.accessModes ?? ['ReadWriteOnce'],
            persistentVolumeReclaimPolicy: 'Retain',
            storageClassName: STORAGE_CLASS,
            volumeMode: claim.spec?.volumeMode ?? 'Filesystem',
            hostPath: { path: folder, type: 'DirectoryOrCreate' },
            claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace, name, uid: claim.metadata?.uid },
          },
        },
      });
      this.log('provisioned volume for claim', { claim: `${namespace}/${name}`, folder });
    } catch (err) {
      if (statusCode(err) !== 409) this.log('provisioning failed', { claim: `${namespace}/${name}`, err: String(err) });
    }
  }

  stop(): void {
    this.watch?.stop();
  }
}
