// Storage URIs of a spec → pod volumes and in-pod paths: pvc://CLAIM/path mounts the claim,
// file:///path mounts the node path (local runs), http(s) is fetched by the worker (no volume).
import type { V1Volume, V1VolumeMount } from '@kubernetes/client-node';

export const PVC_ROOT = '/mnt/pvc';

export interface ResolvedStorage {
  /** The path the worker opens, or the http(s) URL it downloads. */
  location: string;
  volume?: V1Volume;
  mount?: V1VolumeMount;
}

export class StorageUriError extends Error {}

const volumeName = (prefix: string, raw: string): string => {
  const cleaned = raw.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '');
  return `${prefix}-${cleaned}`.slice(0, 63).replace(/-+$/, '');
};

/**
 * `folder`: the URI names a folder whose contents come and go (an AdapterCluster's output, where
 * each revision is a new subfolder), so that folder itself is mounted rather than its parent.
 */
export function resolveStorage(uri: string, writable: boolean, folder = false): ResolvedStorage {
  const pvc = /^pvc:\/\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\/.*)?$/.exec(uri);
  if (pvc) {
    const claim = pvc[1] ?? '';
    const mountPath = `${PVC_ROOT}/${claim}`;
    const name = volumeName('pvc', claim);
    return {
      location: `${mountPath}${pvc[3] ?? ''}`,
      volume: { name, persistentVolumeClaim: { claimName: claim } },
      mount: { name, mountPath, readOnly: !writable },
    };
  }
  const file = /^file:\/\/(\/.*)$/.exec(uri);
  if (file) {
    const path = file[1] ?? '/';
    // Mount the folder that holds the target so files created there (outputs) are visible on the node.
    const dir = writable || folder ? path.replace(/(.)\/+$/, '$1') : path.replace(/\/[^/]*$/, '') || '/';
    const name = volumeName('host', dir);
    return {
      location: path,
      volume: { name, hostPath: { path: dir, type: writable || folder ? 'DirectoryOrCreate' : 'Directory' } },
      mount: { name, mountPath: dir, readOnly: !writable },
    };
  }
  if (/^https?:\/\//.test(uri)) return { location: uri };
  throw new StorageUriError(`unsupported storage URI ${JSON.stringify(uri)}: expected pvc://CLAIM/path, file:///path or http(s)://… with sha256`);
}

/** Volumes and mounts for several URIs, merged so each claim or folder is mounted once (writable wins). */
export interface StorageUse {
  uri: string;
  writable: boolean;
  /** See resolveStorage. */
  folder?: boolean;
}

export function storageVolumes(uris: StorageUse[]): { volumes: V1Volume[]; mounts: V1VolumeMount[] } {
  const volumes = new Map<string, V1Volume>();
  const mounts = new Map<string, V1VolumeMount>();
  for (const { uri, writable, folder } of uris) {
    const resolved = resolveStorage(uri, writable, folder);
    if (!resolved.volume || !resolved.mount) continue;
    volumes.set(resolved.volume.name, resolved.volume);
    const existing = mounts.get(resolved.mount.name);
    mounts.set(resolved.mount.name, existing ? { ...existing, readOnly: existing.readOnly && resolved.mount.readOnly } : resolved.mount);
  }
  return { volumes: [...volumes.values()].sort((a, b) => a.name.localeCompare(b.name)), mounts: [...mounts.values()].sort((a, b) => a.name.localeCompare(b.name)) };
}
