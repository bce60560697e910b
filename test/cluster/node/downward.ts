// Downward API field paths, shared by env vars and downwardAPI volume files.
import type { V1Container, V1Pod } from '@kubernetes/client-node';

function mapLines(map: Record<string, string> | undefined): string {
  return Object.entries(map ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join('\n');
}

export function fieldValue(pod: V1Pod, fieldPath: string, podIP: string, hostIP: string): string {
  const labelMatch = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (labelMatch) {
    const source = labelMatch[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations;
    return source?.[labelMatch[2] ?? ''] ?? '';
  }
  switch (fieldPath) {
    case 'metadata.name': return pod.metadata?.name ?? '';
    case 'metadata.namespace': return pod.metadata?.namespace ?? '';
    case 'metadata.uid': return pod.metadata?.uid ?? '';
    case 'metadata.labels': return mapLines(pod.metadata?.labels);
    case 'metadata.annotations': return mapLines(pod.metadata?.annotations);
    case 'spec.nodeName': return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName': return pod.spec?.serviceAccountName ?? '';
    case 'status.podIP': case 'status.podIPs': return podIP;
    case 'status.hostIP': case 'status.hostIPs': return hostIP;
    default:
      throw new Error(`unsupported downward API fieldPath ${JSON.stringify(fieldPath)}`);
  }
}

/** resourceFieldRef: requests/limits of the named container, in the units Kubernetes would expose (cpu rounded up to cores). */
export function resourceValue(container: V1Container | undefined, resource: string): string {
  const [kind, name] = resource.split('.') as ['limits' | 'requests', string];
  const quantity = container?.resources?.[kind]?.[name];
  if (quantity === undefined) return name === 'cpu' ? '1' : '0';
  if (name === 'cpu') {
    const cores = quantity.endsWith('m') ? Number(quantity.slice(0, -1)) / 1000 : Number(quantity);
    return String(Math.max(1, Math.ceil(cores)));
  }
  return String(quantity);
}
