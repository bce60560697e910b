// A Python with NumPy for the reference timings, set up by the bench itself: a virtual
// environment under the Tessera cache (python3 -m venv; pip install numpy from PyPI), created once
// and reused. Nothing is assumed about the system Python beyond python3 and its venv module.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tesseraCacheDir } from '../../worker/modes/task-adapter-cache.js';

export interface NumpyEnv {
  python: string;
  numpyVersion: string;
}

/** The venv's python with NumPy importable, or why there is none (the bench then reports NumPy as unavailable). */
export function numpyPython(log: (line: string) => void = (l) => console.error(l)): NumpyEnv | { unavailable: string } {
  const venv = join(tesseraCacheDir(), 'venvs', 'numpy');
  const python = join(venv, 'bin', 'python');
  const version = (): string | undefined => {
    const r = spawnSync(python, ['-c', 'import numpy; print(numpy.__version__)'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : undefined;
  };
  if (existsSync(python)) {
    const v = version();
    if (v) return { python, numpyVersion: v };
  }
  log(`setting up NumPy in ${venv} (python3 -m venv; pip install numpy), once`);
  const steps: Array<[string, string[]]> = [
    ['python3', ['-m', 'venv', venv]],
    [join(venv, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', 'numpy']],
  ];
  for (const [cmd, args] of steps) {
    const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.error) return { unavailable: `${cmd} ${args.join(' ')}: ${r.error.message}` };
    if (r.status !== 0) return { unavailable: `${cmd} ${args.join(' ')} exited ${r.status}: ${(r.stderr.trim().split('\n').at(-1) ?? '').slice(0, 160)}` };
  }
  const v = version();
  return v ? { python, numpyVersion: v } : { unavailable: `numpy does not import in ${venv} after installing it` };
}
