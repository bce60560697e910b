// A stand-in for a test process that dies without stopping its cluster: it starts the reaper
// and one detached "pod process" carrying the run marker, prints that process's pid, then waits
// to be killed (reaper.test.ts sends SIGKILL).
import { spawn } from 'node:child_process';
import { RUN_ENV } from '../../cluster/process.js';
import { startReaper } from '../../cluster/reaper.js';

const runDir = process.argv[2];
if (!runDir) throw new Error('usage: doomed-harness.ts RUN_DIR');
startReaper(runDir);
// Detached like a container: its own process group, out of reach of a kill of ours.
const pod = spawn('sleep', ['300'], { detached: true, stdio: 'ignore', env: { ...process.env, [RUN_ENV]: runDir } });
pod.unref();
console.log(String(pod.pid));
setInterval(() => undefined, 1000);
