// One container as a local process group: its own mount namespace when the pod has volume mounts
// (bind mounts make mountPath real for the process), output in a per-restart log file.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

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

async function mountScript(file: string, mounts: Mount[], cwd: string): Promise<void> {
  const lines = ['#!/bin/sh', 'set -e'];
  for (const m of mounts) {
    const isDir = (await stat(m.source)).isDirectory();
    lines.push(isDir ? `mkdir -p ${shellQuote(m.target)}` : `mkdir -p "$(dirname ${shellQuote(m.target)})" && touch ${shellQuote(m.target)}`);
    lines.push(`mount --bind ${shellQuote(m.source)} ${shellQuote(m.target)}`);
    if (m.readOnly) lines.push(`mount -o remount,bind,ro ${shellQuote(m.target)}`);
  }
  lines.push(`cd ${shellQuote(cwd)}`, 'exec "$@"', '');
  await writeFile(file, lines.join('\n'), { mode: 0o755 });
}

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
    let argvRest = args;
    if (options.mounts.length > 0) {
      if (!options.mountNamespaces) {
        throw new Error(`container ${options.name} mounts volumes, but this host cannot create mount namespaces (unshare --mount needs CAP_SYS_ADMIN)`);
      }
      const script = join(options.logDir, `mounts-${attempt}.sh`);
      await mountScript(script, options.mounts, options.cwd);
      argv0 = 'unshare';
      argvRest = ['--mount', '--propagation', 'private', '/bin/sh', script, command, ...args];
    }
    const log = createWriteStream(logFile, { flags: 'a' });
    const child = spawn(argv0, argvRest, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    proc.child = child;
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    let spawnError: Error | undefined;
    child.on('error', (err) => (spawnError = err));
    child.on('close', (code, signal) => {
      log.end();
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
