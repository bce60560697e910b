// The batching engine: continuous (iteration-level) batching as Orca and vLLM do it. Each
// step admits waiting sequences in arrival order while the batch has room (maxBatchSize
// sequences, maxBatchTokens tokens per step counting new prompts and one per running sequence,
// kvCacheTokens reserved for prompt plus max_tokens of every running sequence; no preemption),
// prefills them together, then runs one decode step for every running sequence, whatever
// adapter each uses (per-row adapter branches). Finished sequences leave at once and their
// cache columns are reclaimed.
//
// A new adapter pack (a bundle revision rolled out) is switched in between batches: admission
// is strictly first come first served, so when the oldest waiting sequence needs the new pack,
// nothing more is admitted until the running ones finish; then the pack changes. Base-model
// sequences run under any pack (their slots are −1).
import type { AdapterPack, AdapterRoute } from './adapter-pack.js';
import { KvBatch } from './kv-batch.js';
import type { ModelRunner } from './model-runner.js';
import { Sampler, type SamplingParams } from './sampling.js';

export interface SequenceSpec {
  id: number;
  prompt: readonly number[];
  maxTokens: number;
  sampling: SamplingParams;
  /** Ids that end the sequence with finish reason `stop` (kept in the output). */
  stopTokenIds: readonly number[];
  /** The pack whose slots `route` names; null for the base model, which every pack serves. */
  packId: string | null;
  route: AdapterRoute;
}

export type FinishReason = 'stop' | 'length' | 'cancelled' | 'error';

export type EngineEvent =
  | { kind: 'started'; id: number }
  | { kind: 'token'; id: number; token: number }
  | { kind: 'finished'; id: number; reason: FinishReason; message?: string };

export interface EngineLimits {
  maxBatchSize: number;
  maxBatchTokens: number;
  kvCacheTokens: number;
}

interface Row {
  spec: SequenceSpec;
  sampler: Sampler;
  generated: number;
  last: number;
  done: FinishReason | null;
}

export class EngineCore {
  private readonly waiting: SequenceSpec[] = [];
  private active: Row[] = [];
  private readonly cancelled = new Set<number>();
  private readonly packErrors = new Map<string, string>();
  private pending: { pack: AdapterPack | null } | undefined;
  private kv: KvBatch;
  private events: EngineEvent[] = [];

  constructor(
    private readonly runner: ModelRunner,
    private readonly limits: EngineLimits,
    private readonly emit: (events: EngineEvent[]) => void,
  ) {
    const c = runner.config;
    this.kv = new KvBatch({ layers: c.numHiddenLayers, kvHeads: c.numKeyValueHeads, headDim: c.headDim });
  }

  /** Sequences admitted and not finished. */
  get running(): number {
    return this.active.length;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** True while there is anything to do: waiting or running sequences, or a pack to switch in. */
  get busy(): boolean {
    return this.waiting.length > 0 || this.active.length > 0 || this.pending !== undefined;
  }

  /** The pack to serve from the next batch on; sequences for it wait until it is in. */
  setPack(pack: AdapterPack | null): void {
    this.pending = { pack };
  }

  submit(seq: SequenceSpec): void {
    this.waiting.push(seq);
  }

  cancel(id: number): void {
    this.cancelled.add(id);
  }

  /** One iteration: admit and prefill, then one decode step for the batch. */
  async step(): Promise<void> {
    try {
      this.applyCancellations();
      this.compact();
      if (this.pending && this.active.length === 0) {
        const { pack } = this.pending;
        this.pending = undefined;
        // On failure the runner keeps the previous pack: base-model sequences go on, and those
        // for the failed pack end with this error when they reach the head of the queue.
        await this.runner.usePack(pack).catch((err: unknown) => {
          this.packErrors.set(pack?.id ?? '', err instanceof Error ? err.message : String(err));
        });
      }
      const admitted = this.admit();
      if (admitted.length > 0) await this.prefill(admitted);
      this.compact();
      if (this.active.length > 0) await this.decode();
      this.compact();
    } catch (err) {
      // A failed run leaves the cache unknown: every running sequence ends, the engine lives on.
      const message = err instanceof Error ? err.message : String(err);
      for (const row of this.active) if (!row.done) this.finish(row, 'error', message);
      this.active = [];
      const c = this.runner.config;
      this.kv = new KvBatch({ layers: c.numHiddenLayers, kvHeads: c.numKeyValueHeads, headDim: c.headDim });
    } finally {
      const events = this.events;
      this.events = [];
      if (events.length > 0) this.emit(events);
    }
  }

  private applyCancellations(): void {
    if (this.cancelled.size === 0) return;
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const seq = this.waiting[i] as SequenceSpec;
      if (this.cancelled.has(seq.id)) {
        this.waiting.splice(i, 1);
        this.events.push({ kind: 'finished', id: seq.id, reason: 'cancelled' });
      }
    }
    for (const row of this.active) if (!row.done && this.cancelled.has(row.spec.id)) this.finish(row, 'cancelled');
    this.cancelled.clear();
  }

