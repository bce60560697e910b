// The hub's TLS material lives in a Secret the operator owns (tessera-operator-tls, type
// kubernetes.io/tls plus ca.crt and ca.key), so every operator replica and restart serves
// the same certificate, and the CA bundle is published in a ConfigMap (tessera-ca, key
// ca.crt) that worker pods mount. The serving certificate is re-issued well before expiry
// by the same CA, so workers never need a new bundle for it; when the CA itself ages out,
// the published bundle carries old and new CA until the old one expires.
import { ApiException, CoreV1Api, type KubeConfig, type V1ConfigMap, type V1Secret } from '@kubernetes/client-node';
import { certInfo, createCa, DAY_MS, issueServingCert, signedBy, splitPem, type CertKeyPem, type LeafNames } from './pki.js';

export const TLS_SECRET_NAME = 'tessera-operator-tls';
export const CA_CONFIGMAP_NAME = 'tessera-ca';
export const CA_KEY = 'ca.crt';

export interface TlsMaterial {
  /** PEM bundle workers must trust: the current CA first, a still-valid previous CA after it. */
  caBundlePem: string;
  certPem: string;
  keyPem: string;
  notAfter: Date;
}

export interface TlsStoreOptions {
  kubeConfig: KubeConfig;
  /** Namespace of the operator, where the Secret lives. */
  namespace: string;
  secretName?: string;
  /** Names the hub's Service answers to, e.g. tessera-operator.tessera-system.svc. */
  names: LeafNames;
  /** Namespaces to publish the tessera-ca ConfigMap in (workers mount it from their own namespace). */
  caNamespaces: readonly string[];
  caConfigMapName?: string;
  servingValidityMs?: number;
  caValidityMs?: number;
  /** Re-issue when less than this fraction of the lifetime is left (cert-manager's default is 1/3). */
  renewFraction?: number;
  /** Labels for what we create, e.g. app.kubernetes.io/managed-by. */
  labels?: Record<string, string>;
  now?: () => Date;
}

/** Reads, validates and (re)creates the Secret and ConfigMap. Idempotent. */
export class TlsStore {
  private readonly core: CoreV1Api;
  private readonly secretName: string;
  private readonly now: () => Date;

  constructor(private readonly options: TlsStoreOptions) {
    this.core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.secretName = options.secretName ?? TLS_SECRET_NAME;
    this.now = options.now ?? (() => new Date());
  }

  /** Returns usable material, writing a new Secret when the stored one is missing, invalid or due. */
  async ensure(): Promise<TlsMaterial> {
    for (let attempt = 0; ; attempt++) {
      const secret = await this.readSecret();
      const current = secret ? await this.usable(secret) : undefined;
      if (current) {
        await this.publishCa(current.caBundlePem);
        return current;
      }
      const next = await this.generate(secret);
      try {
        await this.writeSecret(secret, next);
      } catch (err) {
        // Another replica won the race (409 on create or on update); use what it wrote.
        if (err instanceof ApiException && err.code === 409 && attempt < 3) continue;
        throw new Error(`cannot write Secret ${this.options.namespace}/${this.secretName}: ${describe(err)}`, { cause: err });
      }
      await this.publishCa(next.material.caBundlePem);
      return next.material;
    }
  }

  /** When ensure() should run again: when the serving cert enters its renewal window. */
  renewAt(material: TlsMaterial): Date {
    const validity = this.options.servingValidityMs ?? 90 * DAY_MS;
    return new Date(material.notAfter.getTime() - validity * (this.options.renewFraction ?? 1 / 3));
  }

  private async usable(secret: V1Secret): Promise<TlsMaterial | undefined> {
    const data = secret.data ?? {};
    const [certPem, keyPem, caBundlePem, caKeyPem] = ['tls.crt', 'tls.key', 'ca.crt', 'ca.key'].map((k) => decode(data[k]));
    if (!certPem || !keyPem || !caBundlePem || !caKeyPem) return undefined;
    const caPem = splitPem(caBundlePem)[0];
    if (!caPem) return undefined;
    try {
      const leaf = certInfo(certPem);
      const ca = certInfo(caPem);
      const now = this.now().getTime();
      const renewFraction = this.options.renewFraction ?? 1 / 3;
      const due = (from: Date, to: Date) => to.getTime() - now < (to.getTime() - from.getTime()) * renewFraction;
      const { dnsNames, ipAddresses = [] } = this.options.names;
      const covers = dnsNames.every((n) => leaf.dnsNames.includes(n)) && ipAddresses.every((ip) => leaf.ipAddresses.includes(ip));
      if (due(leaf.notBefore, leaf.notAfter) || due(ca.notBefore, ca.notAfter) || !covers || !(await signedBy(certPem, caPem))) return undefined;
      return { caBundlePem, certPem, keyPem, notAfter: leaf.notAfter };
    } catch {
      return undefined; // unparseable material is replaced, not served
    }
  }

