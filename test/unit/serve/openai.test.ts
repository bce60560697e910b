// The replica's OpenAI API as a client sees it: the openai SDK against the real fastify server
// on a port, with the engine in its own thread, serving the base model, a raw PEFT adapter and
// adapters from two JD bundles.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { pino } from 'pino';
import { materializeAdapter, readJdBundle } from '../../../worker/formats/jd-bundle.js';
import { TextTokenizer } from '../../../worker/formats/tokenizer.js';
import type { LoraWeights } from '../../../worker/model/llama/index.js';
import { generate } from '../../../worker/modes/generate.js';
import { JD_BUNDLE_SOURCE } from '../../../worker/modes/jd-adapter-source.js';
import { adapterToLora, loadAdapter, loadModel, type LoadedAdapter, type LoadedModel } from '../../../worker/modes/load-model.js';
import { SessionCache } from '../../../worker/onnx/session.js';
import { AdapterStore } from '../../../worker/serve/adapter-store.js';
import { type EngineSettings, type Generation, startGeneration } from '../../../worker/serve/generation.js';
import { createServeApp } from '../../../worker/serve/http.js';
import { CHAT_TEMPLATE, servingFixture, type ServingFixture } from './fixture.js';

interface Server {
  client: OpenAI;
  url: string;
  store: AdapterStore;
  generation: Generation;
  close(): Promise<void>;
}

/** A replica on 127.0.0.1:0 serving the fixture's raw adapters and both bundles. */
async function startServer(f: ServingFixture, engine: Partial<EngineSettings> = {}): Promise<Server> {
  const raw = new Map<string, LoadedAdapter>();
  for (const a of f.raw) raw.set(a.name, await loadAdapter(a.dir, f.config));
  const store = new AdapterStore(f.config, raw);
  await store.load({ revision: 'set1', bundles: f.bundles.map((b) => ({ adapterCluster: b.adapterCluster, revision: b.revision, uri: b.uri, sha256: '' })) });
  store.activate('set1');
  const generation = await startGeneration({
    modelDir: f.modelDir, store, raw: new Map([...raw].map(([n, a]) => [n, a.lora])), baseModelId: 'tiny', engine, intraOpThreads: 1, log: pino({ level: 'silent' }),
  });
  const app = createServeApp({ store, baseModelId: 'tiny', createdAt: 1, ready: () => generation.engine.alive, generation: generation.deps, metrics: () => generation.stats.metrics() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  assert.ok(address && typeof address === 'object');
  const url = `http://127.0.0.1:${address.port}`;
  return {
    client: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 }),
    url,
    store,
    generation,
    async close() {
      await app.close();
      await generation.close();
    },
  };
}

