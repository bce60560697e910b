// Materializes a pod's volumes as host folders, as the kubelet's volume plugins would.
import { chmod, mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { V1ConfigMap, V1KeyToPath, V1Pod, V1Secret, V1Volume, V1VolumeProjection } from '@kubernetes/client-node';
import type { Clock, TimerHandle } from '../../../operator/runtime/clock.js';
import type { NodeApi } from './api.js';
import { fieldValue, resourceValue } from './downward.js';

export interface VolumeContext {
  api: NodeApi;
  pod: V1Pod;
  podDir: string;
  podIP: string;
  hostIP: string;
  /** Host folder of a bound PersistentVolumeClaim. */
  claimPath(namespace: string, claim: string): Promise<string>;
  /** Schedules token refreshes; tests pass a fake one rather than wait minutes. */
  clock: Clock;
  /** Called with what to run when the pod stops (cancelling token refreshes). */
  onStop(cancel: () => void): void;
  log(message: string, fields?: Record<string, unknown>): void;
}

export class VolumeError extends Error {
  constructor(readonly reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

async function atomicWrite(file: string, content: string | Buffer, mode: number): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, content);
  await chmod(tmp, mode);
  await rename(tmp, file);
}

function keyedFiles(data: Record<string, Buffer>, items: V1KeyToPath[] | undefined, source: string): [string, Buffer, number | undefined][] {
  if (!items || items.length === 0) return Object.entries(data).map(([k, v]) => [k, v, undefined]);
  return items.map((item) => {
    const value = data[item.key];
    if (value === undefined) throw new VolumeError('KeyNotFound', `${source} has no key ${JSON.stringify(item.key)}`);
    return [item.path, value, item.mode];
  });
}

function secretData(secret: V1Secret): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, 'base64');
  for (const [k, v] of Object.entries(secret.stringData ?? {})) out[k] = Buffer.from(v, 'utf8');
  return out;
}

function configMapData(cm: V1ConfigMap): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(cm.data ?? {})) out[k] = Buffer.from(v, 'utf8');
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) out[k] = Buffer.from(v, 'base64');
  return out;
}

async function writeFiles(dir: string, files: [string, Buffer, number | undefined][], defaultMode: number): Promise<void> {
  await Promise.all(files.map(([path, content, mode]) => atomicWrite(join(dir, path), content, mode ?? defaultMode)));
}

async function secretFiles(ctx: VolumeContext, name: string, items: V1KeyToPath[] | undefined, optional: boolean | undefined) {
  const namespace = ctx.pod.metadata?.namespace ?? '';
  const secret = await ctx.api.secret(namespace, name);
  if (!secret) {
    if (optional) return [];
    throw new VolumeError('SecretNotFound', `secret ${namespace}/${name} not found`);
  }
  return keyedFiles(secretData(secret), items, `secret ${namespace}/${name}`);
}

async function configMapFiles(ctx: VolumeContext, name: string, items: V1KeyToPath[] | undefined, optional: boolean | undefined) {
  const namespace = ctx.pod.metadata?.namespace ?? '';
  const cm = await ctx.api.configMap(namespace, name);
  if (!cm) {
    if (optional) return [];
    throw new VolumeError('ConfigMapNotFound', `configmap ${namespace}/${name} not found`);
  }
  return keyedFiles(configMapData(cm), items, `configmap ${namespace}/${name}`);
}

function downwardFiles(ctx: VolumeContext, items: { path: string; fieldRef?: { fieldPath: string }; resourceFieldRef?: { containerName?: string; resource: string }; mode?: number }[]) {
  return items.map((item): [string, Buffer, number | undefined] => {
    let value: string;
    if (item.fieldRef) value = fieldValue(ctx.pod, item.fieldRef.fieldPath, ctx.podIP, ctx.hostIP);
    else if (item.resourceFieldRef) {
      const container = ctx.pod.spec?.containers.find((c) => c.name === item.resourceFieldRef?.containerName);
      value = resourceValue(container, item.resourceFieldRef.resource);
    } else throw new VolumeError('InvalidDownwardAPI', `downwardAPI item ${item.path} names neither fieldRef nor resourceFieldRef`);
    return [item.path, Buffer.from(value, 'utf8'), item.mode];
  });
}

/** The kubelet's token manager refreshes at 80 % of a token's lifetime, and at least daily. */
export function tokenRefreshDelayMs(lifetimeSeconds: number): number {
  return Math.min(lifetimeSeconds * 0.8, 24 * 3600) * 1000;
}

/** After a failed refresh; the token in place stays valid for the remaining 20 % of its lifetime. */
const TOKEN_RETRY_MS = 10_000;

