// How the operator gets credentials for its status hub: managed TLS by default, plaintext
// only when asked for (local development, where workers run on the same host).
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ServingTls } from './credentials.js';
import { TlsStore, type TlsStoreOptions } from './store.js';

export { RotatingServerCredentials, ServingTls, staticServerCredentials } from './credentials.js';
export { CA_CONFIGMAP_NAME, CA_KEY, TLS_SECRET_NAME, TlsStore } from './store.js';
export type { TlsMaterial, TlsStoreOptions } from './store.js';

export interface HubCredentials {
  credentials: grpc.ServerCredentials;
  /** Stops certificate renewal. */
  stop(): void;
}

export type HubCredentialsOptions = { insecure: true; logger: Logger } | ({ insecure?: false; logger: Logger } & TlsStoreOptions);

/** Insecure credentials, or a managed Secret + CA ConfigMap with renewal before expiry. */
export async function hubCredentials(options: HubCredentialsOptions): Promise<HubCredentials> {
  if (options.insecure) {
    options.logger.warn('status hub serves without TLS (--insecure): worker tokens cross the network in plaintext');
    return { credentials: grpc.ServerCredentials.createInsecure(), stop: () => undefined };
  }
  const tls = await ServingTls.start({ store: new TlsStore(options), logger: options.logger });
  return { credentials: tls.credentials, stop: () => tls.stop() };
}
