// The main thread's handle on the engine thread: submits sequences, routes their token events
// back to whoever asked, and bounds the queue. A request waits in the queue until all its
// sequences are admitted to a batch; with maxQueue requests waiting, the next is refused
// (QueueFullError → HTTP 429), so overload sheds work at the door instead of growing latency.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { AdapterPack } from './adapter-pack.js';
import { packBuffers } from './adapter-pack.js';
import type { EngineEvent, EngineLimits, FinishReason, SequenceSpec } from './engine-core.js';
import type { EngineThreadData, FromEngine, ToEngine } from './engine-protocol.js';

export interface EngineOptions {
  modelDir: string;
  limits: EngineLimits & { maxQueue: number };
  intraOpThreads?: number;
  /** The pack to serve from the start (transferred: the caller must not use its arrays after). */
  pack?: AdapterPack | null;
}

export interface SequenceHandlers {
  onStart?(): void;
  onToken(token: number): void;
  onFinish(reason: FinishReason, message?: string): void;
}

export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

export class EngineUnavailableError extends Error {
  override name = 'EngineUnavailableError';
}

interface Pending {
  handlers: SequenceHandlers;
  /** The request this sequence belongs to, for queue accounting. */
  request: { unstarted: number };
  started: boolean;
}

export class ServingEngine {
  private readonly sequences = new Map<number, Pending>();
  private nextId = 1;
  private queuedRequests = 0;
  private dead: string | undefined;
  private runningSequences = 0;
  /** Settles when the thread has exited, whenever that was (close() may come after a crash). */
  private readonly exited: Promise<void>;

  private constructor(private readonly worker: Worker, private readonly maxQueue: number) {
    this.exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  }

  /** Starts the engine thread and waits until the model is loaded and its sessions built. */
  static async start(opts: EngineOptions): Promise<ServingEngine> {
    const data: EngineThreadData = { modelDir: opts.modelDir, limits: opts.limits, pack: opts.pack ?? null, ...(opts.intraOpThreads === undefined ? {} : { intraOpThreads: opts.intraOpThreads }) };
    const worker = spawnEngineThread(data, opts.pack ? packBuffers(opts.pack) : []);
    const engine = new ServingEngine(worker, opts.limits.maxQueue);
    // Until ready, a message, error or exit settles the start; after it, they go to the engine.
    let settle: { resolve: () => void; reject: (err: Error) => void } | undefined;
    const starting = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    worker.on('message', (m: FromEngine) => {
      if (settle) {
        if (m.type === 'ready') settle.resolve();
        if (m.type === 'fatal') settle.reject(new EngineUnavailableError(m.message));
        return;
      }
      engine.onMessage(m);
    });
    worker.on('error', (err) => (settle ? settle.reject(err) : engine.fail(`the engine thread failed: ${err.message}`)));
    worker.on('exit', (code) => (settle ? settle.reject(new EngineUnavailableError(`the engine thread exited with code ${code} before it was ready`)) : engine.fail(`the engine thread exited with code ${code}`)));
    try {
      await starting;
    } catch (err) {
      await worker.terminate();
      throw err;
    } finally {
      settle = undefined;
    }
    // Only sequences in flight keep the process alive, not an idle engine: a replica whose
    // HTTP server failed to start must still exit.
    worker.unref();
    return engine;
  }

  /** False once the engine thread has died; /health then answers 503. */
  get alive(): boolean {
    return this.dead === undefined;
  }

  /** Requests waiting for a batch. */
  get queued(): number {
    return this.queuedRequests;
  }

  /** Sequences in the running batch. */
  get running(): number {
    return this.runningSequences;
  }

  /** Serves this pack from the next batch on; its arrays are transferred. */
  setPack(pack: AdapterPack | null): void {
    this.post({ type: 'pack', pack }, pack ? packBuffers(pack) : []);
  }

  /**
   * Queues the sequences of one request (all or none) and returns their ids.
   * Throws QueueFullError when maxQueue requests are already waiting.
   */
  submit(seqs: ReadonlyArray<Omit<SequenceSpec, 'id'>>, handlers: (i: number) => SequenceHandlers): number[] {
    if (this.dead !== undefined) throw new EngineUnavailableError(this.dead);
    if (this.queuedRequests >= this.maxQueue) throw new QueueFullError(`the server's queue is full (${this.maxQueue} requests waiting); retry later`);
    const request = { unstarted: seqs.length };
    this.queuedRequests += 1;
    const specs = seqs.map((s, i): SequenceSpec => {
      const id = this.nextId++;
      this.sequences.set(id, { handlers: handlers(i), request, started: false });
      return { ...s, id };
    });
    this.post({ type: 'submit', seqs: specs });
    this.worker.ref();
    return specs.map((s) => s.id);
  }

