// A counting reverse proxy in front of the kube-apiserver, run as its own process so that
// forwarding the operator's traffic never delays the bench's clock. It terminates TLS with the
// apiserver's own serving certificate and requires a client certificate from the cluster CA, so
// the operator talks to it exactly as it would to the apiserver (same kubeconfig, another port);
// upstream it forwards as the admin. Every request is tallied by verb, resource and field manager.
//
// Started by bench/operator.ts with fork(); speaks over IPC:
//   child → parent  { type: 'ready', port }
//   parent → child  { type: 'snapshot' }  →  child → parent  { type: 'snapshot', tally }
import { readFileSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One line of the tally: how many requests of one kind, and their HTTP status codes. */
export interface TallyEntry {
  count: number;
  codes: Record<string, number>;
  /** Time until the apiserver's response headers, summed over the requests (watches: until the stream opened). */
  upstreamMs: number;
}
export type Tally = Record<string, TallyEntry>;

export interface ProxyConfig {
  upstreamPort: number;
  servingCertFile: string;
  servingKeyFile: string;
  caCertFile: string;
  adminCertFile: string;
  adminKeyFile: string;
}

export type ProxyMessage = { type: 'ready'; port: number } | { type: 'snapshot'; tally: Tally };

const APPLY_PATCH = 'application/apply-patch+yaml';

/**
 * `verb resource[/subresource] [fieldManager]`, e.g. `apply jobs [tessera-operator]`,
 * `patch sparsefinetunes/status [tessera-status-hub]`, `watch jobs`, `create tokenreviews`.
 */
export function requestKey(method: string, url: string, contentType: string | undefined): string {
  const parsed = new URL(url, 'https://apiserver');
  const segments = parsed.pathname.split('/').filter((s) => s.length > 0);
  // /api/v1/... (core) or /apis/<group>/<version>/...; anything shorter is discovery.
  const rest = segments[0] === 'api' ? segments.slice(2) : segments[0] === 'apis' ? segments.slice(3) : [];
  const scoped = rest[0] === 'namespaces' && rest.length >= 3 ? rest.slice(2) : rest;
  const [resource, name, subresource] = scoped;
  if (!resource) return `discover ${parsed.pathname}`;
  const watch = ['true', '1'].includes(parsed.searchParams.get('watch') ?? '');
  let verb: string;
  switch (method) {
    case 'GET': verb = watch ? 'watch' : name ? 'get' : 'list'; break;
    case 'POST': verb = 'create'; break;
    case 'PUT': verb = 'update'; break;
    case 'PATCH': verb = contentType?.startsWith(APPLY_PATCH) ? 'apply' : 'patch'; break;
    case 'DELETE': verb = 'delete'; break;
    default: verb = method.toLowerCase();
  }
  const manager = parsed.searchParams.get('fieldManager');
  return `${verb} ${resource}${subresource ? `/${subresource}` : ''}${manager ? ` [${manager}]` : ''}`;
}

export function startProxy(config: ProxyConfig, tally: Tally): Promise<Server> {
  const ca = readFileSync(config.caCertFile);
  // Keep-alive upstream: the proxy must not add a TLS handshake to every request it forwards.
  const upstream = new Agent({ keepAlive: true, ca, cert: readFileSync(config.adminCertFile), key: readFileSync(config.adminKeyFile) });
  const record = (key: string, code: string, upstreamMs: number): void => {
    const entry = (tally[key] ??= { count: 0, codes: {}, upstreamMs: 0 });
    entry.count++;
    entry.codes[code] = (entry.codes[code] ?? 0) + 1;
    entry.upstreamMs += upstreamMs;
  };
  const forward = (req: IncomingMessage, res: ServerResponse): void => {
    const key = requestKey(req.method ?? 'GET', req.url ?? '/', req.headers['content-type']);
    const started = performance.now();
    const out = request({
      host: '127.0.0.1', port: config.upstreamPort, method: req.method, path: req.url, headers: req.headers, agent: upstream,
    }, (up) => {
      record(key, String(up.statusCode ?? 0), performance.now() - started);
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on('error', (err) => {
      record(key, 'proxy-error', performance.now() - started);
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`api proxy: ${err.message}`);
    });
    // A client that hangs up (an aborted watch) must close the upstream stream too.
    res.on('close', () => out.destroy());
    req.pipe(out);
  };
  const server = createServer({
    cert: readFileSync(config.servingCertFile), key: readFileSync(config.servingKeyFile), ca, requestCert: true, rejectUnauthorized: true,
  }, forward);
  // How many TLS connections the operator opened: one per request would mean no keep-alive.
  server.on('secureConnection', () => record('tls connections', 'new', 0));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// Run as a forked child: argv[2] is the JSON ProxyConfig.
if (process.send && process.argv[2]) {
  const send = process.send.bind(process);
  const tally: Tally = {};
  const config = JSON.parse(process.argv[2]) as ProxyConfig;
  const server = await startProxy(config, tally);
  process.on('message', (message: { type?: string }) => {
    if (message.type === 'snapshot') send({ type: 'snapshot', tally } satisfies ProxyMessage);
  });
  process.on('disconnect', () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
  send({ type: 'ready', port: (server.address() as AddressInfo).port } satisfies ProxyMessage);
}
