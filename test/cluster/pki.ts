// Certificates and keys for the local control plane: one CA, serving and client certificates,
// and the service-account signing key, all ECDSA P-256 (fast to generate, accepted by every component).
// @peculiar/x509 resolves its services through tsyringe, which needs the reflect polyfill loaded first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 3600 * 1000;

export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

export interface Pki {
  caCertFile: string;
  caKeyFile: string;
  apiserverCertFile: string;
  apiserverKeyFile: string;
  adminCertFile: string;
  adminKeyFile: string;
  kubeletClientCertFile: string;
  kubeletClientKeyFile: string;
  nodeServingCertFile: string;
  nodeServingKeyFile: string;
  serviceAccountKeyFile: string;
  serviceAccountPubFile: string;
  /** PEM contents, for kubeconfigs that embed them. */
  caPem: string;
  admin: KeyPairPem;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function publicKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('spki', key);
  return x509.PemConverter.encode(der, 'PUBLIC KEY');
}

interface LeafRequest {
  commonName: string;
  organization?: string;
  dnsNames?: string[];
  ips?: string[];
  usage: 'server' | 'client' | 'both';
}

async function issueLeaf(ca: { cert: x509.X509Certificate; keys: CryptoKeyPair }, request: LeafRequest): Promise<KeyPairPem> {
  const keys = await newKeys();
  const ekus: string[] = [];
  if (request.usage !== 'client') ekus.push(x509.ExtendedKeyUsage.serverAuth);
  if (request.usage !== 'server') ekus.push(x509.ExtendedKeyUsage.clientAuth);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension(ekus),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  const names: x509.JsonGeneralName[] = [
    ...(request.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(request.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  const subject = request.organization ? `CN=${request.commonName}, O=${request.organization}` : `CN=${request.commonName}`;
  const cert = await x509.X509CertificateGenerator.create({
    subject,
    issuer: ca.cert.subject,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 30 * DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions,
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

/** Generates every certificate and key the control plane needs into `dir`. */
export async function generatePki(dir: string): Promise<Pki> {
  const caKeys = await newKeys();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=tessera-local-ca',
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 30 * DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const ca = { cert: caCert, keys: caKeys };
  const apiserver = await issueLeaf(ca, {
    commonName: 'kube-apiserver',
    dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
    ips: ['127.0.0.1', '10.0.0.1'],
    usage: 'server',
  });
  // system:masters bypasses RBAC: the harness and tests act as cluster admin, like kind's admin kubeconfig.
  const admin = await issueLeaf(ca, { commonName: 'tessera-admin', organization: 'system:masters', usage: 'client' });
  const kubeletClient = await issueLeaf(ca, { commonName: 'kube-apiserver-kubelet-client', organization: 'system:masters', usage: 'client' });
  const nodeServing = await issueLeaf(ca, { commonName: 'system:node:tessera-local', dnsNames: ['localhost'], ips: ['127.0.0.1'], usage: 'server' });
  const saKeys = await newKeys();

  const files = {
    caCertFile: join(dir, 'ca.crt'),
    caKeyFile: join(dir, 'ca.key'),
    apiserverCertFile: join(dir, 'apiserver.crt'),
    apiserverKeyFile: join(dir, 'apiserver.key'),
    adminCertFile: join(dir, 'admin.crt'),
    adminKeyFile: join(dir, 'admin.key'),
    kubeletClientCertFile: join(dir, 'kubelet-client.crt'),
    kubeletClientKeyFile: join(dir, 'kubelet-client.key'),
    nodeServingCertFile: join(dir, 'node-serving.crt'),
    nodeServingKeyFile: join(dir, 'node-serving.key'),
    serviceAccountKeyFile: join(dir, 'sa.key'),
    serviceAccountPubFile: join(dir, 'sa.pub'),
  };
  const caPem = caCert.toString('pem');
  const contents: [string, string][] = [
    [files.caCertFile, caPem],
    [files.caKeyFile, await privateKeyPem(caKeys.privateKey)],
    [files.apiserverCertFile, apiserver.certPem],
    [files.apiserverKeyFile, apiserver.keyPem],
    [files.adminCertFile, admin.certPem],
    [files.adminKeyFile, admin.keyPem],
    [files.kubeletClientCertFile, kubeletClient.certPem],
    [files.kubeletClientKeyFile, kubeletClient.keyPem],
    [files.nodeServingCertFile, nodeServing.certPem],
    [files.nodeServingKeyFile, nodeServing.keyPem],
    [files.serviceAccountKeyFile, await privateKeyPem(saKeys.privateKey)],
    [files.serviceAccountPubFile, await publicKeyPem(saKeys.publicKey)],
  ];
  await Promise.all(contents.map(([file, text]) => writeFile(file, text, { mode: 0o600 })));
  return { ...files, caPem, admin };
}
