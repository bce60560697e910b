// A small JSON REST client for the runtime. client-node's typed API deserializes responses into
// model classes (timestamps become Date, fields unknown to the model are dropped on write), while
// watch events arrive as plain JSON; the informer cache, status comparisons and Lease MicroTime
// strings all need the one wire shape, so the runtime speaks plain JSON end to end. Errors are
// client-node's ApiException with a numeric `.code`, like the rest of the code base expects.
import { request as httpRequest, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest, type AgentOptions } from 'node:https';
import { ApiException, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';

export type PatchType = 'merge' | 'json' | 'apply';

const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  apply: 'application/apply-patch+yaml',
};

export interface RequestParams {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  /** Per-request deadline; leader election needs calls that end well within renewDeadline. */
  timeoutMs?: number;
}

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

/** Where a kind lives on the API server, found by discovery. */
export interface ResourceInfo {
  apiVersion: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

interface DiscoveryList {
  resources?: Array<{ name: string; kind: string; namespaced: boolean }>;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export class RestClient {
  private readonly discovery = new Map<string, Promise<DiscoveryList>>();
  private readonly agents = new Map<string, HttpsAgent>();

  constructor(readonly kubeConfig: KubeConfig) {}

  /** One keep-alive agent per set of TLS credentials (rotated client certificates get a new one). */
  private agentFor(tls: AgentOptions): HttpsAgent {
    const key = JSON.stringify([tls.ca, tls.cert, tls.key, tls.rejectUnauthorized, tls.servername].map((v) => (v === undefined ? null : String(v))));
    let agent = this.agents.get(key);
    if (!agent) {
      for (const old of this.agents.values()) old.destroy();
      this.agents.clear();
      agent = new HttpsAgent({ keepAlive: true, ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: tls.rejectUnauthorized, servername: tls.servername });
      this.agents.set(key, agent);
    }
    return agent;
  }

  /** The server URL of the current context; the watch stream needs it too. */
  server(): string {
    const cluster = this.kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster: set a current-context that names one');
    return cluster.server;
  }

  async request<T>(method: string, path: string, params: RequestParams = {}): Promise<T> {
    const url = new URL(this.server() + path);
    for (const [key, value] of Object.entries(params.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const options: RequestOptions & AgentOptions & { headers: Record<string, string> } = { method, headers: { Accept: 'application/json' } };
    await this.kubeConfig.applyToHTTPSOptions(options);
    // client-node builds a fresh agent per request, so every request would pay a TLS handshake
    // (the operator bench counted one new connection per request); a proxy keeps its own agent.
    if (url.protocol === 'https:' && !this.kubeConfig.getCurrentCluster()?.proxyUrl) options.agent = this.agentFor(options);
    const payload = params.body === undefined ? undefined : JSON.stringify(params.body);
    if (payload !== undefined) options.headers['Content-Type'] = params.contentType ?? 'application/json';
    const timeoutMs = params.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const { status, text, headers } = await new Promise<{ status: number; text: string; headers: Record<string, string> }>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, options, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: flatHeaders(res.headers) }));
        res.on('error', reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path} timed out after ${timeoutMs} ms`)));
      req.on('error', (err) => reject(new Error(`${method} ${path} failed: ${err.message}`, { cause: err })));
      req.end(payload);
    });
    const body = parseJson(text);
    if (status < 200 || status > 299) {
      const message = (body as { message?: unknown } | undefined)?.message;
      throw new ApiException(status, `${method} ${path}: ${typeof message === 'string' ? message : text.slice(0, 200)}`, body, headers);
    }
    return body as T;
  }

  async resource(apiVersion: string, kind: string): Promise<ResourceInfo> {
    let list = this.discovery.get(apiVersion);
    if (!list) {
      list = this.request<DiscoveryList>('GET', apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`);
      this.discovery.set(apiVersion, list);
      // A failed discovery (the CRD is not installed yet) must not be cached for good.
      list.catch(() => this.discovery.delete(apiVersion));
    }
    const found = (await list).resources?.find((r) => r.kind === kind && !r.name.includes('/'));
    if (!found) {
      // A CRD installed after the last discovery must be found on the next try.
      this.discovery.delete(apiVersion);
      throw new Error(`unknown kind ${kind} in ${apiVersion}: the API server does not serve it (is its CRD installed?)`);
    }
    return { apiVersion, kind, plural: found.name, namespaced: found.namespaced };
  }

  /** The URL path of a collection (no name) or of one object, optionally of its subresource. */
  async path(apiVersion: string, kind: string, namespace?: string, name?: string, subresource?: string): Promise<string> {
    const info = await this.resource(apiVersion, kind);
    const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    const ns = info.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
    if (info.namespaced && name !== undefined && !namespace) throw new Error(`${kind} ${name} is namespaced: a namespace is required`);
    const one = name === undefined ? '' : `/${encodeURIComponent(name)}${subresource ? `/${subresource}` : ''}`;
    return `${base}${ns}/${info.plural}${one}`;
  }

  async list<T>(apiVersion: string, kind: string, namespace?: string): Promise<ListResult<T>> {
    const path = await this.path(apiVersion, kind, namespace);
    const items: T[] = [];
    let resourceVersion = '';
    let continueToken: string | undefined;
    // Pages keep one huge list from holding the API server; the last page's resourceVersion is the list's.
    do {
      const page = await this.request<{ items?: T[]; metadata?: { resourceVersion?: string; continue?: string } }>('GET', path, {
        query: { limit: 500, continue: continueToken },
      });
      items.push(...(page.items ?? []).map((item) => ({ apiVersion, kind, ...item })));
      resourceVersion = page.metadata?.resourceVersion ?? '';
      continueToken = page.metadata?.continue || undefined;
    } while (continueToken);
    return { items, resourceVersion };
  }

  async get<T extends KubernetesObject>(apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<T> {
    return this.request<T>('GET', await this.path(apiVersion, kind, namespace, name));
  }

  async create<T extends KubernetesObject>(obj: T): Promise<T> {
    return this.request<T>('POST', await this.path(need(obj.apiVersion, 'apiVersion'), need(obj.kind, 'kind'), obj.metadata?.namespace), { body: obj });
  }

  /** PUT; the object's metadata.resourceVersion makes it a compare-and-swap (409 when stale). */
  async replace<T extends KubernetesObject>(obj: T): Promise<T> {
    const path = await this.path(need(obj.apiVersion, 'apiVersion'), need(obj.kind, 'kind'), obj.metadata?.namespace, need(obj.metadata?.name, 'metadata.name'));
    return this.request<T>('PUT', path, { body: obj });
  }

  async patch<T extends KubernetesObject>(
    ref: KubernetesObject,
    type: PatchType,
    patch: unknown,
    options: { subresource?: string; fieldManager?: string; force?: boolean } = {},
  ): Promise<T> {
    const path = await this.path(need(ref.apiVersion, 'apiVersion'), need(ref.kind, 'kind'), ref.metadata?.namespace, need(ref.metadata?.name, 'metadata.name'), options.subresource);
    return this.request<T>('PATCH', path, {
      body: patch,
      contentType: PATCH_CONTENT_TYPES[type],
      query: { fieldManager: options.fieldManager, force: options.force },
    });
  }

  async delete(ref: KubernetesObject, propagationPolicy: 'Background' | 'Foreground' | 'Orphan' = 'Background'): Promise<void> {
    const path = await this.path(need(ref.apiVersion, 'apiVersion'), need(ref.kind, 'kind'), ref.metadata?.namespace, need(ref.metadata?.name, 'metadata.name'));
    await this.request('DELETE', path, { body: { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy } });
  }
}

/** The HTTP status of an API error, or undefined for anything else (network errors, bugs). */
export function statusCode(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

function need(value: string | undefined, field: string): string {
  if (!value) throw new Error(`object has no ${field}: every object sent to the API server needs apiVersion, kind and metadata.name`);
  return value;
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function flatHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}
