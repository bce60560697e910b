// One container as a local process group: its own mount namespace when the pod has volume mounts
// (bind mounts make mountPath real for the process), output in a per-restart log file.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { trackProcessGroup, untrackProcessGroup } from '../process.js';

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

export interface ContainerProcessOptions {
  name: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  mounts: Mount[];
  /** When false (no CAP_SYS_ADMIN), mounts are refused at start rather than silently ignored. */
  mountNamespaces: boolean;
  logDir: string;
}

export interface Terminated {
  exitCode: number;
  signal: string | null;
  startedAt: Date;
  finishedAt: Date;
  reason: string;
  message?: string;
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Bind mounts in two passes, as the kubelet resolves every source on the host: first each source
 * onto a private staging path, then staging onto the targets. Otherwise a target that shadows a
 * later source (an emptyDir on /tmp above a host folder under /tmp) would hide it.
 */
async function mountScript(file: string, mounts: Mount[], cwd: string, staging: string): Promise<void> {
  const lines = ['#!/bin/sh', 'set -e', `mkdir -p ${shellQuote(staging)}`];
  const kinds = await Promise.all(mounts.map(async (m) => (await stat(m.source)).isDirectory()));
  mounts.forEach((m, i) => {
    const stage = shellQuote(`${staging}/${i}`);
    lines.push(kinds[i] ? `mkdir -p ${stage}` : `touch ${stage}`, `mount --bind ${shellQuote(m.source)} ${stage}`);
  });
  mounts.forEach((m, i) => {
    const target = shellQuote(m.target);
    lines.push(kinds[i] ? `mkdir -p ${target}` : `mkdir -p "$(dirname ${target})" && touch ${target}`);
    lines.push(`mount --bind ${shellQuote(`${staging}/${i}`)} ${target}`);
    if (m.readOnly) lines.push(`mount -o remount,bind,ro ${target}`);
  });
  lines.push(`cd ${shellQuote(cwd)}`, 'exec "$@"', '');
  await writeFile(file, lines.join('\n'), { mode: 0o755 });
}

/** Staging folders live on the host's /run (tmpfs) and are removed once the container exits. */
const STAGING_ROOT = '/run/tessera-mounts';

export class ContainerProcess {
  private child: ChildProcess | undefined;
  readonly startedAt = new Date();
  private readonly exit: Promise<Terminated>;
  private resolveExit!: (t: Terminated) => void;

  private constructor(readonly options: ContainerProcessOptions, readonly logFile: string) {
    this.exit = new Promise((r) => (this.resolveExit = r));
  }

  /** Starts the process; a command that cannot start resolves `exited` with exit code 128 and the reason. */
  static async start(options: ContainerProcessOptions, attempt: number): Promise<ContainerProcess> {
    await mkdir(options.logDir, { recursive: true });
    const logFile = join(options.logDir, `${attempt}.log`);
    const proc = new ContainerProcess(options, logFile);
    const [command, ...args] = options.argv;
    if (!command) throw new Error(`container ${options.name} has an empty command`);
    let argv0 = command;
    let staging: string | undefined;
    let argvRest = args;
    if (options.mounts.length > 0) {
      if (!options.mountNamespaces) {
        throw new Error(`container ${options.name} mounts volumes, but this host cannot create mount namespaces (unshare --mount needs CAP_SYS_ADMIN)`);
      }
      const script = join(options.logDir, `mounts-${attempt}.sh`);
      staging = join(STAGING_ROOT, `${randomUUID()}`);
      await mountScript(script, options.mounts, options.cwd, staging);
      argv0 = 'unshare';
      argvRest = ['--mount', '--propagation', 'private', '/bin/sh', script, command, ...args];
    }
    const log = createWriteStream(logFile, { flags: 'a' });
    const child = spawn(argv0, argvRest, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    proc.child = child;
    const pgid = child.pid;
    if (pgid !== undefined) {
      trackProcessGroup(pgid);
      // A container's processes end with its main process, as its PID namespace would make them;
      // a forked helper holding stdout open would otherwise also delay 'close' indefinitely.
      child.on('exit', () => {
        proc.signal('SIGKILL');
        untrackProcessGroup(pgid);
      });
    }
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    let spawnError: Error | undefined;
    child.on('error', (err) => (spawnError = err));
    child.on('close', (code, signal) => {
      log.end();
      // The mounts were private to the container's namespace: on the host these are empty folders.
      if (staging) void rm(staging, { recursive: true, force: true });
      const finishedAt = new Date();
      if (spawnError) {
        proc.resolveExit({ exitCode: 128, signal: null, startedAt: proc.startedAt, finishedAt, reason: 'StartError', message: `cannot start ${command}: ${spawnError.message}` });
        return;
      }
      const exitCode = code ?? 128 + (signal ? signalNumber(signal) : 0);
      proc.resolveExit({ exitCode, signal, startedAt: proc.startedAt, finishedAt, reason: exitCode === 0 ? 'Completed' : 'Error' });
    });
    return proc;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  exited(): Promise<Terminated> {
    return this.exit;
  }

  signal(sig: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // group already gone
    }
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves once the process has exited. */
  async stop(graceMs: number): Promise<Terminated> {
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), Math.max(0, graceMs));
    const result = await this.exit;
    clearTimeout(timer);
    this.signal('SIGKILL');
    return result;
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };
  return numbers[signal] ?? 0;
}
