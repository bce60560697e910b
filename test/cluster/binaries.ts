// Builds the control plane's upstream binaries from the Go module proxy into the cache folder.
// No binary is downloaded: our small Go modules in k8s-tools/, etcd-tools/, helm-tools/ pin the
// releases (k8s-tools adds the replace lines k8s.io/kubernetes needs for its staging modules).
import { access, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { assetsDir, HELM_VERSION, KUBERNETES_VERSION, repoRoot, toolPath, type Tool } from './paths.js';

interface BuildGroup {
  module: string;
  packages: string[];
  tools: Tool[];
  ldflags: string;
}

function versionLdflags(): string {
  const [major, minor] = KUBERNETES_VERSION.replace(/^v/, '').split('.') as [string, string];
  const vars = ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version'].flatMap((pkg) => [
    `-X ${pkg}.gitVersion=${KUBERNETES_VERSION}`,
    `-X ${pkg}.gitMajor=${major}`,
    `-X ${pkg}.gitMinor=${minor}`,
    `-X ${pkg}.gitTreeState=clean`,
  ]);
  return ['-s', '-w', ...vars].join(' ');
}

const GROUPS: BuildGroup[] = [
  {
    module: 'k8s-tools',
    packages: ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'].map((c) => `k8s.io/kubernetes/cmd/${c}`),
    tools: ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'],
    ldflags: versionLdflags(),
  },
  { module: 'etcd-tools', packages: ['.'], tools: ['etcd'], ldflags: '-s -w' },
  {
    module: 'helm-tools',
    packages: ['helm.sh/helm/v3/cmd/helm'],
    tools: ['helm'],
    ldflags: `-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}`,
  },
];

async function exists(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', (err) => reject(new Error(`cannot run ${command}: ${err.message}`, { cause: err })));
    child.on('exit', (code) =>
      code === 0 ? resolveRun() : reject(new Error(`${command} ${args.join(' ')} failed with exit code ${code} in ${cwd}`)),
    );
  });
}

export async function missingTools(): Promise<Tool[]> {
  const all = GROUPS.flatMap((g) => g.tools);
  const present = await Promise.all(all.map((t) => exists(toolPath(t))));
  return all.filter((_, i) => !present[i]);
}

/**
 * Builds whatever is missing (of `only`, when given: a unit test that renders the chart needs helm,
 * not a control plane); a warm Go build cache makes this a link step only.
 * Each group builds into a temp folder and is renamed in, so an interrupted build leaves nothing half-written.
 */
export async function ensureBinaries(log: (message: string) => void = (m) => console.error(m), only?: readonly Tool[]): Promise<string> {
  const dir = assetsDir();
  const missing = new Set((await missingTools()).filter((t) => !only || only.includes(t)));
  if (missing.size === 0) return dir;
  await mkdir(dir, { recursive: true });
  const env = { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false', GOTOOLCHAIN: 'local' };
  for (const group of GROUPS) {
    if (!group.tools.some((t) => missing.has(t))) continue;
    const started = Date.now();
    log(`building ${group.tools.join(', ')} from ${group.module} (first build takes many minutes; cached afterwards)`);
    const tmp = await mkdtemp(join(dir, '.build-'));
    try {
      await run('go', ['build', '-trimpath', '-ldflags', group.ldflags, '-o', `${tmp}/`, ...group.packages], join(repoRoot, 'test', 'cluster', group.module), env);
      for (const tool of group.tools) {
        const built = group.module === 'etcd-tools' ? join(tmp, 'etcd-tools') : join(tmp, tool);
        await rename(built, toolPath(tool));
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    log(`built ${group.tools.join(', ')} in ${Math.round((Date.now() - started) / 1000)} s`);
  }
  return dir;
}
