// The slice of the kubelet's HTTPS API the apiserver proxies to, so `kubectl logs` works against
// the process node: /containerLogs/{namespace}/{pod}/{container} and /healthz.
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface LogSource {
  /** Log file of a container, or undefined when the pod or container is unknown. */
  logFile(namespace: string, pod: string, container: string | undefined, previous: boolean): string | undefined;
  isRunning(namespace: string, pod: string, container: string | undefined): boolean;
}

function tail(text: string, lines: number): string {
  const all = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
  return all.slice(Math.max(0, all.length - lines)).join('\n') + (text.length > 0 ? '\n' : '');
}

async function follow(res: ServerResponse, file: string, from: number, stillRunning: () => boolean): Promise<void> {
  let offset = from;
  const poll = async (): Promise<void> => {
    const size = (await stat(file).catch(() => ({ size: offset }))).size;
    if (size > offset) {
      await new Promise<void>((r) => createReadStream(file, { start: offset, end: size - 1 }).on('end', r).pipe(res, { end: false }));
      offset = size;
    }
  };
  while (!res.destroyed && stillRunning()) {
    await poll();
    await new Promise((r) => setTimeout(r, 200));
  }
  await poll();
  res.end();
}

export function startKubeletServer(options: { cert: string; key: string; host: string; port: number; logs: LogSource }): Promise<Server> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://node');
    if (url.pathname === '/healthz') {
      res.writeHead(200).end('ok');
      return;
    }
    const match = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (!match) {
      res.writeHead(404).end(`the process node serves only /containerLogs and /healthz, not ${url.pathname}`);
      return;
    }
    const [, namespace = '', pod = '', container = ''] = match.map(decodeURIComponent);
    const previous = url.searchParams.get('previous') === 'true';
    const file = options.logs.logFile(namespace, pod, container, previous);
    if (!file) {
      res.writeHead(404).end(`no logs for container ${container} of pod ${namespace}/${pod}`);
      return;
    }
    const text = await readFile(file, 'utf8').catch(() => '');
    const tailLines = url.searchParams.get('tailLines');
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.write(tailLines !== null ? tail(text, Number(tailLines)) : text);
    if (url.searchParams.get('follow') === 'true' && !previous) {
      await follow(res, file, Buffer.byteLength(text), () => options.logs.isRunning(namespace, pod, container));
    } else res.end();
  };
  const server = createServer({ cert: options.cert, key: options.key }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    });
  });
  return new Promise((resolveServer, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolveServer(server));
  });
}
