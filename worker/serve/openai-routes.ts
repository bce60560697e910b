// POST /v1/completions and /v1/chat/completions in OpenAI's shapes, streamed as server-sent
// events (`data: {chunk}` … `data: [DONE]`) when asked. The request's `model` picks the base
// model (the LoRAServer's name) or an adapter; prompts are tokenized here, on the main thread,
// and only token ids cross to the engine thread.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { TextTokenizer } from '../formats/tokenizer.js';
import type { ChatTemplate } from './chat-template.js';
import { EngineUnavailableError, QueueFullError } from './engine.js';
import { type ChoiceDelta, GenerationAborted, type GenerationRequest, type GenerationResult, type Generator } from './generator.js';
import { BadRequest, CHAT_SCHEMA, type ChatBody, COMPLETION_SCHEMA, type CompletionBody, messageText, parsePrompts, parseStop, refuseUnsupported } from './openai-schemas.js';
import type { ServingAdapters } from './serving-adapters.js';

export interface GenerationDeps {
  generator: Generator;
  adapters: ServingAdapters;
  /** Null when the checkpoint has no tokenizer.json: the routes then refuse to generate. */
  tokenizer: TextTokenizer | null;
  chat: ChatTemplate | null;
  maxPositions: number;
  vocabSize: number;
  /** The most prompt + max_tokens one sequence may reserve (spec.engine.kvCacheTokens). */
  kvCacheTokens: number;
}

/** OpenAI's error body, so SDKs raise their typed errors with our message. */
export function openAiError(message: string, type: string, code: string | null, param: string | null = null) {
  return { error: { message, type, param, code } };
}

export function registerGenerationRoutes(app: FastifyInstance, deps: GenerationDeps): void {
  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: COMPLETION_SCHEMA } }, async (req, reply) => {
    const body = req.body;
    refuseUnsupported(body, 'completions');
    const target = resolveModel(deps, body.model);
    const tokenizer = needTokenizer(deps);
    const prompts = parsePrompts(body.prompt).map((p, i) => {
      const ids = 'ids' in p ? p.ids : encode(tokenizer, p.text, true, `prompt${Array.isArray(body.prompt) ? `[${i}]` : ''}`);
      checkIds(deps, ids, 'prompt');
      return ids;
    });
    const gen = generationRequest(deps, body, target, prompts, body.max_tokens ?? 16, 'prompt');
    return respond(deps, reply, gen, body, {
      id: `cmpl-${randomUUID().replaceAll('-', '')}`,
      chunkObject: 'text_completion',
      chunk: (d) => ({ object: 'text_completion', choices: [{ index: d.index, text: d.text, logprobs: null, finish_reason: d.finishReason }] }),
      full: (r) => ({ object: 'text_completion', choices: r.choices.map((c) => ({ index: c.index, text: c.text, logprobs: null, finish_reason: c.finishReason })) }),
    });
  });

  app.post<{ Body: ChatBody }>('/v1/chat/completions', { schema: { body: CHAT_SCHEMA } }, async (req, reply) => {
    const body = req.body;
    refuseUnsupported(body, 'chat');
    const target = resolveModel(deps, body.model);
    const messages = body.messages.map((m, i) => ({ role: m.role, content: messageText(m.content, i, m.role) }));
    const tokenizer = needTokenizer(deps);
    let rendered;
    try {
      rendered = (deps.chat as ChatTemplate).render(messages);
    } catch (err) {
      throw new BadRequest(`the model's chat template refused these messages: ${err instanceof Error ? err.message : String(err)}`, 'messages');
    }
    const ids = encode(tokenizer, rendered.text, !rendered.hasSpecialTokens, 'messages');
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? Math.min(deps.maxPositions, deps.kvCacheTokens) - ids.length;
    const gen = generationRequest(deps, body, target, [ids], maxTokens, 'messages');
    const sent = new Set<number>();
    return respond(deps, reply, gen, body, {
      id: `chatcmpl-${randomUUID().replaceAll('-', '')}`,
      chunkObject: 'chat.completion.chunk',
      chunk: (d) => {
        // The first chunk of each choice carries the role, as OpenAI's do.
        const delta: Record<string, string> = sent.has(d.index) ? {} : { role: 'assistant' };
        sent.add(d.index);
        if (d.text || d.finishReason === null) delta.content = d.text;
        return { object: 'chat.completion.chunk', choices: [{ index: d.index, delta, logprobs: null, finish_reason: d.finishReason }] };
      },
      full: (r) => ({ object: 'chat.completion', choices: r.choices.map((c) => ({ index: c.index, message: { role: 'assistant', content: c.text }, logprobs: null, finish_reason: c.finishReason })) }),
    });
  });
}

