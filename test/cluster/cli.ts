// npm run cluster -- up | down | kubeconfig | status | build
// `up` starts a background supervisor that owns the control plane and process node; `down` stops it.
import { spawn } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { ensureBinaries } from './binaries.js';
import { LocalCluster } from './local-cluster.js';
import { waitFor } from './probe.js';
import { repoRoot, stateDir } from './paths.js';

interface State {
  pid: number;
  dir: string;
  kubeconfig: string;
  ready: boolean;
  error?: string;
}

const stateFile = (): string => join(stateDir(), 'state.json');
const stableKubeconfig = (): string => join(stateDir(), 'kubeconfig');

function readState(): State | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(), 'utf8')) as State;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function up(gpus: number): Promise<void> {
  const existing = readState();
  if (existing && alive(existing.pid)) {
    console.log(`local cluster already running (pid ${existing.pid}); KUBECONFIG=${stableKubeconfig()}`);
    return;
  }
  mkdirSync(stateDir(), { recursive: true });
  rmSync(stateFile(), { force: true });
  await ensureBinaries((m) => console.error(m));
  const logFile = join(stateDir(), 'supervisor.log');
  const out = openSync(logFile, 'w');
  const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'test', 'cluster', 'cli.ts'), 'supervise', '--gpus', String(gpus)], {
    cwd: repoRoot, detached: true, stdio: ['ignore', out, out],
  });
  closeSync(out);
  child.unref();
  console.error(`starting local control plane (supervisor pid ${child.pid}, log ${logFile})`);
  await waitFor('the local cluster to become ready', async () => {
    const state = readState();
    if (state?.error) throw new Error(state.error);
    if (child.pid !== undefined && !alive(child.pid)) throw new Error(`supervisor exited; see ${logFile}`);
    return state?.ready === true;
  }, 180_000, 500);
  console.log(`local cluster ready: export KUBECONFIG=${stableKubeconfig()}`);
}

async function supervise(gpus: number): Promise<void> {
  const log = (message: string, fields?: Record<string, unknown>): void => console.log(JSON.stringify({ time: new Date().toISOString(), msg: message, ...fields }));
  let cluster: LocalCluster | undefined;
  const write = (state: State): void => writeFileSync(stateFile(), JSON.stringify(state, null, 2));
  try {
    cluster = await LocalCluster.start({ gpus, log });
    copyFileSync(cluster.kubeconfigPath, stableKubeconfig());
    write({ pid: process.pid, dir: cluster.dir, kubeconfig: stableKubeconfig(), ready: true });
  } catch (err) {
    write({ pid: process.pid, dir: '', kubeconfig: '', ready: false, error: err instanceof Error ? err.message : String(err) });
    process.exitCode = 1;
    return;
  }
  const running = cluster;
  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      log('stopping local cluster');
      void running.stop().then(resolveStop, resolveStop);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  rmSync(stateFile(), { force: true });
}

async function down(): Promise<void> {
  const state = readState();
  if (!state || !alive(state.pid)) {
    console.log('no local cluster is running');
    rmSync(stateFile(), { force: true });
    return;
  }
  process.kill(state.pid, 'SIGTERM');
  try {
    await waitFor(`supervisor pid ${state.pid} to exit`, async () => !alive(state.pid), 60_000, 200);
  } catch {
    process.kill(-state.pid, 'SIGKILL');
  }
  rmSync(stateFile(), { force: true });
  console.log('local cluster stopped');
}

const program = new Command('cluster').description('Tessera local Kubernetes control plane (real upstream binaries + process node)');
program.command('up').description('build binaries if needed, start the cluster in the background')
  .option('--gpus <n>', 'nvidia.com/gpu capacity of the process node', '2')
  .action(async (opts: { gpus: string }) => up(Number(opts.gpus)));
program.command('down').description('stop the cluster and every process it started').action(down);
program.command('kubeconfig').description('print the path of the running cluster\'s kubeconfig').action(() => {
  if (!existsSync(stableKubeconfig()) || !readState()) {
    console.error('no local cluster is running: npm run cluster -- up');
    process.exitCode = 1;
    return;
  }
  console.log(stableKubeconfig());
});
program.command('status').description('say whether the cluster runs').action(() => {
  const state = readState();
  console.log(state && alive(state.pid) ? `running (pid ${state.pid}, data ${state.dir})` : 'not running');
});
program.command('build').description('build kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, helm from Go modules')
  .action(async () => console.log(await ensureBinaries((m) => console.error(m))));
program.command('supervise', { hidden: true }).option('--gpus <n>', '', '2').action(async (opts: { gpus: string }) => supervise(Number(opts.gpus)));

await program.parseAsync(process.argv);
