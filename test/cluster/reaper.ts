// A watchdog for one run: if the harness process dies without stopping its cluster (SIGKILL, a
// signal Node does not turn into 'exit', a crash of mocha), a detached shell notices and kills
// every process that carries the run's marker (RUN_ENV), pod processes included. In-process
// exit hooks cannot cover that: a killed process runs no code.
import { spawn } from 'node:child_process';
import { RUN_ENV } from './process.js';

/**
 * Polls the harness once a second (sleep is cheaper than a Node process), then kills until no
 * marked process is left: a dying pod may still fork, so it scans a few times. The run folder
 * reaches it through the environment under another name, so neither its command line (pgrep -f)
 * nor its environment (RUN_ENV) makes it look like one of the run's processes.
 */
const SCRIPT = `
while kill -0 "$TESSERA_REAP_PARENT" 2>/dev/null; do sleep 1; done
marker="${RUN_ENV}=$TESSERA_REAP_RUN"
for round in 1 2 3 4 5 6 7 8 9 10; do
  found=
  for f in /proc/[0-9]*/environ; do
    pid=\${f#/proc/}; pid=\${pid%/environ}
    if grep -qzxF -e "$marker" "$f" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null && found=1
    fi
  done
  [ -z "$found" ] && exit 0
  sleep 0.2
done
`;

export interface Reaper {
  /** The cluster stopped cleanly: the watchdog has nothing left to do. */
  stop(): void;
}

export function startReaper(runDir: string): Reaper {
  const child = spawn('/bin/sh', ['-c', SCRIPT], {
    // Its own session: the terminal's Ctrl-C and the harness's group kills must not reach it.
    detached: true,
    stdio: 'ignore',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TESSERA_REAP_PARENT: String(process.pid), TESSERA_REAP_RUN: runDir },
  });
  child.unref();
  child.on('error', () => undefined);
  return {
    stop: () => {
      if (child.pid === undefined || child.exitCode !== null) return;
      try {
        // The group holds the shell and its current sleep.
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}
