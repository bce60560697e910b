// The operator's own small PKI: a CA and a serving certificate for the status hub, ECDSA
// P-256 (fast to generate, accepted by Node's TLS and grpc-js).
// @peculiar/x509 resolves its services through tsyringe, which needs the reflect polyfill first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
export const DAY_MS = 24 * 3600 * 1000;
/** Clock skew between the operator and a worker's node should not make a fresh cert "not yet valid". */
const BACKDATE_MS = 3600_000;

export interface CertKeyPem {
  certPem: string;
  keyPem: string;
}

export interface LeafNames {
  dnsNames: readonly string[];
  ipAddresses?: readonly string[];
}

async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

async function newKeys(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

async function importPrivateKey(keyPem: string): Promise<webcrypto.CryptoKey> {
  return webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(keyPem), KEY_ALGORITHM, true, ['sign']);
}

/** A self-signed CA valid from now (backdated an hour) for validityMs. */
export async function createCa(commonName: string, validityMs: number, now = new Date()): Promise<CertKeyPem> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${commonName}`,
    serialNumber: serial(),
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + validityMs),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: pem(cert), keyPem: await pkcs8Pem(keys.privateKey) };
}

/** PEM text normalized to \n line ends and one trailing newline, so bundles compare byte for byte. */
function pem(cert: x509.X509Certificate): string {
  return `${cert.toString('pem').replace(/\r\n/g, '\n').trim()}\n`;
}

/** A server certificate for the given names, signed by the CA. */
export async function issueServingCert(ca: CertKeyPem, names: LeafNames, validityMs: number, now = new Date()): Promise<CertKeyPem> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importPrivateKey(ca.keyPem);
  const keys = await newKeys();
  const sans: x509.JsonGeneralName[] = [
    ...names.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...(names.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (sans.length === 0) throw new Error('a serving certificate needs at least one DNS name or IP address');
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${names.dnsNames[0] ?? names.ipAddresses?.[0] ?? 'tessera'}`,
    issuer: caCert.subject,
    serialNumber: serial(),
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + validityMs),
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      new x509.SubjectAlternativeNameExtension(sans),
    ],
  });
  return { certPem: pem(cert), keyPem: await pkcs8Pem(keys.privateKey) };
}

/** What the rotation logic needs to know about a certificate. */
export interface CertInfo {
  notBefore: Date;
  notAfter: Date;
  subject: string;
  issuer: string;
  dnsNames: string[];
  ipAddresses: string[];
}

/** Parses the first certificate of a PEM; throws with the reason when it is not one. */
export function certInfo(pem: string): CertInfo {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(pem);
  } catch (err) {
    throw new Error(`not a PEM certificate: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.toJSON() ?? [];
  return {
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    subject: cert.subject,
    issuer: cert.issuer,
    dnsNames: names.filter((n) => n.type === 'dns').map((n) => n.value),
    ipAddresses: names.filter((n) => n.type === 'ip').map((n) => n.value),
  };
}

/** True when the leaf was signed by the CA (signature checked, not only the names). */
export async function signedBy(leafPem: string, caPem: string): Promise<boolean> {
  try {
    const leaf = new x509.X509Certificate(leafPem);
    const ca = new x509.X509Certificate(caPem);
    return leaf.issuer === ca.subject && (await leaf.verify({ publicKey: ca, signatureOnly: true }));
  } catch {
    return false;
  }
}

/** Splits a PEM bundle into its certificates. */
export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((c) => `${c}\n`) ?? [];
}

function serial(): string {
  // Positive 16-byte serial (RFC 5280 allows up to 20 octets; a leading 0x01..0x7f keeps it positive).
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}