describe('serve: OpenAI API through the openai SDK', function () {
  this.timeout(60_000);
  let f: ServingFixture;
  let server: Server;
  let model: LoadedModel;
  let tokenizer: TextTokenizer;
  const cache = new SessionCache({ intraOpThreads: 1 });

  before(async () => {
    f = await servingFixture();
    server = await startServer(f);
    model = await loadModel(f.modelDir);
    tokenizer = model.tokenizer as TextTokenizer;
  });
  after(async () => {
    await server?.close();
    await cache.dispose();
  });

  /** Greedy text from generate() with the adapter as ordinary LoRA factors (the eval path), up to `max` tokens or EOS. */
  async function reference(prompt: string, lora: LoraWeights | undefined, max: number): Promise<{ text: string; tokens: number }> {
    const [ids] = await generate({ config: model.config, weights: model.weights, prompts: [tokenizer.encode(prompt)], maxNewTokens: max, eosTokenId: 2, cache, ...(lora ? { lora } : {}) });
    return { text: tokenizer.decode(ids as number[], { skipSpecialTokens: true }), tokens: (ids as number[]).length };
  }

  const PROMPT = 'Call me Ishmael. Some years ago';

  it('completes a prompt with the base model: greedy text, usage and finish reason', async () => {
    const r = await server.client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 8, temperature: 0 });
    const want = await reference(PROMPT, undefined, 8);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, 'tiny');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0]?.text, want.text);
    assert.equal(r.choices[0]?.finish_reason, want.tokens === 8 ? 'length' : 'stop');
    const promptTokens = tokenizer.encode(PROMPT).length;
    assert.deepEqual(r.usage, { prompt_tokens: promptTokens, completion_tokens: want.tokens, total_tokens: promptTokens + want.tokens });
  });

  it('serves a raw PEFT adapter as generate() with its LoRA factors does', async () => {
    const r = await server.client.completions.create({ model: 'r1', prompt: PROMPT, max_tokens: 8, temperature: 0 });
    const want = await reference(PROMPT, (await loadAdapter(f.raw[1]!.dir, f.config)).lora, 8);
    assert.equal(r.choices[0]?.text, want.text);
  });

  it('serves a JD bundle adapter exactly as the same adapter materialized as PEFT (eval path), and not as the base model', async () => {
    for (const [bundle, name] of [[0, 'p2'], [1, 'n1']] as const) {
      const uri = f.bundles[bundle]!.uri;
      const lora = await JD_BUNDLE_SOURCE.load(`${uri}#${name}`, model);
      const want = await reference(PROMPT, lora, 10);
      const r = await server.client.completions.create({ model: name, prompt: PROMPT, max_tokens: 10, temperature: 0 });
      assert.equal(r.choices[0]?.text, want.text, `adapter ${name}`);
      assert.deepEqual(lora.get('model.layers.0.self_attn.q_proj')?.A.data, adapterToLora(materializeAdapter(await readJdBundle(uri), name)).get('model.layers.0.self_attn.q_proj')?.A.data);
    }
    const base = await reference(PROMPT, undefined, 10);
    const adapted = await server.client.completions.create({ model: 'p2', prompt: PROMPT, max_tokens: 10, temperature: 0 });
    assert.notEqual(adapted.choices[0]?.text, base.text, 'the adapter changes what the model says');
  });

  it('answers chat through the tokenizer\'s chat template, for the base model and an adapter', async () => {
    const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Hello world!' }];
    for (const m of ['tiny', 'p1', 'r0']) {
      const r = await server.client.chat.completions.create({ model: m, messages, max_tokens: 6, temperature: 0 });
      assert.equal(r.object, 'chat.completion');
      assert.equal(r.choices[0]?.message.role, 'assistant');
      assert.equal(typeof r.choices[0]?.message.content, 'string');
      assert.ok(r.choices[0]?.finish_reason === 'length' || r.choices[0]?.finish_reason === 'stop');
      // The template (bos, then <|role|>content lines, then <|assistant|>) tokenized without adding specials again.
      const rendered = `<s><|system|>Be brief.\n<|user|>Hello world!\n<|assistant|>`;
      assert.ok(CHAT_TEMPLATE.includes('bos_token'));
      assert.equal(r.usage?.prompt_tokens, tokenizer.encode(rendered, { addSpecialTokens: false }).length, `prompt tokens for ${m}`);
    }
  });

  it('streams the same text as it returns without streaming, then [DONE] and the usage', async () => {
    const body = { model: 'p3', prompt: PROMPT, max_tokens: 12, temperature: 0 };
    const whole = await server.client.completions.create(body);
    const stream = await server.client.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finish: string | null = null;
    let usage: unknown;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.text;
        if (c.finish_reason) finish = c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, whole.choices[0]?.text);
    assert.equal(finish, whole.choices[0]?.finish_reason);
    assert.deepEqual(usage, whole.usage);

    const chatBody = { model: 'n0', messages: [{ role: 'user' as const, content: 'The state of the union' }], max_tokens: 12, temperature: 0 };
    const chatWhole = await server.client.chat.completions.create(chatBody);
    let streamed = '';
    let role: string | undefined;
    for await (const chunk of await server.client.chat.completions.create({ ...chatBody, stream: true })) {
      role ??= chunk.choices[0]?.delta.role;
      streamed += chunk.choices[0]?.delta.content ?? '';
    }
    assert.equal(role, 'assistant');
    assert.equal(streamed, chatWhole.choices[0]?.message.content);
  });

  it('is deterministic at temperature 0 and reproducible with a seed; n gives n choices', async () => {
    const greedy = await Promise.all([0, 1].map(() => server.client.completions.create({ model: 'p0', prompt: PROMPT, max_tokens: 8, temperature: 0 })));
    assert.equal(greedy[0]?.choices[0]?.text, greedy[1]?.choices[0]?.text);
    const sampled = await Promise.all([0, 1].map(() => server.client.completions.create({ model: 'p0', prompt: [PROMPT, 'Hello'], max_tokens: 8, temperature: 1.5, top_p: 0.9, seed: 7, n: 2 })));
    assert.equal(sampled[0]?.choices.length, 4);
    assert.deepEqual(sampled[0]?.choices.map((c) => c.index), [0, 1, 2, 3]);
    assert.deepEqual(sampled[0]?.choices.map((c) => c.text), sampled[1]?.choices.map((c) => c.text));
  });

  it('cuts the text at a stop string and says finish_reason stop', async () => {
    const whole = await server.client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 12, temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    const text = whole.choices[0]?.text ?? '';
    const stop = text.slice(3, 5);
    assert.ok(stop.length === 2, `the base model says too little to pick a stop string: ${JSON.stringify(text)}`);
    const r = await server.client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 12, temperature: 0, stop: [stop], ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    assert.equal(r.choices[0]?.text, text.slice(0, text.indexOf(stop)));
    assert.equal(r.choices[0]?.finish_reason, 'stop');
  });

  it('answers 404 model_not_found for a model it does not serve', async () => {
    await assert.rejects(server.client.completions.create({ model: 'nope', prompt: 'x', max_tokens: 2 }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.NotFoundError, String(err));
      assert.equal(err.code, 'model_not_found');
      assert.match(err.message, /The model `nope` does not exist/);
      return true;
    });
  });

  it('answers 400 naming the bad field and its value', async () => {
    const cases: Array<{ body: Record<string, unknown>; param: string; message: RegExp; route?: 'chat' }> = [
      { body: { model: 'tiny', prompt: 'x', max_tokens: 0 }, param: 'max_tokens', message: /max_tokens must be >= 1, got 0/ },
      { body: { model: 'tiny', prompt: 'x', temperature: 'hot' }, param: 'temperature', message: /temperature must be a number or null, got "hot"/ },
      { body: { model: 'tiny', prompt: { text: 'x' } }, param: 'prompt', message: /prompt must be a string, an array of strings/ },
      { body: { model: 'tiny', prompt: 'x', max_tokens: 500 }, param: 'max_tokens', message: /maximum context length is 128 tokens\. However, you requested 502 tokens/ },
      { body: { model: 'tiny', prompt: 'x', echo: true }, param: 'echo', message: /echo true is not supported/ },
      { body: { model: 'tiny', messages: [{ role: 'wizard', content: 'hi' }] }, param: 'messages[0].role', message: /messages\[0\]\.role must be equal to one of the allowed values \(system, developer, user, assistant, tool\), got "wizard"/, route: 'chat' },
      { body: { model: 'tiny' }, param: 'messages', message: /messages is required/, route: 'chat' },
    ];
    for (const c of cases) {
      const res = await fetch(`${server.url}/v1/${c.route === 'chat' ? 'chat/completions' : 'completions'}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(c.body) });
      assert.equal(res.status, 400, JSON.stringify(c.body));
      const { error } = await res.json() as { error: { message: string; type: string; param: string } };
      assert.equal(error.type, 'invalid_request_error');
      assert.equal(error.param, c.param);
      assert.match(error.message, c.message);
    }
    await assert.rejects(server.client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: -3 }), (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'max_tokens');
  });

  it('reports serving statistics and Prometheus metrics, vLLM names included', async () => {
    const snap = server.generation.snapshot();
    assert.ok(snap.requestsPerSecond > 0 && snap.tokensPerSecond > 0, JSON.stringify(snap));
    assert.ok(snap.p99LatencyMs >= snap.p50LatencyMs && snap.p50LatencyMs > 0, JSON.stringify(snap));
    assert.equal(snap.queueDepth, 0);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /tessera_serve_requests_total\{model="p2",finish_reason="(length|stop)"\} \d+/);
    assert.match(text, /tessera_serve_generation_tokens_total \d+/);
    assert.match(text, /vllm:num_requests_waiting 0/);
    assert.match(text, /vllm:lora_requests_info\{running_lora_adapters="",waiting_lora_adapters="",max_lora="8"\}/);
  });

  it('serves a bundle revision activated while it runs from the next request on (last: it changes what is served)', async () => {
    const news = f.bundles[1]!;
    await server.store.load({ revision: 'set2', bundles: [{ adapterCluster: news.adapterCluster, revision: news.revision, uri: news.uri, sha256: '' }] });
    const before = await server.client.completions.create({ model: 'p0', prompt: PROMPT, max_tokens: 4, temperature: 0 });
    assert.equal(before.choices.length, 1, 'loading alone changes nothing');
    server.store.activate('set2');
    await assert.rejects(server.client.completions.create({ model: 'p0', prompt: PROMPT, max_tokens: 4 }), (err: unknown) => err instanceof OpenAI.NotFoundError);
    const want = await reference(PROMPT, await JD_BUNDLE_SOURCE.load(`${news.uri}#n1`, model), 6);
    const r = await server.client.completions.create({ model: 'n1', prompt: PROMPT, max_tokens: 6, temperature: 0 });
    assert.equal(r.choices[0]?.text, want.text);
    const models = await server.client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['tiny', 'n0', 'n1', 'r0', 'r1']);
  });
});