function resolveModel(deps: GenerationDeps, model: string): GenerationRequest['target'] {
  const target = deps.adapters.resolve(model);
  if (!target) throw new ModelNotFound(model);
  return target;
}

export class ModelNotFound extends Error {
  override name = 'ModelNotFound';
  constructor(readonly model: string) {
    super(`The model \`${model}\` does not exist.`);
  }
}

export class NoTokenizer extends Error {
  override name = 'NoTokenizer';
}

function needTokenizer(deps: GenerationDeps): TextTokenizer {
  if (!deps.tokenizer || !deps.chat) throw new NoTokenizer('the base model has no tokenizer.json, so this replica cannot turn text into tokens and back; add the tokenizer files to the checkpoint directory');
  return deps.tokenizer;
}

function encode(tokenizer: TextTokenizer, text: string, addSpecialTokens: boolean, param: string): number[] {
  const ids = tokenizer.encode(text, { addSpecialTokens });
  if (ids.length === 0) throw new BadRequest(`${param} is empty after tokenization`, param);
  return ids;
}

function checkIds(deps: GenerationDeps, ids: readonly number[], param: string): void {
  const bad = ids.find((t) => t >= deps.vocabSize);
  if (bad !== undefined) throw new BadRequest(`${param} has token id ${bad}, but the vocabulary has ${deps.vocabSize} tokens (ids 0…${deps.vocabSize - 1})`, param);
}

function generationRequest(deps: GenerationDeps, body: CompletionBody | ChatBody, target: GenerationRequest['target'], prompts: number[][], maxTokens: number, promptParam: string): GenerationRequest {
  const longest = Math.max(...prompts.map((p) => p.length));
  const limit = Math.min(deps.maxPositions, deps.kvCacheTokens);
  if (longest + maxTokens > limit) {
    const what = deps.maxPositions <= deps.kvCacheTokens ? 'maximum context length' : 'KV cache (spec.engine.kvCacheTokens)';
    throw new BadRequest(`This model's ${what} is ${limit} tokens. However, you requested ${longest + maxTokens} tokens (${longest} in the ${promptParam}, ${maxTokens} in the completion). Please reduce the length of the ${promptParam} or completion.`, maxTokens > 0 && longest < limit ? 'max_tokens' : promptParam, 'context_length_exceeded');
  }
  const topK = body.top_k ?? 0;
  return {
    model: body.model,
    target,
    prompts,
    n: body.n ?? 1,
    maxTokens,
    sampling: { temperature: body.temperature ?? 1, topP: body.top_p ?? 1, topK: topK < 0 ? 0 : topK, seed: body.seed ?? null },
    stop: parseStop(body.stop),
    ignoreEos: body.ignore_eos ?? false,
  };
}

interface Shapes {
  id: string;
  /** The `object` of stream chunks. */
  chunkObject: string;
  chunk: (d: ChoiceDelta) => Record<string, unknown>;
  full: (r: GenerationResult) => Record<string, unknown>;
}