  private async generate(previous: V1Secret | undefined): Promise<{ material: TlsMaterial; caKeyPem: string }> {
    const now = this.now();
    const caValidity = this.options.caValidityMs ?? 5 * 365 * DAY_MS;
    const renewFraction = this.options.renewFraction ?? 1 / 3;
    const prevBundle = decode(previous?.data?.['ca.crt']);
    const prevCaPem = prevBundle ? splitPem(prevBundle)[0] : undefined;
    const prevCaKey = decode(previous?.data?.['ca.key']);
    let ca: CertKeyPem | undefined;
    let retiring: string | undefined;
    if (prevCaPem && prevCaKey) {
      try {
        const info = certInfo(prevCaPem);
        const left = info.notAfter.getTime() - now.getTime();
        if (left > (info.notAfter.getTime() - info.notBefore.getTime()) * renewFraction) ca = { certPem: prevCaPem, keyPem: prevCaKey };
        else if (left > 0) retiring = prevCaPem;
      } catch {
        // a corrupt CA is simply replaced
      }
    }
    // Keep the CA while it is young: workers already trust it, so only the leaf changes.
    ca ??= await createCa('tessera-operator-ca', caValidity, now);
    const leaf = await issueServingCert(ca, this.options.names, this.options.servingValidityMs ?? 90 * DAY_MS, now);
    const caBundlePem = retiring ? ca.certPem + retiring : ca.certPem;
    return { material: { caBundlePem, certPem: leaf.certPem, keyPem: leaf.keyPem, notAfter: certInfo(leaf.certPem).notAfter }, caKeyPem: ca.keyPem };
  }

  private async readSecret(): Promise<V1Secret | undefined> {
    try {
      return await this.core.readNamespacedSecret({ name: this.secretName, namespace: this.options.namespace });
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw new Error(`cannot read Secret ${this.options.namespace}/${this.secretName}: ${describe(err)}`, { cause: err });
    }
  }

  private async writeSecret(previous: V1Secret | undefined, next: { material: TlsMaterial; caKeyPem: string }): Promise<void> {
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: this.secretName, namespace: this.options.namespace, labels: this.options.labels, resourceVersion: previous?.metadata?.resourceVersion },
      type: 'kubernetes.io/tls',
      data: {
        'tls.crt': encode(next.material.certPem),
        'tls.key': encode(next.material.keyPem),
        'ca.crt': encode(next.material.caBundlePem),
        'ca.key': encode(next.caKeyPem),
      },
    };
    if (!previous) await this.core.createNamespacedSecret({ namespace: this.options.namespace, body });
    else if (previous.type !== 'kubernetes.io/tls') {
      // The type of a Secret is immutable; a wrong one is replaced whole.
      await this.core.deleteNamespacedSecret({ name: this.secretName, namespace: this.options.namespace });
      await this.core.createNamespacedSecret({ namespace: this.options.namespace, body: { ...body, metadata: { ...body.metadata, resourceVersion: undefined } } });
    } else await this.core.replaceNamespacedSecret({ name: this.secretName, namespace: this.options.namespace, body });
  }

  private async publishCa(caBundlePem: string): Promise<void> {
    const name = this.options.caConfigMapName ?? CA_CONFIGMAP_NAME;
    for (const namespace of this.options.caNamespaces) {
      const body: V1ConfigMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels: this.options.labels }, data: { [CA_KEY]: caBundlePem } };
      try {
        const existing = await this.core.readNamespacedConfigMap({ name, namespace }).catch((err: unknown) => {
          if (err instanceof ApiException && err.code === 404) return undefined;
          throw err;
        });
        if (!existing) await this.core.createNamespacedConfigMap({ namespace, body });
        else if (existing.data?.[CA_KEY] !== caBundlePem) {
          await this.core.replaceNamespacedConfigMap({ name, namespace, body: { ...body, metadata: { ...body.metadata, resourceVersion: existing.metadata?.resourceVersion } } });
        }
      } catch (err) {
        throw new Error(`cannot publish ConfigMap ${namespace}/${name}: ${describe(err)}`, { cause: err });
      }
    }
  }
}

function decode(value: string | undefined): string | undefined {
  return value ? Buffer.from(value, 'base64').toString('utf8') : undefined;
}
function encode(value: string): string {
  return Buffer.from(value, 'utf8').toString('base64');
}
function describe(err: unknown): string {
  // ApiException bodies of Secret calls may echo key material: status code only.
  if (err instanceof ApiException) return `HTTP ${err.code}`;
  return err instanceof Error ? err.message : String(err);
}
