// The replica's HTTP face, in the OpenAI API's shapes so its clients (the openai SDKs, curl,
// LangChain) work unchanged: /v1/models lists the base model and every adapter the active
// bundle set serves; /v1/completions and /v1/chat/completions generate (openai-routes.ts);
// /health is the readiness and liveness probe; /metrics is for Prometheus.
import { fastify, type FastifyInstance } from 'fastify';
import type { AdapterStore } from './adapter-store.js';
import { errorReply, type GenerationDeps, openAiError, registerGenerationRoutes } from './openai-routes.js';

export { openAiError };

export interface ServeAppOptions {
  store: AdapterStore;
  /** The id clients use for the base model without an adapter. */
  baseModelId: string;
  /** Unix seconds the replica started; OpenAI's `created`. */
  createdAt: number;
  /** False until the initial bundles are loaded, and again while draining. */
  ready: () => boolean;
  /** Text generation; without it the replica answers only the models routes. */
  generation?: GenerationDeps;
  /** Prometheus exposition text for /metrics. */
  metrics?: () => Promise<string>;
}

export function createServeApp(opts: ServeAppOptions): FastifyInstance {
  // Logging goes through the worker's own structured logger, not fastify's per-request lines.
  const app = fastify({
    logger: false,
    bodyLimit: 8 * 1024 * 1024,
    // No type coercion ("5" is not a max_tokens) and the bad value in the error, to name it.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, verbose: true } },
  });
  app.setErrorHandler(async (err, _req, reply) => {
    const { status, body, headers } = errorReply(err);
    if (headers) void reply.headers(headers);
    return reply.code(status).send(body);
  });

  app.get('/health', async (_req, reply) => {
    const revision = opts.store.activeRevision;
    if (!opts.ready()) return reply.code(503).send({ status: 'starting', revision });
    return { status: 'ok', revision, adapters: opts.store.adapterNames().length };
  });

  app.get('/v1/models', async () => {
    const base = { id: opts.baseModelId, object: 'model', created: opts.createdAt, owned_by: 'tessera', root: opts.baseModelId, parent: null };
    const adapters = opts.store.adapterNames().map((id) => ({ id, object: 'model', created: opts.createdAt, owned_by: 'tessera', root: opts.baseModelId, parent: opts.baseModelId }));
    return { object: 'list', data: [base, ...adapters] };
  });

  app.get<{ Params: { model: string } }>('/v1/models/:model', async (req, reply) => {
    const id = req.params.model;
    if (id === opts.baseModelId) return { id, object: 'model', created: opts.createdAt, owned_by: 'tessera', root: id, parent: null };
    if (!opts.store.resolve(id)) return reply.code(404).send(openAiError(`The model \`${id}\` does not exist.`, 'invalid_request_error', 'model_not_found', 'model'));
    return { id, object: 'model', created: opts.createdAt, owned_by: 'tessera', root: opts.baseModelId, parent: opts.baseModelId };
  });

  if (opts.generation) registerGenerationRoutes(app, opts.generation);
  if (opts.metrics) {
    const metrics = opts.metrics;
    app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4; charset=utf-8').send(await metrics()));
  }

  return app;
}