  private admit(): Row[] {
    const out: Row[] = [];
    const currentPack = this.runner.pack?.id ?? null;
    let prefillTokens = 0;
    let reserved = this.active.reduce((n, r) => n + r.spec.prompt.length + r.spec.maxTokens, 0);
    while (this.waiting.length > 0 && this.active.length + out.length < this.limits.maxBatchSize) {
      const seq = this.waiting[0] as SequenceSpec;
      if (seq.packId !== null && seq.packId !== currentPack) {
        if (this.pending?.pack?.id === seq.packId) break; // in once the running sequences finish
        this.waiting.shift();
        const why = this.packErrors.get(seq.packId) ?? 'it is no longer served';
        this.events.push({ kind: 'finished', id: seq.id, reason: 'error', message: `adapter set ${seq.packId || '(raw adapters only)'} cannot be used: ${why}` });
        continue;
      }
      const first = out.length === 0 && this.active.length === 0;
      const tokens = seq.prompt.length;
      const need = tokens + seq.maxTokens;
      // The step also decodes one token for every running sequence.
      const stepTokens = prefillTokens + tokens + this.active.length;
      if (!first && (stepTokens > this.limits.maxBatchTokens || reserved + need > this.limits.kvCacheTokens)) break;
      this.waiting.shift();
      prefillTokens += tokens;
      reserved += need;
      out.push({ spec: seq, sampler: new Sampler(seq.sampling), generated: 0, last: 0, done: null });
      this.events.push({ kind: 'started', id: seq.id });
    }
    return out;
  }

  private async prefill(rows: Row[]): Promise<void> {
    const logits = await this.runner.prefill(rows.map((r) => r.spec.prompt), rows.map((r) => r.spec.route), this.kv);
    this.active.push(...rows);
    rows.forEach((row, i) => this.accept(row, logits, i));
  }

  private async decode(): Promise<void> {
    const rows = this.active;
    const logits = await this.runner.decode(
      rows.map((r) => r.last),
      rows.map((r) => r.spec.prompt.length + r.generated - 1),
      rows.map((r) => r.spec.route),
      this.kv,
    );
    rows.forEach((row, i) => this.accept(row, logits, i));
  }

  /** Samples row `i` of the logits for `row` and decides whether it is finished. */
  private accept(row: Row, logits: Float32Array, i: number): void {
    if (row.done) return;
    const vocab = this.runner.config.vocabSize;
    const token = row.sampler.sample(logits, i, vocab);
    row.generated += 1;
    row.last = token;
    this.events.push({ kind: 'token', id: row.spec.id, token });
    if (row.spec.stopTokenIds.includes(token)) this.finish(row, 'stop');
    else if (row.generated >= row.spec.maxTokens) this.finish(row, 'length');
    // The next decode would feed a position past the RoPE table.
    else if (row.spec.prompt.length + row.generated >= this.runner.config.maxPositionEmbeddings) this.finish(row, 'length');
  }

  private finish(row: Row, reason: FinishReason, message?: string): void {
    row.done = reason;
    this.events.push({ kind: 'finished', id: row.spec.id, reason, ...(message === undefined ? {} : { message }) });
  }

  /** Drops finished rows from the batch and their cache. */
  private compact(): void {
    if (this.active.every((r) => !r.done)) return;
    const keep: number[] = [];
    this.active.forEach((r, i) => {
      if (!r.done) keep.push(i);
    });
    this.kv.keep(keep);
    this.active = keep.map((i) => this.active[i] as Row);
  }
}
