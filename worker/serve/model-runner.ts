// The model as the engine runs it: a prefill and a decode session per graph signature (which
// modules have per-row adapter branches), the base weights baked in as initializers, and the
// adapter pack fed as inputs. A new bundle revision with the same modules reuses the sessions;
// only a new module set builds new ones. Sessions of at most two signatures are kept, since
// each holds its own copy of the weights.
import { buildDecodeGraph, buildPrefillGraph, type LlamaConfig, MULTI_LORA_ROWS, prefillFeeds, type WeightMap } from '../model/llama/index.js';
import * as nn from '../onnx/index.js';
import { type Session, SessionCache, type SessionOptions } from '../onnx/session.js';
import { type AdapterPack, type AdapterRoute, packFeeds, packSignature } from './adapter-pack.js';
import { KvBatch } from './kv-batch.js';

export interface ModelRunnerOptions {
  config: LlamaConfig;
  weights: WeightMap;
  session?: SessionOptions;
}

interface Sessions {
  prefill: Session;
  decode: Session;
  jd: boolean;
  gather: boolean;
}

const KEEP_SIGNATURES = 2;

export class ModelRunner {
  private readonly cache: SessionCache;
  private readonly bySignature = new Map<string, Promise<Sessions>>();
  private current: { sessions: Sessions; feeds: Record<string, nn.Tensor>; pack: AdapterPack | null } | undefined;

  constructor(private readonly opts: ModelRunnerOptions) {
    this.cache = new SessionCache(opts.session ?? {});
  }

  get config(): LlamaConfig {
    return this.opts.config;
  }

  get pack(): AdapterPack | null {
    return this.current?.pack ?? null;
  }

  /** Serves this pack from the next run on (null or empty: the base model alone). Call only between batches. */
  async usePack(pack: AdapterPack | null): Promise<void> {
    const sig = pack ? packSignature(pack) : { jd: [], gather: [] };
    const key = JSON.stringify(sig);
    let sessions = this.bySignature.get(key);
    if (!sessions) {
      sessions = this.build(sig.jd, sig.gather);
      this.bySignature.set(key, sessions);
      sessions.catch(() => this.bySignature.delete(key));
    } else {
      // Map order is the LRU order: most recently used last.
      this.bySignature.delete(key);
      this.bySignature.set(key, sessions);
    }
    const ready = await sessions;
    this.current = { sessions: ready, feeds: pack ? packFeeds(pack) : {}, pack };
    while (this.bySignature.size > KEEP_SIGNATURES) {
      const [oldest, old] = this.bySignature.entries().next().value as [string, Promise<Sessions>];
      this.bySignature.delete(oldest);
      const s = await old.catch(() => undefined);
      if (s) await Promise.all([s.prefill.dispose(), s.decode.dispose()]);
    }
  }

  /** Logits [rows, vocab] of each prompt's last position; the caches join `kv`. */
  async prefill(prompts: readonly (readonly number[])[], routes: readonly AdapterRoute[], kv: KvBatch): Promise<Float32Array> {
    const run = this.ready();
    const { feeds, lengths } = prefillFeeds(prompts, 0);
    const width = Math.max(...lengths);
    const out = await run.sessions.prefill.run({ ...feeds, ...run.feeds, ...this.rowFeeds(run.sessions, routes) });
    kv.append(out, Array.from(feeds.attention_mask?.data as BigInt64Array, Number), prompts.length, width);
    return logitsOf(out);
  }

  /** One new token per row of `kv` at these positions; the cache grows by one column. */
  async decode(tokens: readonly number[], positions: readonly number[], routes: readonly AdapterRoute[], kv: KvBatch): Promise<Float32Array> {
    const run = this.ready();
    const b = tokens.length;
    const feeds = {
      input_ids: nn.tensor('int64', [b, 1], BigInt64Array.from(tokens, BigInt)),
      position_ids: nn.tensor('int64', [b, 1], BigInt64Array.from(positions, BigInt)),
      ...kv.decodeFeeds(),
      ...run.feeds,
      ...this.rowFeeds(run.sessions, routes),
    };
    const out = await run.sessions.decode.run(feeds, undefined, kv.decodeOutputs());
    kv.advance();
    return logitsOf(out);
  }

  async dispose(): Promise<void> {
    this.current = undefined;
    this.bySignature.clear();
    await this.cache.dispose();
  }

  private ready(): NonNullable<ModelRunner['current']> {
    if (!this.current) throw new Error('model runner: usePack must be called before the first run');
    return this.current;
  }

  private async build(jd: string[], gather: string[]): Promise<Sessions> {
    const graphOpts = { weights: this.opts.weights, ...(jd.length + gather.length > 0 ? { multiLora: { jd, gather } } : {}) };
    const prefill = await this.cache.forGraph(buildPrefillGraph(this.opts.config, graphOpts).graph);
    const decode = await this.cache.forGraph(buildDecodeGraph(this.opts.config, graphOpts).graph);
    return { prefill, decode, jd: jd.length > 0, gather: gather.length > 0 };
  }

  private rowFeeds(s: Sessions, routes: readonly AdapterRoute[]): Record<string, nn.Tensor> {
    const feeds: Record<string, nn.Tensor> = {};
    const rows = (pick: (r: AdapterRoute) => number): nn.Tensor => nn.tensor('int64', [routes.length], BigInt64Array.from(routes, (r) => BigInt(pick(r))));
    if (s.jd) {
      feeds[MULTI_LORA_ROWS.jdSlot] = rows((r) => r.jdSlot);
      feeds[MULTI_LORA_ROWS.jdCluster] = rows((r) => r.jdCluster);
    }
    if (s.gather) feeds[MULTI_LORA_ROWS.gatherSlot] = rows((r) => r.gatherSlot);
    return feeds;
  }
}

function logitsOf(out: Readonly<Record<string, nn.Tensor>>): Float32Array {
  const t = out.logits;
  if (!t || !(t.data instanceof Float32Array)) throw new Error('model runner: output logits is missing or not float32');
  return t.data;
}