/** Writes a pod-bound token and refreshes it before it expires, as the kubelet's token manager does. */
async function serviceAccountToken(ctx: VolumeContext, dir: string, source: NonNullable<V1VolumeProjection['serviceAccountToken']>, mode: number): Promise<void> {
  const file = join(dir, source.path);
  let stopped = false;
  let timer: TimerHandle | undefined;
  ctx.onStop(() => {
    stopped = true;
    if (timer !== undefined) ctx.clock.clearTimeout(timer);
  });
  /** Returns the lifetime the apiserver granted, which --service-account-max-token-expiration may have shortened. */
  const mint = async (): Promise<number> => {
    const { token, lifetimeSeconds } = await ctx.api.requestToken(ctx.pod, source.audience, source.expirationSeconds ?? 3600);
    if (!stopped) await atomicWrite(file, token, mode);
    return lifetimeSeconds;
  };
  const schedule = (ms: number): void => {
    if (!stopped) timer = ctx.clock.setTimeout(() => void refresh(), ms);
  };
  const refresh = async (): Promise<void> => {
    try {
      schedule(tokenRefreshDelayMs(await mint()));
    } catch (err) {
      ctx.log('token refresh failed; retrying', { err, path: source.path, retryMs: TOKEN_RETRY_MS });
      schedule(TOKEN_RETRY_MS);
    }
  };
  // The first token must exist before the container starts: a failure here fails the volume.
  schedule(tokenRefreshDelayMs(await mint()));
}

async function materialize(ctx: VolumeContext, volume: V1Volume, dir: string): Promise<string> {
  const namespace = ctx.pod.metadata?.namespace ?? '';
  if (volume.emptyDir) {
    await mkdir(dir, { recursive: true });
    return dir;
  }
  if (volume.hostPath) {
    const { path, type } = volume.hostPath;
    if (type === 'DirectoryOrCreate') await mkdir(path, { recursive: true });
    else if (type === 'Directory' || type === 'File') {
      const found = await stat(path).catch(() => undefined);
      // As the kubelet does: the pod waits (and says why) until the path exists.
      if (!found || (type === 'Directory' ? !found.isDirectory() : !found.isFile())) {
        throw new VolumeError('HostPathNotFound', `hostPath volume ${volume.name}: ${path} is not an existing ${type === 'Directory' ? 'directory' : 'file'}`);
      }
    }
    return path;
  }
  if (volume.persistentVolumeClaim) return ctx.claimPath(namespace, volume.persistentVolumeClaim.claimName);
  await mkdir(dir, { recursive: true });
  if (volume.secret) {
    const files = await secretFiles(ctx, volume.secret.secretName ?? '', volume.secret.items, volume.secret.optional);
    await writeFiles(dir, files, volume.secret.defaultMode ?? 0o644);
    return dir;
  }
  if (volume.configMap) {
    const files = await configMapFiles(ctx, volume.configMap.name ?? '', volume.configMap.items, volume.configMap.optional);
    await writeFiles(dir, files, volume.configMap.defaultMode ?? 0o644);
    return dir;
  }
  if (volume.downwardAPI) {
    await writeFiles(dir, downwardFiles(ctx, volume.downwardAPI.items ?? []), volume.downwardAPI.defaultMode ?? 0o644);
    return dir;
  }
  if (volume.projected) {
    const mode = volume.projected.defaultMode ?? 0o644;
    for (const source of volume.projected.sources ?? []) {
      if (source.serviceAccountToken) await serviceAccountToken(ctx, dir, source.serviceAccountToken, mode);
      else if (source.configMap) await writeFiles(dir, await configMapFiles(ctx, source.configMap.name ?? '', source.configMap.items, source.configMap.optional), mode);
      else if (source.secret) await writeFiles(dir, await secretFiles(ctx, source.secret.name ?? '', source.secret.items, source.secret.optional), mode);
      else if (source.downwardAPI) await writeFiles(dir, downwardFiles(ctx, source.downwardAPI.items ?? []), mode);
      else throw new VolumeError('UnsupportedVolume', `projected volume ${volume.name} has a source the process node does not support: ${Object.keys(source).join(', ')}`);
    }
    return dir;
  }
  const kinds = Object.keys(volume).filter((k) => k !== 'name');
  throw new VolumeError('UnsupportedVolume', `volume ${volume.name} of type ${kinds.join(', ')} is not supported by the process node (emptyDir, hostPath, persistentVolumeClaim, secret, configMap, downwardAPI, projected are)`);
}

/** Prepares every volume of the pod; returns volume name → host path. */
export async function prepareVolumes(ctx: VolumeContext): Promise<Map<string, string>> {
  const paths = new Map<string, string>();
  for (const volume of ctx.pod.spec?.volumes ?? []) {
    try {
      paths.set(volume.name, await materialize(ctx, volume, join(ctx.podDir, 'volumes', volume.name)));
    } catch (err) {
      if (err instanceof VolumeError) throw err;
      throw new VolumeError('VolumeSetupFailed', `volume ${volume.name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
  return paths;
}
