// The Python with PyTorch that bench/kernels.ts compares against: a virtual environment under
// ~/.cache/tessera/torch-venv (TESSERA_TORCH_VENV overrides), set up on first use with
// `pip install torch numpy` from PyPI, checked by one CPU forward/backward step, and reused.
//
// Why the full install: PyPI's Linux x86_64 torch wheel is the CUDA build and pulls the
// nvidia-* packages (torch 2.15.0: 539 MB wheel, ~5.3 GB installed, ~2 minutes here). A CPU-only
// install (torch --no-deps plus its pure-Python deps, 1.4 GB) does not import: torch/__init__.py
// preloads the CUDA libraries and raises "libcublasLt.so.*[0-9] not found". The CPU-only wheels
// are on download.pytorch.org, which this machine cannot reach.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface TorchPython {
  python: string;
  version: string;
}

/** Written only after the check step passed: its presence means the venv is usable. */
const READY = '.tessera-ready';
const INSTALL_TIMEOUT_MS = 40 * 60_000;
const LOCK_WAIT_MS = 45 * 60_000;

/** Imports torch and runs one small forward/backward/AdamW step on the CPU; prints the version. */
const CHECK = [
  'import torch',
  'm = torch.nn.Linear(64, 64)',
  'opt = torch.optim.AdamW(m.parameters())',
  'loss = m(torch.randn(8, 64)).pow(2).mean()',
  'loss.backward()',
  'opt.step()',
  'assert torch.isfinite(loss).item()',
  'print(torch.__version__)',
].join('\n');

export function torchVenvDir(): string {
  return process.env.TESSERA_TORCH_VENV ?? join(homedir(), '.cache', 'tessera', 'torch-venv');
}

function lastLine(s: string | null | undefined): string {
  return (s ?? '').trim().split('\n').at(-1)?.trim() ?? '';
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Holds a lock directory while `fn` runs, so two benchmarks started together do not pip-install
 * into one venv at once. A lock older than the longest install is a crashed run's and is taken over.
 */
function withLock<T>(lock: string, fn: () => T): T {
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let age = 0;
      try {
        age = Date.now() - statSync(lock).mtimeMs;
      } catch {
        continue; // released between the two calls
      }
      if (age > INSTALL_TIMEOUT_MS) rmSync(lock, { recursive: true, force: true });
      else if (Date.now() - started > LOCK_WAIT_MS) throw new Error(`waited ${LOCK_WAIT_MS / 60_000} minutes for ${lock}, held by another setup`);
      else sleepSync(2000);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function check(python: string): TorchPython | string {
  const run = spawnSync(python, ['-c', CHECK], { encoding: 'utf8', timeout: 300_000 });
  if (run.error) return `${python} did not run: ${run.error.message}`;
  if (run.status !== 0) return `import torch or a CPU step failed: ${lastLine(run.stderr) || `exit ${run.status}`}`;
  return { python, version: lastLine(run.stdout) };
}

/**
 * The venv's python with a working torch, installing it the first time; or why there is none
 * (the bench prints it as "unavailable (…)"). `log` receives one line per setup stage.
 */
export function torchPython(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): TorchPython | string {
  const dir = torchVenvDir();
  const python = join(dir, 'bin', 'python');
  const ready = join(dir, READY);
  if (existsSync(ready) && existsSync(python)) return { python, version: readFileSync(ready, 'utf8').trim() };

  mkdirSync(join(dir, '..'), { recursive: true });
  try {
    return withLock(`${dir}.lock`, () => {
      if (existsSync(ready) && existsSync(python)) return { python, version: readFileSync(ready, 'utf8').trim() };
      log(`PyTorch: setting up ${dir} once (pip install torch numpy from PyPI: ~5 GB with the CUDA libraries its Linux wheel requires)`);
      if (!existsSync(python)) {
        const venv = spawnSync('python3', ['-m', 'venv', dir], { encoding: 'utf8' });
        if (venv.error || venv.status !== 0) return `python3 -m venv ${dir} failed: ${venv.error?.message ?? lastLine(venv.stderr)}`;
      }
      const t0 = performance.now();
      const pip = spawnSync(python, ['-m', 'pip', 'install', '--quiet', 'torch', 'numpy'], { encoding: 'utf8', timeout: INSTALL_TIMEOUT_MS });
      if (pip.error || pip.status !== 0) return `pip install torch failed: ${pip.error?.message ?? lastLine(pip.stderr)}`;
      const ok = check(python);
      if (typeof ok === 'string') return ok;
      writeFileSync(ready, `${ok.version}\n`);
      log(`PyTorch: torch ${ok.version} installed and checked in ${Math.round((performance.now() - t0) / 1000)} s`);
      return ok;
    });
  } catch (err) {
    return (err as Error).message;
  }
}
