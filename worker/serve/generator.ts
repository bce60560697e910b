// One OpenAI request on the engine: its prompts × n choices become sequences; tokens come back
// as text deltas (incremental detokenization, stop strings held back and cut), and the request
// ends with each choice's text, finish reason and token counts. The OpenAI shapes are the
// routes' business (completions.ts); this is the mechanics both routes share.
import { BASE_ROUTE } from './adapter-pack.js';
import type { FinishReason } from './engine-core.js';
import type { ServingEngine } from './engine.js';
import { type Decoder, IncrementalDetokenizer, StopMatcher } from './detokenizer.js';
import type { SamplingParams } from './sampling.js';
import type { ModelTarget } from './serving-adapters.js';
import type { ServingStats } from './stats.js';

export type ChoiceFinish = 'stop' | 'length';

export interface GenerationRequest {
  /** The `model` as the client named it (metrics label). */
  model: string;
  target: ModelTarget;
  prompts: ReadonlyArray<readonly number[]>;
  n: number;
  maxTokens: number;
  sampling: SamplingParams;
  stop: readonly string[];
  ignoreEos: boolean;
}

export interface ChoiceDelta {
  /** prompt index · n + choice: OpenAI's numbering. */
  index: number;
  text: string;
  finishReason: ChoiceFinish | null;
}

export interface GenerationResult {
  choices: Array<{ index: number; text: string; finishReason: ChoiceFinish }>;
  promptTokens: number;
  completionTokens: number;
}

export interface GenerateOptions {
  onDelta?: (d: ChoiceDelta) => void;
  /** Aborting (the client went away) cancels every sequence; the promise then rejects. */
  signal?: AbortSignal;
}

export class GenerationError extends Error {
  override name = 'GenerationError';
}

export class GenerationAborted extends Error {
  override name = 'GenerationAborted';
}

interface Choice {
  index: number;
  started: boolean;
  text: string;
  tokens: number;
  finish: ChoiceFinish | null;
  detok: IncrementalDetokenizer;
  stopper: StopMatcher;
}

export class Generator {
  private readonly load = new Map<string, { running: number; waiting: number }>();

  constructor(
    private readonly engine: ServingEngine,
    private readonly tokenizer: Decoder,
    private readonly stopTokenIds: readonly number[],
    private readonly stats: ServingStats,
  ) {}

  /** Adapters with running and waiting sequences, for vllm:lora_requests_info. */
  adapterLoad(): { running: string[]; waiting: string[] } {
    const running: string[] = [];
    const waiting: string[] = [];
    for (const [name, l] of this.load) {
      if (l.running > 0) running.push(name);
      if (l.waiting > 0) waiting.push(name);
    }
    return { running: running.sort(), waiting: waiting.sort() };
  }

  /** Throws QueueFullError synchronously (nothing queued) when the engine's queue is full, so a route can still answer 429. */
  run(req: GenerationRequest, opts: GenerateOptions = {}): Promise<GenerationResult> {
    const started = Date.now();
    const choices: Choice[] = [];
    const seqs = req.prompts.flatMap((prompt, p) => Array.from({ length: req.n }, (_, j) => {
      choices.push({ index: p * req.n + j, started: false, text: '', tokens: 0, finish: null, detok: new IncrementalDetokenizer(this.tokenizer), stopper: new StopMatcher(req.stop) });
      return {
        prompt,
        maxTokens: req.maxTokens,
        // Distinct seeds per choice, or n > 1 with a seed would give n equal answers.
        sampling: { ...req.sampling, seed: req.sampling.seed === null ? null : req.sampling.seed + j },
        stopTokenIds: req.ignoreEos ? [] : this.stopTokenIds,
        packId: req.target.kind === 'adapter' ? req.target.packId : null,
        route: req.target.kind === 'adapter' ? req.target.route : BASE_ROUTE,
      };
    }));
    const adapter = req.target.kind === 'adapter' ? req.target.name : null;
    // Set once the sequences are queued; a refused request leaves no trace.
    let load: { running: number; waiting: number } | undefined;

    let resolve!: (r: GenerationResult) => void;
    let reject!: (err: Error) => void;
    const result = new Promise<GenerationResult>((res, rej) => ([resolve, reject] = [res, rej]));
    let remaining = choices.length;
    let firstToken = true;
    let failure: Error | undefined;
    const emit = (c: Choice, text: string): void => {
      if (text.length === 0) return;
      c.text += text;
      opts.onDelta?.({ index: c.index, text, finishReason: null });
    };
    const close = (c: Choice, finish: ChoiceFinish): void => {
      c.finish = finish;
      opts.onDelta?.({ index: c.index, text: '', finishReason: finish });
    };
    const done = (): void => {
      if (--remaining > 0) return;
      opts.signal?.removeEventListener('abort', onAbort);
      if (failure) return reject(failure);
      const completionTokens = choices.reduce((n, c) => n + c.tokens, 0);
      const promptTokens = req.prompts.reduce((n, p) => n + p.length, 0);
      const finishReason = choices.every((c) => c.finish === 'length') ? 'length' : 'stop';
      this.stats.requestFinished({ model: req.model, latencyMs: Date.now() - started, promptTokens, completionTokens, finishReason });
      resolve({ choices: choices.map((c) => ({ index: c.index, text: c.text, finishReason: c.finish as ChoiceFinish })), promptTokens, completionTokens });
    };

    const ids = this.engine.submit(seqs, (i) => {
      const c = choices[i] as Choice;
      return {
        onStart: () => {
          c.started = true;
          if (load) [load.waiting, load.running] = [load.waiting - 1, load.running + 1];
        },
        onToken: (token) => {
          if (c.finish) return; // tokens already in flight when a stop string ended the choice
          c.tokens += 1;
          this.stats.tokensGenerated(1);
          if (firstToken) {
            firstToken = false;
            this.stats.firstTokenAfter(Date.now() - started);
          }
          const out = c.stopper.push(c.detok.push(token));
          emit(c, out.text);
          if (out.stop) {
            close(c, 'stop');
            this.engine.cancel([ids[i] as number]);
          }
        },
        onFinish: (reason: FinishReason, message?: string) => {
          if (load) {
            if (c.started) load.running -= 1;
            else load.waiting -= 1;
            this.dropIdle(adapter as string);
          }
          if (!c.finish) {
            if (reason === 'error') failure ??= new GenerationError(message ?? 'the engine failed this sequence');
            else if (reason === 'cancelled') failure ??= new GenerationAborted('the request was cancelled');
            else {
              emit(c, c.stopper.push(c.detok.flush()).text + c.stopper.flush());
              close(c, reason === 'stop' ? 'stop' : 'length');
            }
          }
          done();
        },
      };
    });
    if (adapter !== null) {
      load = this.loadOf(adapter);
      load.waiting += seqs.length;
    }
    const onAbort = (): void => this.engine.cancel(ids);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.signal?.aborted) onAbort();
    return result;
  }

  private loadOf(name: string): { running: number; waiting: number } {
    let l = this.load.get(name);
    if (!l) this.load.set(name, (l = { running: 0, waiting: 0 }));
    return l;
  }

  private dropIdle(name: string): void {
    const l = this.load.get(name);
    if (l && l.running <= 0 && l.waiting <= 0) this.load.delete(name);
  }
}
