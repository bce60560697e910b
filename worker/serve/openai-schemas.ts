// Request bodies of /v1/completions and /v1/chat/completions: JSON schemas for fastify (scalar
// fields, so a bad one is a 400 naming the field and the bad value), the union-typed fields
// (prompt, stop, message content) checked by hand for the same kind of message, and the
// fields OpenAI defines that this server does not implement refused by name rather than
// silently ignored. Unknown fields are ignored, as vLLM does.

export class BadRequest extends Error {
  override name = 'BadRequest';
  constructor(message: string, readonly param: string | null, readonly code: string | null = null) {
    super(message);
  }
}

const nullable = (type: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ type: [type, 'null'], ...extra });

/** Sampling and limits both routes take. */
const COMMON = {
  model: { type: 'string', minLength: 1 },
  max_tokens: nullable('integer', { minimum: 1 }),
  temperature: nullable('number', { minimum: 0, maximum: 2 }),
  top_p: nullable('number', { exclusiveMinimum: 0, maximum: 1 }),
  top_k: nullable('integer', { minimum: -1 }),
  n: nullable('integer', { minimum: 1, maximum: 16 }),
  seed: nullable('integer'),
  stream: nullable('boolean'),
  stream_options: nullable('object', { properties: { include_usage: nullable('boolean') } }),
  ignore_eos: nullable('boolean'),
  presence_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  frequency_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  logit_bias: nullable('object'),
  user: { type: 'string' },
} as const;

export const COMPLETION_SCHEMA = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    ...COMMON,
    echo: nullable('boolean'),
    logprobs: nullable('integer', { minimum: 0 }),
    best_of: nullable('integer', { minimum: 1 }),
    suffix: nullable('string'),
  },
} as const;

export const CHAT_SCHEMA = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    ...COMMON,
    max_completion_tokens: nullable('integer', { minimum: 1 }),
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role'],
        properties: { role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant', 'tool'] }, name: { type: 'string' } },
      },
    },
    logprobs: nullable('boolean'),
    top_logprobs: nullable('integer', { minimum: 0 }),
    tools: nullable('array'),
    response_format: nullable('object', { properties: { type: { type: 'string' } } }),
  },
} as const;

interface CommonBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  n?: number | null;
  seed?: number | null;
  stop?: unknown;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  ignore_eos?: boolean | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logit_bias?: Record<string, unknown> | null;
}

export interface CompletionBody extends CommonBody {
  prompt: unknown;
  echo?: boolean | null;
  logprobs?: number | null;
  best_of?: number | null;
  suffix?: string | null;
}

export interface ChatBody extends CommonBody {
  messages: Array<{ role: string; content?: unknown; name?: string }>;
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  tools?: unknown[] | null;
  response_format?: { type?: string } | null;
}

/** A prompt as the completions route takes it: text or token ids, one or a batch. */
export type PromptInput = { text: string } | { ids: number[] };

export function parsePrompts(prompt: unknown): PromptInput[] {
  const fail = (): never => {
    throw new BadRequest(`prompt must be a string, an array of strings, an array of token ids or an array of arrays of token ids, got ${describe(prompt)}`, 'prompt');
  };
  const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((t) => Number.isInteger(t) && (t as number) >= 0);
  if (typeof prompt === 'string') return [{ text: prompt }];
  if (!Array.isArray(prompt) || prompt.length === 0) return fail();
  if (prompt.every((p) => typeof p === 'string')) return (prompt as string[]).map((text) => ({ text }));
  if (isIds(prompt)) return [{ ids: prompt }];
  if (prompt.every(isIds)) return (prompt as number[][]).map((ids) => ({ ids }));
  return fail();
}

export function parseStop(stop: unknown): string[] {
  if (stop === undefined || stop === null) return [];
  if (typeof stop === 'string') return stop.length > 0 ? [stop] : [];
  if (Array.isArray(stop) && stop.length <= 4 && stop.every((s) => typeof s === 'string')) return (stop as string[]).filter((s) => s.length > 0);
  throw new BadRequest(`stop must be a string or an array of at most 4 strings, got ${describe(stop)}`, 'stop');
}

/** Message content as text: a string, or an array of text parts (no images: this is a text model). */
export function messageText(content: unknown, i: number, role: string): string {
  if (typeof content === 'string') return content;
  if ((content === null || content === undefined) && role === 'assistant') return '';
  if (Array.isArray(content)) {
    return content.map((part, j) => {
      const p = part as { type?: unknown; text?: unknown };
      if (typeof part === 'object' && part !== null && p.type === 'text' && typeof p.text === 'string') return p.text;
      throw new BadRequest(`messages[${i}].content[${j}] must be a text part {"type": "text", "text": "…"}, got ${describe(part)}: this model takes text only`, `messages[${i}].content`);
    }).join('');
  }
  throw new BadRequest(`messages[${i}].content must be a string or an array of text parts, got ${describe(content)}`, `messages[${i}].content`);
}

/** Fields OpenAI defines with values this server cannot honour: refused by name. */
export function refuseUnsupported(body: CompletionBody | ChatBody, route: 'completions' | 'chat'): void {
  const refuse = (param: string, why: string): never => {
    throw new BadRequest(`${param} ${why} is not supported by this server`, param);
  };
  if (body.presence_penalty) refuse('presence_penalty', `${body.presence_penalty}`);
  if (body.frequency_penalty) refuse('frequency_penalty', `${body.frequency_penalty}`);
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0) refuse('logit_bias', '(non-empty)');
  if (route === 'completions') {
    const c = body as CompletionBody;
    if (c.echo) refuse('echo', 'true');
    if (c.logprobs !== undefined && c.logprobs !== null) refuse('logprobs', `${c.logprobs}`);
    if (c.suffix) refuse('suffix', '(non-empty)');
    if (c.best_of !== undefined && c.best_of !== null && c.best_of !== (c.n ?? 1)) refuse('best_of', `${c.best_of} (other than n)`);
  } else {
    const c = body as ChatBody;
    if (c.logprobs) refuse('logprobs', 'true');
    if (c.tools && c.tools.length > 0) refuse('tools', '(tool calling)');
    if (c.response_format?.type && c.response_format.type !== 'text') refuse('response_format', `type ${JSON.stringify(c.response_format.type)}`);
  }
}

export function describe(x: unknown): string {
  const s = JSON.stringify(x);
  return s === undefined ? String(x) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
