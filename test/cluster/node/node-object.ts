// The Node object and status the process node registers and heartbeats, as a kubelet would.
import { arch, cpus, hostname, release, totalmem } from 'node:os';
import type { V1Node, V1NodeStatus } from '@kubernetes/client-node';
import { KUBERNETES_VERSION } from '../paths.js';

export interface NodeShape {
  name: string;
  gpus: number;
  /** Advertised, not enforced: pods are plain processes sharing the host. */
  cpu: string;
  memory: string;
  pods: number;
  kubeletPort: number;
  hostIP: string;
}

export function defaultShape(name: string, gpus: number, kubeletPort: number): NodeShape {
  return {
    name, gpus, kubeletPort, hostIP: '127.0.0.1', pods: 110,
    cpu: String(Math.max(16, cpus().length)),
    memory: `${Math.max(64, Math.floor(totalmem() / 2 ** 30))}Gi`,
  };
}

export function nodeObject(shape: NodeShape): V1Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: shape.name,
      labels: {
        'kubernetes.io/hostname': shape.name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': arch() === 'x64' ? 'amd64' : arch(),
        'tessera.dev/process-node': 'true',
        'nvidia.com/gpu.present': shape.gpus > 0 ? 'true' : 'false',
      },
    },
    spec: {},
  };
}

export function nodeStatus(shape: NodeShape, now: Date, readySince: Date): V1NodeStatus {
  const resources = {
    cpu: shape.cpu,
    memory: shape.memory,
    pods: String(shape.pods),
    'ephemeral-storage': '100Gi',
    'nvidia.com/gpu': String(shape.gpus),
  };
  const cond = (type: string, status: string, reason: string, message: string) => ({
    type, status, reason, message, lastHeartbeatTime: now, lastTransitionTime: readySince,
  });
  return {
    capacity: resources,
    allocatable: resources,
    conditions: [
      cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'process node has sufficient memory available'),
      cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'process node has no disk pressure'),
      cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'process node has sufficient PID available'),
      cond('Ready', 'True', 'KubeletReady', 'process node is posting ready status'),
    ],
    addresses: [
      { type: 'InternalIP', address: shape.hostIP },
      { type: 'Hostname', address: shape.name },
    ],
    daemonEndpoints: { kubeletEndpoint: { Port: shape.kubeletPort } },
    nodeInfo: {
      architecture: arch() === 'x64' ? 'amd64' : arch(),
      bootID: '', machineID: hostname(), systemUUID: hostname(),
      containerRuntimeVersion: 'tessera-process://0.1.0',
      kernelVersion: release(),
      kubeProxyVersion: '',
      kubeletVersion: KUBERNETES_VERSION,
      operatingSystem: 'linux',
      osImage: 'Tessera process node',
    },
  };
}
