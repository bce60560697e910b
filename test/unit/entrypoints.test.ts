// The two entry points as real processes: the operator serves its probes and metrics and
// stops cleanly on SIGTERM; a worker fails fast, with a structured reason, on a spec it cannot run.
//
// Processes run as `node --import tsx <file>` rather than `npx tsx <file>`: npx puts npm and
// the tsx launcher between the test and the program, so the signal would go to npm and the
// exit status would be npm's, not the operator's.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { repoRoot } from '../cluster/paths.js';

interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

interface Running {
  child: ChildProcess;
  lines: LogLine[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(file: string, args: readonly string[]): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', file, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: LogLine[] = [];
  let stdoutBuffer = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdoutBuffer += chunk;
    const complete = stdoutBuffer.split('\n');
    stdoutBuffer = complete.pop() ?? '';
    for (const line of complete) if (line.trim()) lines.push(JSON.parse(line) as LogLine);
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, lines, stderr: () => stderr, exited };
}

async function waitForLine(run: Running, what: string, match: (line: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = run.lines.find(match);
    if (found) return found;
    if (run.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no log line ${what} within ${timeoutMs} ms; stdout: ${JSON.stringify(run.lines)}; stderr: ${run.stderr()}`);
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function runToExit(file: string, args: readonly string[]): Promise<{ code: number | null; stderr: string; lines: LogLine[] }> {
  const run = start(file, args);
  const { code } = await withTimeout(run.exited, 30_000, `${file} ${args.join(' ')}`);
  return { code, stderr: run.stderr(), lines: run.lines };
}

describe('tessera-operator entry point', () => {
  let operator: Running;
  let healthPort: number;
  let metricsPort: number;

  before(async () => {
    // Port 0 everywhere: the test may run beside other operators on this machine. No cluster here,
    // so the hub and controllers are off; the integration tests run them on a real control plane.
    operator = start('operator/main.ts', ['--health-probe-bind-address=127.0.0.1:0', '--metrics-bind-address=127.0.0.1:0', '--grpc-bind-address=0', '--log-level=debug']);
    healthPort = Number((await waitForLine(operator, 'serving health probes', (l) => l.server === 'health probes')).port);
    metricsPort = Number((await waitForLine(operator, 'serving metrics', (l) => l.server === 'metrics')).port);
  });

  after(() => {
    if (operator.child.exitCode === null && operator.child.signalCode === null) operator.child.kill('SIGKILL');
  });

  it('logs structured JSON with the options it started with', () => {
    const started = operator.lines.find((l) => l.msg === 'starting tessera-operator');
    assert.ok(started, 'no start line');
    assert.equal(started.level, 'info');
    assert.equal(started.logLevel, 'debug');
    assert.equal(started.leaderElect, false);
    assert.match(String(started.workerImage), /^ghcr\.io\/tessera-dev\/tessera:\d+\.\d+\.\d+/);
  });

  it('says when the status hub and controllers are switched off', () => {
    const warning = operator.lines.find((l) => l.level === 'warn' && /controllers are off/.test(l.msg));
    assert.ok(warning, `no warning about the controllers being off in ${JSON.stringify(operator.lines)}`);
  });

  it('answers /healthz and /readyz with 200', async () => {
    for (const path of ['/healthz', '/readyz']) {
      const res = await fetch(`http://127.0.0.1:${healthPort}${path}`);
      assert.equal(res.status, 200, path);
      assert.equal(await res.text(), 'ok');
    }
    assert.equal((await fetch(`http://127.0.0.1:${healthPort}/nope`)).status, 404);
  });

  it('serves Prometheus default metrics and its build info on /metrics', async () => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const body = await res.text();
    assert.match(body, /^process_cpu_user_seconds_total \d/m);
    assert.match(body, /^nodejs_heap_size_used_bytes \d/m);
    assert.match(body, /^tessera_build_info\{version="\d+\.\d+\.\d+[^"]*"\} 1$/m);
  });

  it('exits 0 after SIGTERM, having closed its servers', async () => {
    operator.child.kill('SIGTERM');
    const { code, signal } = await withTimeout(operator.exited, 15_000, 'shutdown after SIGTERM');
    assert.equal(signal, null, 'the operator should handle SIGTERM, not die of it');
    assert.equal(code, 0, operator.stderr());
    assert.ok(operator.lines.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM'));
    assert.ok(operator.lines.some((l) => l.msg === 'stopped'));
    await assert.rejects(fetch(`http://127.0.0.1:${healthPort}/healthz`));
  });

  it('rejects an unknown log level and lists the valid ones', async () => {
    const { code, stderr } = await runToExit('operator/main.ts', ['--log-level=loud']);
    assert.equal(code, 1);
    assert.match(stderr, /'loud' is invalid/);
    assert.match(stderr, /trace, debug, info, warn, error, fatal/);
  });

  it('rejects a bind address without a port and shows the accepted forms', async () => {
    const { code, stderr } = await runToExit('operator/main.ts', ['--metrics-bind-address=8080']);
    assert.equal(code, 1);
    assert.match(stderr, /invalid bind address "8080": expected HOST:PORT/);
  });
});

