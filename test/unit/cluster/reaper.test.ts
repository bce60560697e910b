// The reaper: what a killed harness leaves behind dies with it, and nothing else does.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../cluster/probe.js';
import { RUN_ENV } from '../../cluster/process.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('the run reaper', () => {
  let runDir: string;

  beforeEach(async () => {
    runDir = await mkdtemp(join(tmpdir(), 'tessera-reaper-'));
  });
  afterEach(async () => {
    await rm(runDir, { recursive: true, force: true });
  });

  it('kills the processes of a run whose harness was SIGKILLed, and spares another run\'s', async () => {
    // A bystander from another run: same marker variable, different folder.
    const bystander = spawn('sleep', ['300'], { detached: true, stdio: 'ignore', env: { ...process.env, [RUN_ENV]: `${runDir}-other` } });
    const harness = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'doomed-harness.ts'), runDir], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const [line] = (await once(harness.stdout, 'data')) as [Buffer];
      const podPid = Number(line.toString().trim());
      assert.ok(podPid > 0 && alive(podPid), `the harness started a pod process (${line.toString().trim()})`);

      harness.kill('SIGKILL');
      await waitFor(`pod process ${podPid} to be reaped`, async () => !alive(podPid), 10_000, 100);
      assert.ok(bystander.pid !== undefined && alive(bystander.pid), 'a process of another run survives');
    } finally {
      harness.kill('SIGKILL');
      bystander.kill('SIGKILL');
    }
  });
});
