// The status hub's public surface, and the production wiring of its parts.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { CachingAuthenticator, KubeTokenReviewer } from './auth.js';
import { StatusHub } from './hub.js';
import { KubeOwnerResolver } from './owner.js';
import { tesseraStatusMapper } from './kind-mappers.js';
import { MergePatchStatusSink, type StatusSink } from './sink.js';

export { AuthError, CachingAuthenticator, KubeTokenReviewer, TOKEN_AUDIENCE, bearerToken } from './auth.js';
export type { Authenticator, CallerIdentity, PodIdentity, TokenReviewer } from './auth.js';
export { KubeOwnerResolver, TESSERA_GROUP, TESSERA_KINDS } from './owner.js';
export type { OwnerRef, OwnerResolver } from './owner.js';
export { StatusHub, NotConnectedError } from './hub.js';
export type { DirectiveTarget, StatusHubOptions } from './hub.js';
export { MergePatchStatusSink, defaultStatusMapper, setCondition } from './sink.js';
export { tesseraStatusMapper } from './kind-mappers.js';
export type { Condition, StatusMapper, StatusPatch, StatusSink } from './sink.js';
export type { ObjectState, PodServing } from './state.js';
export * from './wire.js';

export interface KubeStatusHubOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  registry?: Registry;
  /** Replaces the default MergePatchStatusSink (e.g. with kind-specific mappings). */
  sink?: StatusSink;
  /** TokenReview cache lifetime; at most 30 s. */
  authCacheTtlMs?: number;
  patchIntervalMs?: number;
  /** See StatusHubOptions.accepting. */
  accepting?: () => boolean;
}

/** A hub that authenticates with TokenReview + ownerReferences and patches /status. */
export function createKubeStatusHub(options: KubeStatusHubOptions): StatusHub {
  const authenticator = new CachingAuthenticator({
    reviewer: new KubeTokenReviewer(options.kubeConfig),
    resolver: new KubeOwnerResolver(options.kubeConfig),
    ttlMs: options.authCacheTtlMs,
  });
  return new StatusHub({
    authenticator,
    sink: options.sink ?? new MergePatchStatusSink(options.kubeConfig, { fieldManager: 'tessera-status-hub', mapper: tesseraStatusMapper }),
    logger: options.logger,
    registry: options.registry,
    patchIntervalMs: options.patchIntervalMs,
    accepting: options.accepting,
  });
}