  /** Stops sequences early (client gone, stop string seen); each still gets onFinish('cancelled') unless already finished. */
  cancel(ids: readonly number[]): void {
    const live = ids.filter((id) => this.sequences.has(id));
    if (live.length > 0 && this.dead === undefined) this.post({ type: 'cancel', ids: live });
  }

  async close(): Promise<void> {
    if (this.dead === undefined) {
      this.post({ type: 'stop' });
      this.dead = 'the engine is stopped';
    }
    // A thread stuck in a long run gets five seconds, then is terminated.
    const timer = setTimeout(() => void this.worker.terminate(), 5_000);
    await this.exited;
    clearTimeout(timer);
    this.failAll('the engine is stopped');
  }

  private post(m: ToEngine, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(m, transfer);
  }

  private onMessage(m: FromEngine): void {
    if (m.type === 'fatal') return this.fail(m.message);
    if (m.type !== 'events') return;
    for (const e of m.events) this.dispatch(e);
  }

  private dispatch(e: EngineEvent): void {
    const p = this.sequences.get(e.id);
    if (!p) return;
    try {
      this.deliver(p, e);
    } catch (err) {
      // A handler that throws ends its own sequence, not the replica.
      if (!this.sequences.delete(e.id)) return;
      if (p.started) this.runningSequences -= 1;
      else this.leaveQueue(p);
      if (this.dead === undefined && e.kind !== 'finished') this.post({ type: 'cancel', ids: [e.id] });
      try {
        p.handlers.onFinish('error', `handling the sequence's ${e.kind} event failed: ${err instanceof Error ? err.message : String(err)}`);
      } catch {
        // nothing more to tell it
      }
    }
  }

  private deliver(p: Pending, e: EngineEvent): void {
    switch (e.kind) {
      case 'started':
        p.started = true;
        this.runningSequences += 1;
        this.leaveQueue(p);
        p.handlers.onStart?.();
        break;
      case 'token':
        p.handlers.onToken(e.token);
        break;
      case 'finished':
        this.sequences.delete(e.id);
        if (this.sequences.size === 0) this.worker.unref();
        // A sequence cancelled (or refused) while waiting leaves the queue without running.
        if (p.started) this.runningSequences -= 1;
        else this.leaveQueue(p);
        p.handlers.onFinish(e.reason, e.message);
        break;
    }
  }

  private leaveQueue(p: Pending): void {
    p.request.unstarted -= 1;
    if (p.request.unstarted === 0) this.queuedRequests -= 1;
  }

  private fail(message: string): void {
    if (this.dead === undefined) this.dead = message;
    this.failAll(message);
  }

  private failAll(message: string): void {
    const all = [...this.sequences.values()];
    this.sequences.clear();
    this.queuedRequests = 0;
    this.runningSequences = 0;
    for (const p of all) p.handlers.onFinish('error', message);
  }
}

/**
 * The thread runs engine-thread.js next to this file. Under tsx (tests, benches) the sources are
 * .ts and a worker does not inherit tsx's loader, so a small bootstrap registers it first.
 */
function spawnEngineThread(data: EngineThreadData, transfer: ArrayBuffer[]): Worker {
  const options = { workerData: data, transferList: transfer };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./engine-thread.js', import.meta.url), options);
  // createRequire, not import.meta.resolve: tsx may run this file as CommonJS, where it has none.
  const tsx = tsxEsmApi();
  const entry = new URL('./engine-thread.ts', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((m) => m.register()).then(() => import(${JSON.stringify(entry)}))`, { ...options, eval: true });
}

/**
 * The ESM build of tsx's register API, read from its package exports: this file may itself run
 * as CommonJS under tsx (mocha requires it), where import.meta.resolve is missing and require
 * would pick the CommonJS build, whose register() cannot find its own ESM half.
 */
function tsxEsmApi(): string {
  const pkgFile = createRequire(import.meta.url).resolve('tsx/package.json');
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { exports?: Record<string, { import?: { default?: string } } | string> };
  const entry = pkg.exports?.['./esm/api'];
  const rel = typeof entry === 'object' ? entry.import?.default : undefined;
  if (!rel) throw new Error(`${pkgFile}: no "./esm/api" import export; cannot start the engine thread from TypeScript sources`);
  return pathToFileURL(join(dirname(pkgFile), rel)).href;
}