describe('serve: a full queue', function () {
  this.timeout(60_000);
  let server: Server;
  before(async () => {
    server = await startServer(await servingFixture(), { maxBatchSize: 1, maxQueue: 1 });
  });
  after(() => server?.close());

  it('answers 429 with an OpenAI error body while maxQueue requests wait, and serves them after', async () => {
    const controller = new AbortController();
    // One long request holds the only batch slot (it runs until aborted: 120 tokens, EOS ignored).
    const long = await server.client.completions.create({ model: 'tiny', prompt: 'Hello', max_tokens: 120, temperature: 0, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming, { signal: controller.signal });
    const iterator = long[Symbol.asyncIterator]();
    await iterator.next(); // its first token: it is running
    const queued = server.client.completions.create({ model: 'p0', prompt: 'Hello', max_tokens: 2, temperature: 0 });
    await waitUntil(() => server.generation.engine.queued === 1);
    await assert.rejects(server.client.completions.create({ model: 'r0', prompt: 'Hello', max_tokens: 2 }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.RateLimitError, String(err));
      assert.equal(err.status, 429);
      assert.match(err.message, /queue is full \(1 requests waiting\)/);
      return true;
    });
    controller.abort();
    const r = await queued;
    assert.equal(r.choices.length, 1);
    await waitUntil(() => server.generation.engine.running === 0 && server.generation.engine.queued === 0);
  });
});

async function waitUntil(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
