// Readiness, liveness and startup probes: httpGet, tcpSocket and exec, as the kubelet runs them.
import { connect } from 'node:net';
import { spawn } from 'node:child_process';
import type { V1Container, V1Probe } from '@kubernetes/client-node';
import { httpGet } from '../probe.js';

export interface ProbeTarget {
  podIP: string;
  container: V1Container;
  env: Record<string, string>;
  /** PID whose mount namespace exec probes enter, when the container has one. */
  mountNamespacePid: number | undefined;
}

function resolvePort(port: number | string, container: V1Container): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const named = container.ports?.find((p) => p.name === port);
  if (!named) throw new Error(`probe names port ${JSON.stringify(port)}, which container ${container.name} does not declare`);
  return named.containerPort;
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolveProbe) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    socket.on('connect', () => {
      socket.destroy();
      resolveProbe(true);
    });
    socket.on('timeout', () => {
      socket.destroy();
      resolveProbe(false);
    });
    socket.on('error', () => resolveProbe(false));
  });
}

function execProbe(argv: string[], target: ProbeTarget, timeoutMs: number): Promise<boolean> {
  const full = target.mountNamespacePid !== undefined ? ['nsenter', '-t', String(target.mountNamespacePid), '-m', '--', ...argv] : argv;
  const [command, ...args] = full;
  if (!command) return Promise.resolve(false);
  return new Promise((resolveProbe) => {
    const child = spawn(command, args, { env: target.env, stdio: 'ignore', timeout: timeoutMs });
    child.on('error', () => resolveProbe(false));
    child.on('exit', (code) => resolveProbe(code === 0));
  });
}

/** One probe attempt: true = success. */
export async function runProbe(probe: V1Probe, target: ProbeTarget): Promise<boolean> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  try {
    if (probe.httpGet) {
      const scheme = (probe.httpGet.scheme ?? 'HTTP').toLowerCase();
      const host = probe.httpGet.host ?? target.podIP;
      const port = resolvePort(probe.httpGet.port, target.container);
      const result = await httpGet(`${scheme}://${host}:${port}${probe.httpGet.path ?? '/'}`, { insecure: true }, timeoutMs);
      return result.status >= 200 && result.status < 400;
    }
    if (probe.tcpSocket) {
      return await tcpProbe(probe.tcpSocket.host ?? target.podIP, resolvePort(probe.tcpSocket.port, target.container), timeoutMs);
    }
    if (probe.exec) return await execProbe(probe.exec.command ?? [], target, timeoutMs);
    if (probe.grpc) return await tcpProbe(target.podIP, probe.grpc.port, timeoutMs);
  } catch {
    return false;
  }
  return false;
}

/**
 * Runs a probe on its period and reports each change of outcome after the success/failure
 * thresholds, as the kubelet's prober workers do.
 */
export class ProbeLoop {
  private timer: NodeJS.Timeout | undefined;
  private successes = 0;
  private failures = 0;
  private result: boolean | undefined;
  private stopped = false;

  constructor(
    private readonly probe: V1Probe,
    private readonly target: ProbeTarget,
    private readonly onResult: (ok: boolean) => void,
  ) {}

  start(): void {
    const first = (this.probe.initialDelaySeconds ?? 0) * 1000;
    this.timer = setTimeout(() => void this.tick(), first);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const ok = await runProbe(this.probe, this.target);
    if (this.stopped) return;
    if (ok) {
      this.successes++;
      this.failures = 0;
    } else {
      this.failures++;
      this.successes = 0;
    }
    const next =
      ok && this.successes >= (this.probe.successThreshold ?? 1) ? true
        : !ok && this.failures >= (this.probe.failureThreshold ?? 3) ? false
          : this.result;
    if (next !== undefined && next !== this.result) {
      this.result = next;
      this.onResult(next);
    }
    this.timer = setTimeout(() => void this.tick(), (this.probe.periodSeconds ?? 10) * 1000);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