describe('tessera-worker entry point', () => {
  it('names a spec file it cannot read, with reason SpecUnreadable and exit code 3', async () => {
    const { code, stderr } = await runToExit('worker/main.ts', ['train', '--spec', '/nonexistent/spec.json']);
    assert.equal(code, 3, stderr);
    const error = JSON.parse(stderr.trim().split('\n').at(-1) ?? '') as LogLine;
    assert.equal(error.reason, 'SpecUnreadable');
    assert.match(error.msg, /cannot read spec file \/nonexistent\/spec\.json/);
  });

  it('fails serve on a spec file that is not a LoRAServer\'s, naming the missing field, with exit code 3', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-spec-'));
    const spec = join(dir, 'spec.json');
    writeFileSync(spec, JSON.stringify({ kind: 'LoRAServer', metadata: { name: 'srv', namespace: 'ns' }, spec: {} }));
    const { code, stderr } = await runToExit('worker/main.ts', ['serve', '--spec', spec]);
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 3, stderr);
    const error = JSON.parse(stderr.trim().split('\n').at(-1) ?? '') as LogLine;
    assert.equal(error.reason, 'SpecInvalid');
    assert.match(error.msg, /has no spec\.baseModel\.uri/);
  });

  /** Runs the worker on a spec file with this content; returns the exit code and the last log line. */
  const runSpec = async (mode: string, content: unknown): Promise<{ code: number | null; stderr: string; error: LogLine }> => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-spec-'));
    const spec = join(dir, 'spec.json');
    writeFileSync(spec, JSON.stringify(content));
    const { code, stderr } = await runToExit('worker/main.ts', [mode, '--spec', spec]);
    rmSync(dir, { recursive: true, force: true });
    return { code, stderr, error: JSON.parse(stderr.trim().split('\n').at(-1) ?? '') as LogLine };
  };

  it('fails train for a setting that is not built yet (a base model over https) with exit code 3 and reason NotImplemented, naming the field, before reading any file', async () => {
    // The base model is the first URI train resolves, so nothing under file:///nowhere is opened.
    // The operator writes an http(s) URI's location as the URL itself; this spec file does the same.
    const model = 'https://models.example/tiny';
    const spec = {
      method: 'lora', baseModel: { uri: model, sha256: 'a'.repeat(64) }, dataset: { uri: 'file:///nowhere.jsonl' }, adapter: { rank: 4 }, training: { steps: 1 },
      output: { uri: 'file:///nowhere-out' },
    };
    const { code, stderr, error } = await runSpec('train', { kind: 'SparseFineTune', spec, locations: { [model]: model } });
    assert.equal(code, 3, stderr);
    assert.equal(error.level, 'error');
    assert.equal(error.reason, 'NotImplemented');
    assert.equal(error.mode, 'train');
    assert.match(error.msg, /spec\.baseModel\.uri: fetching https:\/\/models\.example\/tiny over http\(s\) is not implemented yet/);
  });

  it('fails train on a spec without the fields a SparseFineTune needs, naming one, with exit code 3', async () => {
    const { code, stderr, error } = await runSpec('train', { kind: 'SparseFineTune', spec: { method: 'lora' } });
    assert.equal(code, 3, stderr);
    assert.equal(error.reason, 'SpecInvalid');
    assert.match(error.msg, /spec file .*spec\.json: spec\.baseModel: Expected required property/);
  });

  it('requires --spec and exits 1 when it is missing', async () => {
    const { code, stderr } = await runToExit('worker/main.ts', ['train']);
    assert.equal(code, 1);
    assert.match(stderr, /required option '--spec <file>' not specified/);
  });

  it('rejects an unknown mode and lists the modes it has', async () => {
    const { code, stderr } = await runToExit('worker/main.ts', ['finetune', '--spec', 'x']);
    assert.equal(code, 1);
    assert.match(stderr, /unknown command 'finetune'/);
    for (const mode of ['train', 'compress', 'serve', 'pretrain', 'eval']) assert.match(stderr, new RegExp(`\\b${mode}\\b`));
  });
});