async function respond(deps: GenerationDeps, reply: FastifyReply, gen: GenerationRequest, body: CompletionBody | ChatBody, shapes: Shapes): Promise<unknown> {
  const created = Math.floor(Date.now() / 1000);
  const head = { id: shapes.id, created, model: body.model };
  const abort = new AbortController();
  const stream = body.stream === true;
  // Deltas arrive from the engine thread's messages, so never before the headers below.
  const write = (obj: unknown): void => void reply.raw.write(`data: ${JSON.stringify(obj)}\n\n`);
  // Queued synchronously: a full queue throws here, before any header is sent.
  const running = deps.generator.run(gen, {
    signal: abort.signal,
    ...(stream ? { onDelta: (d: ChoiceDelta) => write({ ...head, ...shapes.chunk(d) }) } : {}),
  });
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) abort.abort();
  });
  if (!stream) {
    const r = await running;
    return { ...head, ...shapes.full(r), usage: usage(r) };
  }

  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  try {
    const r = await running;
    if (body.stream_options?.include_usage) write({ ...head, object: shapes.chunkObject, choices: [], usage: usage(r) });
  } catch (err) {
    if (err instanceof GenerationAborted) return;
    write(openAiError(err instanceof Error ? err.message : String(err), 'server_error', null));
  }
  raw.end('data: [DONE]\n\n');
}

function usage(r: GenerationResult): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens };
}

/** Maps what the routes throw to OpenAI error bodies; validation errors name the field and the bad value. */
export function errorReply(err: unknown): { status: number; body: ReturnType<typeof openAiError>; headers?: Record<string, string> } {
  if (err instanceof BadRequest) return { status: 400, body: openAiError(err.message, 'invalid_request_error', err.code, err.param) };
  if (err instanceof ModelNotFound) return { status: 404, body: openAiError(err.message, 'invalid_request_error', 'model_not_found', 'model') };
  if (err instanceof QueueFullError) return { status: 429, body: openAiError(err.message, 'rate_limit_error', 'queue_full'), headers: { 'retry-after': '1' } };
  if (err instanceof NoTokenizer) return { status: 501, body: openAiError(err.message, 'server_error', 'no_tokenizer') };
  if (err instanceof EngineUnavailableError) return { status: 503, body: openAiError(err.message, 'server_error', 'engine_unavailable') };
  const e = err as { validation?: ValidationIssue[]; statusCode?: number; message?: string };
  if (Array.isArray(e.validation) && e.validation.length > 0) {
    const { param, message } = validationMessage(e.validation[0] as ValidationIssue);
    return { status: 400, body: openAiError(message, 'invalid_request_error', null, param) };
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return { status: e.statusCode, body: openAiError(e.message ?? 'bad request', 'invalid_request_error', null) };
  return { status: 500, body: openAiError(err instanceof Error ? err.message : String(err), 'server_error', null) };
}

interface ValidationIssue {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
  data?: unknown;
}

function validationMessage(v: ValidationIssue): { param: string; message: string } {
  // "/messages/0/role" → "messages[0].role"
  const path = v.instancePath.split('/').filter(Boolean).map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
  if (v.keyword === 'required') {
    const missing = String(v.params.missingProperty);
    const param = path ? `${path}.${missing}` : missing;
    return { param, message: `${param} is required` };
  }
  const got = v.data === undefined ? '' : `, got ${JSON.stringify(v.data)}`;
  const allowed = v.keyword === 'enum' && Array.isArray(v.params.allowedValues) ? ` (${(v.params.allowedValues as unknown[]).join(', ')})` : '';
  // ajv says "must be number,null" for a nullable number.
  const types = v.keyword === 'type' ? [v.params.type].flat().map(String) : [];
  const message = types.length > 0 ? `must be ${types.map((t) => (t === 'null' ? t : `${/^[aeiou]/.test(t) ? 'an' : 'a'} ${t}`)).join(' or ')}` : (v.message ?? 'is invalid');
  return { param: path || 'body', message: `${path || 'the body'} ${message}${allowed}${got}` };
}
