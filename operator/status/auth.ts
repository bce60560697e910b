// Who is on the other end of a stream, the way Kubeflow Trainer's progress server decides it:
// a projected ServiceAccount token (audience tessera.dev) checked with a TokenReview, then
// the calling pod's ownerReferences walked up to the custom resource it may speak for.
import { createHash } from 'node:crypto';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ApiException, AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { systemClock, type Clock } from './clock.js';
import type { OwnerRef, OwnerResolver } from './owner.js';

export const TOKEN_AUDIENCE = 'tessera.dev';
const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';
const SA_USERNAME = /^system:serviceaccount:([^:]+):([^:]+)$/;

/** The pod a token was minted for, as the API server vouches for it. */
export interface PodIdentity {
  namespace: string;
  podName: string;
  podUid: string;
  serviceAccount: string;
}

/** A caller the hub accepts: its pod and the one object it may report for. */
export interface CallerIdentity {
  pod: PodIdentity;
  owner: OwnerRef;
}

export type AuthFailureCode = GrpcStatus.UNAUTHENTICATED | GrpcStatus.PERMISSION_DENIED | GrpcStatus.UNAVAILABLE;

/** A refusal with the gRPC status it maps to; the message never contains the token. */
export class AuthError extends Error {
  constructor(
    readonly code: AuthFailureCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'AuthError';
  }
}

/** Checks a bearer token; throws AuthError (UNAUTHENTICATED, or UNAVAILABLE when the API server cannot answer). */
export interface TokenReviewer {
  review(token: string): Promise<PodIdentity>;
}

/** Decides who a stream's bearer token speaks for; throws AuthError. */
export interface Authenticator {
  authenticate(token: string | undefined): Promise<CallerIdentity>;
}

/** The token from `authorization: Bearer <token>`, or undefined when absent or malformed. */
export function bearerToken(values: readonly (string | Buffer)[]): string | undefined {
  const first = values[0];
  if (typeof first !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(first);
  return match?.[1];
}

/** TokenReview against the API server, with the tessera.dev audience. */
export class KubeTokenReviewer implements TokenReviewer {
  private readonly api: AuthenticationV1Api;

  constructor(kubeConfig: KubeConfig, private readonly audience = TOKEN_AUDIENCE) {
    this.api = kubeConfig.makeApiClient(AuthenticationV1Api);
  }

  async review(token: string): Promise<PodIdentity> {
    let result;
    try {
      result = await this.api.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.audience] } },
      });
    } catch (err) {
      throw new AuthError(GrpcStatus.UNAVAILABLE, `TokenReview failed: ${describe(err)}`, { cause: err });
    }
    const status = result.status;
    if (!status?.authenticated) {
      throw new AuthError(GrpcStatus.UNAUTHENTICATED, `token rejected by TokenReview${status?.error ? `: ${status.error}` : ''}`);
    }
    // An API server that ignores spec.audiences would accept any audience; refuse unless it confirms ours.
    if (!status.audiences?.includes(this.audience)) {
      throw new AuthError(GrpcStatus.UNAUTHENTICATED, `token audiences ${JSON.stringify(status.audiences ?? [])} do not include ${this.audience}`);
    }
    const username = status.user?.username ?? '';
    const sa = SA_USERNAME.exec(username);
    const podName = status.user?.extra?.[POD_NAME_EXTRA]?.[0];
    const podUid = status.user?.extra?.[POD_UID_EXTRA]?.[0];
    if (!sa || !podName || !podUid) {
      throw new AuthError(GrpcStatus.UNAUTHENTICATED, `token of ${JSON.stringify(username)} is not a pod-bound ServiceAccount token`);
    }
    return { namespace: sa[1] as string, serviceAccount: sa[2] as string, podName, podUid };
  }
}

export interface CachingAuthenticatorOptions {
  reviewer: TokenReviewer;
  resolver: OwnerResolver;
  /** How long a verdict is reused. At most 30 s: a revoked token keeps working that long. */
  ttlMs?: number;
  /** Bound on remembered tokens; the oldest verdict goes first. */
  maxEntries?: number;
  clock?: Clock;
}

interface CacheEntry {
  expiresAt: number;
  verdict: { ok: true; identity: CallerIdentity } | { ok: false; error: AuthError };
}

export const MAX_CACHE_TTL_MS = 30_000;

/**
 * TokenReview + owner resolution with a short cache keyed by the token's sha256, so a
 * reconnect storm costs one review per token, and no token is kept in memory.
 * UNAVAILABLE is never cached: the next try should ask the API server again.
 */
export class CachingAuthenticator implements Authenticator {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<CallerIdentity>>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly clock: Clock;

  constructor(private readonly options: CachingAuthenticatorOptions) {
    this.ttlMs = Math.min(options.ttlMs ?? 10_000, MAX_CACHE_TTL_MS);
    this.maxEntries = options.maxEntries ?? 10_000;
    this.clock = options.clock ?? systemClock;
  }

  async authenticate(token: string | undefined): Promise<CallerIdentity> {
    if (!token) throw new AuthError(GrpcStatus.UNAUTHENTICATED, 'missing "authorization: Bearer <token>" metadata');
    const key = createHash('sha256').update(token).digest('hex');
    const hit = this.cache.get(key);
    if (hit && hit.expiresAt > this.clock.now()) {
      if (hit.verdict.ok) return hit.verdict.identity;
      throw hit.verdict.error;
    }
    this.cache.delete(key);
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const lookup = this.lookup(key, token).finally(() => this.inflight.delete(key));
    this.inflight.set(key, lookup);
    return lookup;
  }

  private async lookup(key: string, token: string): Promise<CallerIdentity> {
    try {
      const pod = await this.options.reviewer.review(token);
      const owner = await this.options.resolver.resolve(pod);
      const identity = { pod, owner };
      this.remember(key, { ok: true, identity });
      return identity;
    } catch (err) {
      const error = err instanceof AuthError ? err : new AuthError(GrpcStatus.UNAVAILABLE, `cannot authenticate: ${describe(err)}`, { cause: err });
      if (error.code !== GrpcStatus.UNAVAILABLE) this.remember(key, { ok: false, error });
      throw error;
    }
  }

  private remember(key: string, verdict: CacheEntry['verdict']): void {
    if (this.cache.size >= this.maxEntries) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(key, { expiresAt: this.clock.now() + this.ttlMs, verdict });
  }
}

export function describe(err: unknown): string {
  if (err instanceof ApiException) return `HTTP ${err.code}`;
  return err instanceof Error ? err.message : String(err);
}
