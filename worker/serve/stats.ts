// Serving statistics, two ways: a sliding window for the status hub (requests/s, generated
// tokens/s, p50/p99 latency over the last minute) and Prometheus metrics on /metrics, with the
// vLLM names the Gateway API Inference Extension scrapes to route LoRA traffic
// (vllm:num_requests_waiting, vllm:num_requests_running, vllm:lora_requests_info).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface StatsSnapshot {
  requestsPerSecond: number;
  tokensPerSecond: number;
  p50LatencyMs: number;
  p99LatencyMs: number;
}

export interface FinishedRequest {
  model: string;
  latencyMs: number;
  promptTokens: number;
  completionTokens: number;
  finishReason: string;
}

/** What the engine and the in-flight requests look like right now, read when metrics are scraped. */
export interface LiveState {
  queuedRequests(): number;
  runningSequences(): number;
  /** Adapter name → sequences running and waiting (base-model requests are not listed). */
  adapterLoad(): { running: string[]; waiting: string[] };
  /** How many adapters can run in one batch (every adapter in the pack: JD slots are all resident). */
  maxLora(): number;
}

export interface ServingStatsOptions {
  windowMs?: number;
  now?: () => number;
}

const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class ServingStats {
  readonly registry = new Registry();
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly startedAt: number;
  private finished: Array<{ at: number; latencyMs: number }> = [];
  private tokens: Array<{ at: number; n: number }> = [];
  private readonly requests: Counter<'model' | 'finish_reason'>;
  private readonly promptTokens: Counter;
  private readonly generationTokens: Counter;
  private readonly latency: Histogram;
  private readonly firstToken: Histogram;

  constructor(live: LiveState, opts: ServingStatsOptions = {}) {
    this.windowMs = opts.windowMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
    const registers = [this.registry];
    this.requests = new Counter({ name: 'tessera_serve_requests_total', help: 'Finished completion requests by model and finish reason.', labelNames: ['model', 'finish_reason'], registers });
    this.promptTokens = new Counter({ name: 'tessera_serve_prompt_tokens_total', help: 'Prompt tokens of finished requests.', registers });
    this.generationTokens = new Counter({ name: 'tessera_serve_generation_tokens_total', help: 'Tokens generated.', registers });
    this.latency = new Histogram({ name: 'tessera_serve_request_latency_seconds', help: 'Time from request to last token.', buckets: LATENCY_BUCKETS, registers });
    this.firstToken = new Histogram({ name: 'tessera_serve_time_to_first_token_seconds', help: 'Time from request to first token.', buckets: LATENCY_BUCKETS, registers });
    new Gauge({ name: 'vllm:num_requests_waiting', help: 'Requests waiting for a batch.', registers, collect() { this.set(live.queuedRequests()); } });
    new Gauge({ name: 'vllm:num_requests_running', help: 'Sequences in the running batch.', registers, collect() { this.set(live.runningSequences()); } });
    new Gauge({
      name: 'vllm:lora_requests_info', help: 'Adapters with running and waiting requests (value: scrape time, as vLLM reports it).',
      labelNames: ['running_lora_adapters', 'waiting_lora_adapters', 'max_lora'], registers,
      collect() {
        this.reset();
        const load = live.adapterLoad();
        this.set({ running_lora_adapters: load.running.join(','), waiting_lora_adapters: load.waiting.join(','), max_lora: String(live.maxLora()) }, Date.now() / 1000);
      },
    });
  }

  /** Tokens as they are generated, so tokens/s follows long requests while they run. */
  tokensGenerated(n: number): void {
    const at = this.now();
    // One entry per 100 ms keeps the window short under heavy load.
    const last = this.tokens[this.tokens.length - 1];
    if (last && at - last.at < 100) last.n += n;
    else this.tokens.push({ at, n });
    this.generationTokens.inc(n);
  }

  firstTokenAfter(ms: number): void {
    this.firstToken.observe(ms / 1000);
  }

  requestFinished(r: FinishedRequest): void {
    this.finished.push({ at: this.now(), latencyMs: r.latencyMs });
    this.requests.inc({ model: r.model, finish_reason: r.finishReason });
    this.promptTokens.inc(r.promptTokens);
    this.latency.observe(r.latencyMs / 1000);
  }

  /** Rates over the window (or the time since start, while shorter); latency percentiles of the requests finished in it. */
  snapshot(): StatsSnapshot {
    const now = this.now();
    const from = now - this.windowMs;
    this.finished = this.finished.filter((f) => f.at > from);
    this.tokens = this.tokens.filter((t) => t.at > from);
    const seconds = Math.max(1, Math.min(this.windowMs, now - this.startedAt)) / 1000;
    const latencies = this.finished.map((f) => f.latencyMs).sort((a, b) => a - b);
    return {
      requestsPerSecond: round(this.finished.length / seconds),
      tokensPerSecond: round(this.tokens.reduce((s, t) => s + t.n, 0) / seconds),
      p50LatencyMs: round(percentile(latencies, 0.5)),
      p99LatencyMs: round(percentile(latencies, 0.99)),
    };
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Nearest-rank percentile of sorted values; 0 for none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] as number;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
