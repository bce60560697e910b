// Bounded readiness polling over HTTP(S), used for every component the harness starts.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface ProbeTls {
  ca?: string;
  cert?: string;
  key?: string;
  /** Component serving certificates are self-signed by the component itself. */
  insecure?: boolean;
}

export function httpGet(url: string, tls: ProbeTls = {}, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const parsed = new URL(url);
    const options = {
      method: 'GET',
      timeout: timeoutMs,
      ...(parsed.protocol === 'https:'
        ? { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: !tls.insecure }
        : {}),
    };
    const req = (parsed.protocol === 'https:' ? httpsRequest : httpRequest)(parsed, options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls `check` until it returns true or `timeoutMs` passes; the error names what was awaited and the last failure. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, intervalMs = 250): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export async function waitForHttp(what: string, url: string, tls: ProbeTls, timeoutMs: number, accept = (status: number) => status === 200): Promise<void> {
  await waitFor(what, async () => accept((await httpGet(url, tls)).status), timeoutMs);
}
