// Server credentials for the hub that can take a new certificate without a restart.
// grpc.ServerCredentials.createSsl() fixes its certificate at creation, and swapping it
// would mean rebinding the server and dropping every worker's stream. grpc-js servers
// already watch their credentials for new secure-context options (the hook its certificate
// providers use), so this class is createSsl() plus a rotate() that feeds that hook.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { TlsMaterial, TlsStore } from './store.js';

export class RotatingServerCredentials extends grpc.ServerCredentials {
  constructor(material: Pick<TlsMaterial, 'certPem' | 'keyPem'>) {
    // requestCert: false — workers authenticate with their ServiceAccount token, not a client cert.
    super({ requestCert: false }, contextOf(material));
  }

  /** New connections use the new certificate; open streams keep theirs. */
  rotate(material: Pick<TlsMaterial, 'certPem' | 'keyPem'>): void {
    this.updateSecureContextOptions(contextOf(material));
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

function contextOf(material: Pick<TlsMaterial, 'certPem' | 'keyPem'>) {
  return { cert: [Buffer.from(material.certPem)], key: [Buffer.from(material.keyPem)] };
}

/** Static credentials, as grpc-js makes them; for material that is never rotated. */
export function staticServerCredentials(material: Pick<TlsMaterial, 'certPem' | 'keyPem'>): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(material.certPem), private_key: Buffer.from(material.keyPem) }], false);
}

export interface ServingTlsOptions {
  store: TlsStore;
  logger: Logger;
  /** Upper bound between checks, so a Secret edited or deleted by hand is noticed (default 1 h). */
  recheckMs?: number;
  /** Retry delay after a failed check (default 30 s). */
  retryMs?: number;
}

/**
 * Keeps the hub's certificate current: ensure() once at start, then again when the
 * serving certificate enters its renewal window (or hourly), rotating the credentials.
 */
export class ServingTls {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  private constructor(
    private readonly options: ServingTlsOptions,
    readonly credentials: RotatingServerCredentials,
    private material: TlsMaterial,
  ) {}

  static async start(options: ServingTlsOptions): Promise<ServingTls> {
    const material = await options.store.ensure();
    const tls = new ServingTls(options, new RotatingServerCredentials(material), material);
    tls.schedule();
    return tls;
  }

  get current(): TlsMaterial {
    return this.material;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Runs one check now; exposed so tests and a Secret watch can trigger it. */
  async refresh(): Promise<void> {
    const next = await this.options.store.ensure();
    if (next.certPem !== this.material.certPem) {
      this.options.logger.info({ notAfter: next.notAfter.toISOString() }, 'status hub serving certificate rotated');
      this.credentials.rotate(next);
    }
    this.material = next;
  }

  private schedule(delayMs?: number): void {
    if (this.stopped) return;
    const untilRenewal = this.options.store.renewAt(this.material).getTime() - Date.now();
    const wait = delayMs ?? Math.max(1000, Math.min(untilRenewal, this.options.recheckMs ?? 3600_000));
    this.timer = setTimeout(() => {
      this.refresh().then(
        () => this.schedule(),
        (err: unknown) => {
          this.options.logger.error({ err }, 'cannot renew the status hub certificate; serving the current one');
          this.schedule(this.options.retryMs ?? 30_000);
        },
      );
    }, wait);
    this.timer.unref();
  }
}
