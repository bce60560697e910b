// tessera-operator as real processes (the built entry point), for leader election and restarts,
// and a TCP forwarder standing in for the operator Service: kube-proxy sends a new connection to
// an endpoint that accepts it, which is what the forwarder does with the replicas it knows.
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { repoRoot } from '../../cluster/paths.js';
import { freePort } from '../../cluster/ports.js';
import { waitFor } from '../../cluster/probe.js';
import { session } from '../../cluster/session.js';

export interface LogLine {
  msg?: string;
  level?: string;
  [key: string]: unknown;
}

export class OperatorProcess {
  readonly lines: LogLine[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  private constructor(readonly name: string, readonly grpcPort: number, namespace: string, statusAddress: string) {
    const args = [
      join(repoRoot, 'dist/operator/main.js'), '--leader-elect',
      '--grpc-bind-address', `127.0.0.1:${grpcPort}`, '--metrics-bind-address', '0', '--health-probe-bind-address', '0',
      '--status-address', statusAddress, '--worker-image', 'ghcr.io/tessera-dev/tessera:test',
    ];
    // POD_IP puts 127.0.0.1 into the hub's serving certificate, the address workers dial through the forwarder.
    this.child = spawn(process.execPath, args, {
      env: { ...process.env, KUBECONFIG: session().kubeconfigPath, POD_NAMESPACE: namespace, POD_NAME: name, POD_IP: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffer = '';
    this.child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const line of parts) {
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.lines.push({ msg: line });
        }
      }
    });
    this.child.stderr?.on('data', (chunk: Buffer) => this.lines.push({ msg: chunk.toString('utf8'), level: 'stderr' }));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  static async start(name: string, namespace: string, statusAddress: string): Promise<OperatorProcess> {
    return new OperatorProcess(name, await freePort(), namespace, statusAddress);
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  logged(msg: string): boolean {
    return this.lines.some((l) => l.msg === msg);
  }

  async waitForLog(msg: string, timeoutMs: number): Promise<void> {
    await waitFor(`${this.name} to log "${msg}"`, async () => {
      if (!this.alive && !this.logged(msg)) throw new Error(`${this.name} exited: ${this.lines.slice(-5).map((l) => JSON.stringify(l)).join('\n')}`);
      return this.logged(msg);
    }, timeoutMs);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.alive) this.child.kill(signal);
    await this.exited;
  }
}

/** Forwards each connection to the first replica that accepts it, like a Service with one dead endpoint. */
export class Forwarder {
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server, readonly port: number, private readonly backends: () => number[]) {}

  static async start(backends: () => number[]): Promise<Forwarder> {
    const port = await freePort();
    const holder: { self?: Forwarder } = {};
    const server = createServer((client) => holder.self?.accept(client));
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    holder.self = new Forwarder(server, port, backends);
    return holder.self;
  }

  private accept(client: Socket): void {
    this.sockets.add(client);
    client.once('close', () => this.sockets.delete(client));
    const tryNext = (candidates: number[]): void => {
      const [port, ...rest] = candidates;
      if (port === undefined) {
        client.destroy();
        return;
      }
      const upstream = createConnection({ host: '127.0.0.1', port });
      upstream.once('error', () => tryNext(rest));
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        this.sockets.add(upstream);
        upstream.once('close', () => {
          this.sockets.delete(upstream);
          client.destroy();
        });
        client.once('close', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        client.pipe(upstream).pipe(client);
      });
    };
    tryNext(this.backends());
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
