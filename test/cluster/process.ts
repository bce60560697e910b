// Long-running child processes of the harness: output to a log file, stopped with SIGTERM then
// SIGKILL, and all killed when the harness process exits so no run leaves strays behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';

/**
 * Every process a run starts (control plane components, pod processes, what they fork) carries
 * this variable, set to the run's folder: a pod's command line need not name the folder, so the
 * CI leak check and the reaper (reaper.ts) find a run's processes by their environment instead.
 */
export const RUN_ENV = 'TESSERA_CLUSTER_RUN';

const live = new Set<ChildProcess>();
/** Process groups started elsewhere in the harness (pod containers) that must die with it too. */
const groups = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: signal whole process groups and let the kernel do the rest.
  // A harness killed by a signal never gets here; the reaper covers that case.
  process.on('exit', () => {
    for (const child of live) killGroup(child, 'SIGKILL');
    for (const pgid of groups) signalGroup(pgid, 'SIGKILL');
  });
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // the whole group is already gone
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid !== undefined) signalGroup(child.pid, signal);
}

/** Registers a process group (a detached child's pid) to be SIGKILLed if the harness exits first. */
export function trackProcessGroup(pgid: number): void {
  installExitHook();
  groups.add(pgid);
}

export function untrackProcessGroup(pgid: number): void {
  groups.delete(pgid);
}

export interface ManagedProcessOptions {
  name: string;
  command: string;
  args: readonly string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** The run's folder, exported as RUN_ENV so leak checks can find the process. */
  runDir?: string;
}

export class ManagedProcess {
  readonly name: string;
  readonly logFile: string;
  private readonly child: ChildProcess;
  private readonly log: WriteStream;
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(options: ManagedProcessOptions) {
    installExitHook();
    this.name = options.name;
    this.logFile = options.logFile;
    this.log = createWriteStream(options.logFile, { flags: 'a' });
    // detached puts the child in its own process group, so stop() reaches its descendants too.
    this.child = spawn(options.command, options.args, {
      cwd: options.cwd,
      env: { ...(options.env ?? process.env), ...(options.runDir ? { [RUN_ENV]: options.runDir } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child.stdout?.pipe(this.log, { end: false });
    this.child.stderr?.pipe(this.log, { end: false });
    live.add(this.child);
    this.exited = new Promise((resolveExit) => {
      this.child.on('exit', (code, signal) => {
        live.delete(this.child);
        resolveExit({ code, signal });
      });
      this.child.on('error', (err) => {
        live.delete(this.child);
        this.log.write(`\n[harness] cannot start ${options.command}: ${err.message}\n`);
        resolveExit({ code: 127, signal: null });
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && live.has(this.child);
  }

  /** Resolves when the process exits, with how it ended. */
  wait(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.exited;
  }

  async stop(graceMs = 5000): Promise<void> {
    if (this.running) {
      killGroup(this.child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(this.child, 'SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    // The group may hold children that outlived the leader; make sure none survive.
    killGroup(this.child, 'SIGKILL');
    await new Promise<void>((resolveEnd) => this.log.end(resolveEnd));
  }
}
