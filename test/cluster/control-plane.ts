// A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler built from upstream modules (see binaries.ts), each a child process of this one.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generatePki, type Pki } from './pki.js';
import { writeKubeconfig } from './kubeconfig.js';
import { freePorts } from './ports.js';
import { ManagedProcess } from './process.js';
import { waitForHttp } from './probe.js';
import { toolPath } from './paths.js';

export interface ControlPlaneOptions {
  /** Folder for this run's data, certificates, logs and kubeconfig; created if missing. */
  dir: string;
  log?: (message: string) => void;
}

export const SERVICE_CIDR = '10.0.0.0/24';
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/**
 * The apiserver's audit log records what workloads' ServiceAccounts did and what they were refused,
 * so tests can show that an installed operator's RBAC is enough. Only those requests: the
 * controllers' own ServiceAccounts (kube-system) and the test's admin traffic would drown them.
 */
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
`;

/** One line of the audit log (audit.k8s.io/v1 Event at level Metadata), as far as tests read it. */
export interface AuditEvent {
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string };
  objectRef?: { apiGroup?: string; resource?: string; subresource?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
  /** e.g. authorization.k8s.io/decision: allow | forbid (an admission refusal is allowed, then 403). */
  annotations?: Record<string, string>;
}

export class LocalControlPlane {
  private constructor(
    readonly dir: string,
    readonly pki: Pki,
    readonly apiServerPort: number,
    readonly kubeconfigPath: string,
    private readonly processes: ManagedProcess[],
  ) {}

  get auditLogPath(): string {
    return join(this.dir, 'logs', 'audit.log');
  }

  /** Requests made with ServiceAccount tokens outside kube-system, oldest first. */
  async auditEvents(): Promise<AuditEvent[]> {
    const text = await readFile(this.auditLogPath, 'utf8').catch(() => '');
    // The apiserver may be writing the last line right now: a line that does not parse is that one.
    return text.split('\n').flatMap((line) => {
      try {
        return [JSON.parse(line) as AuditEvent];
      } catch {
        return [];
      }
    });
  }

  get apiServerUrl(): string {
    return `https://127.0.0.1:${this.apiServerPort}`;
  }

  static async start(options: ControlPlaneOptions): Promise<LocalControlPlane> {
    const log = options.log ?? (() => undefined);
    const dir = options.dir;
    const pkiDir = join(dir, 'pki');
    const logDir = join(dir, 'logs');
    await Promise.all([pkiDir, logDir, join(dir, 'etcd'), join(dir, 'certs')].map((d) => mkdir(d, { recursive: true })));
    const pki = await generatePki(pkiDir);
    const [etcdClient, etcdPeer, apiPort, cmPort, schedPort] = await freePorts(5) as [number, number, number, number, number];
    const kubeconfigPath = join(dir, 'kubeconfig');
    const auditPolicyFile = join(dir, 'audit-policy.yaml');
    await writeFile(auditPolicyFile, AUDIT_POLICY);
    const server = `https://127.0.0.1:${apiPort}`;
    await writeKubeconfig(kubeconfigPath, { server, caPem: pki.caPem, certPem: pki.admin.certPem, keyPem: pki.admin.keyPem });

    const processes: ManagedProcess[] = [];
    const plane = new LocalControlPlane(dir, pki, apiPort, kubeconfigPath, processes);
    const startComponent = (name: string, args: string[]): ManagedProcess => {
      const proc = new ManagedProcess({ name, command: toolPath(name as Parameters<typeof toolPath>[0]), args, logFile: join(logDir, `${name}.log`), runDir: dir });
      processes.push(proc);
      void proc.wait().then(({ code, signal }) => {
        if (!plane.stopping) log(`${name} exited (code ${code}, signal ${signal}); see ${proc.logFile}`);
      });
      return proc;
    };
    const failFast = async (what: string, proc: ManagedProcess, ready: Promise<void>): Promise<void> => {
      const died = proc.wait().then(async ({ code, signal }) => {
        const tail = (await readFile(proc.logFile, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
        throw new Error(`${what} exited (code ${code}, signal ${signal}) before it was ready; last lines of ${proc.logFile}:\n${tail}`);
      });
      await Promise.race([ready, died]);
    };

    try {
      const etcdUrl = `http://127.0.0.1:${etcdClient}`;
      const peerUrl = `http://127.0.0.1:${etcdPeer}`;
      const etcd = startComponent('etcd', [
        '--name=tessera', `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=tessera=${peerUrl}`,
        // A throwaway store: fsync only slows tests down.
        '--unsafe-no-fsync', '--log-level=warn',
      ]);
      log(`etcd starting on ${etcdUrl}`);
      await failFast('etcd', etcd, waitForHttp('etcd /health', `${etcdUrl}/health`, {}, 30_000));

      const apiserver = startComponent('kube-apiserver', [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${apiPort}`,
        `--cert-dir=${join(dir, 'certs')}`,
        `--tls-cert-file=${pki.apiserverCertFile}`, `--tls-private-key-file=${pki.apiserverKeyFile}`,
        `--client-ca-file=${pki.caCertFile}`,
        `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
        `--service-account-key-file=${pki.serviceAccountPubFile}`,
        `--service-account-signing-key-file=${pki.serviceAccountKeyFile}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        '--authorization-mode=Node,RBAC', '--allow-privileged=true',
        `--kubelet-client-certificate=${pki.kubeletClientCertFile}`, `--kubelet-client-key=${pki.kubeletClientKeyFile}`,
        '--kubelet-preferred-address-types=InternalIP',
        `--audit-policy-file=${auditPolicyFile}`, `--audit-log-path=${join(logDir, 'audit.log')}`, '--audit-log-format=json',
        '--profiling=false', '--v=1',
      ]);
      const tls = { ca: pki.caPem, cert: pki.admin.certPem, key: pki.admin.keyPem };
      log(`kube-apiserver starting on ${server}`);
      await failFast('kube-apiserver', apiserver, waitForHttp('kube-apiserver /readyz', `${server}/readyz`, tls, 90_000));

      const delegated = [`--kubeconfig=${kubeconfigPath}`, `--authentication-kubeconfig=${kubeconfigPath}`, `--authorization-kubeconfig=${kubeconfigPath}`];
      const cm = startComponent('kube-controller-manager', [
        ...delegated, '--bind-address=127.0.0.1', `--secure-port=${cmPort}`, `--cert-dir=${join(dir, 'certs')}`,
        '--leader-elect=false', '--use-service-account-credentials=true',
        `--service-account-private-key-file=${pki.serviceAccountKeyFile}`,
        `--root-ca-file=${pki.caCertFile}`,
        `--cluster-signing-cert-file=${pki.caCertFile}`, `--cluster-signing-key-file=${pki.caKeyFile}`,
        '--v=1',
      ]);
      const scheduler = startComponent('kube-scheduler', [
        ...delegated, '--bind-address=127.0.0.1', `--secure-port=${schedPort}`, '--leader-elect=false', '--v=1',
      ]);
      log('kube-controller-manager and kube-scheduler starting');
      await Promise.all([
        failFast('kube-controller-manager', cm, waitForHttp('kube-controller-manager /healthz', `https://127.0.0.1:${cmPort}/healthz`, { insecure: true }, 60_000)),
        failFast('kube-scheduler', scheduler, waitForHttp('kube-scheduler /healthz', `https://127.0.0.1:${schedPort}/healthz`, { insecure: true }, 60_000)),
      ]);
      return plane;
    } catch (err) {
      await plane.stop();
      throw err;
    }
  }

  private stopping = false;

  /** Stops components in reverse start order, each with SIGTERM then SIGKILL. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const proc of [...this.processes].reverse()) await proc.stop(5000);
  }

  /** Components still running (after stop(): none, or something leaked). */
  runningComponents(): string[] {
    return this.processes.filter((p) => p.running).map((p) => p.name);
  }

  /** Components that died while the plane was supposed to be running. */
  deadComponents(): string[] {
    return this.processes.filter((p) => !p.running).map((p) => p.name);
  }
}
