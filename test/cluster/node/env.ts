// A container's environment: the pod spec's env and envFrom, service variables for the API server, POD_IP.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { NodeApi } from './api.js';
import { fieldValue, resourceValue } from './downward.js';

export interface EnvContext {
  api: NodeApi;
  pod: V1Pod;
  podIP: string;
  hostIP: string;
  apiServerHost: string;
  apiServerPort: number;
}

export class EnvError extends Error {
  constructor(readonly reason: string, message: string) {
    super(message);
  }
}

/** $(VAR) references expand from variables defined earlier, as Kubernetes does; $$ escapes. */
export function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (match === '$$') return '$';
    return name !== undefined && env[name] !== undefined ? env[name] : match;
  });
}

export async function containerEnv(ctx: EnvContext, container: V1Container): Promise<Record<string, string>> {
  const namespace = ctx.pod.metadata?.namespace ?? '';
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: '/root',
    HOSTNAME: ctx.pod.spec?.hostname ?? ctx.pod.metadata?.name ?? '',
    POD_IP: ctx.podIP,
  };
  // In-cluster clients find the API server through these, in every pod (enableServiceLinks does not cover them).
  env.KUBERNETES_SERVICE_HOST = ctx.apiServerHost;
  env.KUBERNETES_SERVICE_PORT = String(ctx.apiServerPort);
  env.KUBERNETES_SERVICE_PORT_HTTPS = String(ctx.apiServerPort);
  env.KUBERNETES_PORT = `tcp://${ctx.apiServerHost}:${ctx.apiServerPort}`;
  for (const source of container.envFrom ?? []) {
    const prefix = source.prefix ?? '';
    if (source.configMapRef) {
      const cm = await ctx.api.configMap(namespace, source.configMapRef.name ?? '');
      if (!cm && !source.configMapRef.optional) throw new EnvError('CreateContainerConfigError', `configmap ${namespace}/${source.configMapRef.name} not found`);
      for (const [k, v] of Object.entries(cm?.data ?? {})) env[prefix + k] = v;
    } else if (source.secretRef) {
      const secret = await ctx.api.secret(namespace, source.secretRef.name ?? '');
      if (!secret && !source.secretRef.optional) throw new EnvError('CreateContainerConfigError', `secret ${namespace}/${source.secretRef.name} not found`);
      for (const [k, v] of Object.entries(secret?.data ?? {})) env[prefix + k] = Buffer.from(v, 'base64').toString('utf8');
    }
  }
  for (const item of container.env ?? []) {
    const from = item.valueFrom;
    if (!from) {
      env[item.name] = expand(item.value ?? '', env);
    } else if (from.fieldRef) {
      env[item.name] = fieldValue(ctx.pod, from.fieldRef.fieldPath, ctx.podIP, ctx.hostIP);
    } else if (from.resourceFieldRef) {
      const target = ctx.pod.spec?.containers.find((c) => c.name === (from.resourceFieldRef?.containerName ?? container.name));
      env[item.name] = resourceValue(target, from.resourceFieldRef.resource);
    } else if (from.secretKeyRef) {
      const ref = from.secretKeyRef;
      const secret = await ctx.api.secret(namespace, ref.name ?? '');
      const value = secret?.data?.[ref.key];
      if (value === undefined) {
        if (ref.optional) continue;
        throw new EnvError('CreateContainerConfigError', `env ${item.name}: key ${ref.key} of secret ${namespace}/${ref.name} not found`);
      }
      env[item.name] = Buffer.from(value, 'base64').toString('utf8');
    } else if (from.configMapKeyRef) {
      const ref = from.configMapKeyRef;
      const cm = await ctx.api.configMap(namespace, ref.name ?? '');
      const value = cm?.data?.[ref.key];
      if (value === undefined) {
        if (ref.optional) continue;
        throw new EnvError('CreateContainerConfigError', `env ${item.name}: key ${ref.key} of configmap ${namespace}/${ref.name} not found`);
      }
      env[item.name] = value;
    }
  }
  return env;
}
