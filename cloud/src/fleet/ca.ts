// tsyringe (inside @peculiar/x509) needs the Reflect metadata polyfill loaded first.
import 'reflect-metadata';
import { createHash, X509Certificate as NodeX509, webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { cloudError } from '../errors.ts';

/**
 * The cloud's own certificate authority for gateway mutual TLS (docs/fleet-provisioning.md).
 *
 * - One ECDSA P-256 CA key + self-signed certificate, kept in `<dir>/ca.key.pem` and
 *   `<dir>/ca.cert.pem` (mode 0600 for keys), created on first start [FLEET-CA-1].
 * - The broker's TLS listener gets a server certificate from the same CA, with the host
 *   names and IPs gateways dial as SANs (re-issued when that list changes or it is near
 *   expiry) [FLEET-CA-2].
 * - A gateway certificate names the gateway id as CN and as SAN URI
 *   `urn:storelink:gateway:<id>`, extended key usage clientAuth only, and is recorded by
 *   its SHA-256 fingerprint: the broker accepts a certificate only when the record says it
 *   is current (not rotated, not revoked) [FLEET-CERT-1].
 *
 * Built on @peculiar/x509 over Node's WebCrypto (no openssl binary, no native module).
 */

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
const crypto = webcrypto;
x509.cryptoProvider.set(crypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY = 24 * 3600 * 1000;
export const GATEWAY_URN_PREFIX = 'urn:storelink:gateway:';

export interface IssuedCertificate {
  certPem: string;
  /** Only when the CA generated the key pair (no CSR given); returned once, never stored. */
  keyPem?: string;
  serial: string;
  /** Lower-case hex SHA-256 of the DER certificate (what the broker looks up). */
  fingerprint: string;
  notBefore: number;
  notAfter: number;
}

export interface CertificateAuthority {
  readonly caCertPem: string;
  /** A gateway certificate: for the CSR's key, or for a key pair generated here. */
  issueGatewayCertificate(
    gatewayId: string,
    site: string,
    opts: { now: number; validityDays: number; csrPem?: string },
  ): Promise<IssuedCertificate>;
  /** The broker's server certificate and key for these host names / IPs. */
  serverCertificate(hosts: readonly string[], now: number): Promise<{ certPem: string; keyPem: string }>;
}

export function certificateFingerprint(certPem: string): string {
  return createHash('sha256').update(new NodeX509(certPem).raw).digest('hex');
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;
}

function fromPem(pem: string): ArrayBuffer {
  const b64 = pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const buf = Buffer.from(b64, 'base64');
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  return toPem(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

async function importKeyPem(pem: string): Promise<CryptoKey> {
  return crypto.subtle.importKey('pkcs8', fromPem(pem), EC, true, ['sign']);
}

/** 16 random bytes, top bit clear (a positive INTEGER), as x509 wants it: hex. */
function randomSerial(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0] = b[0]! & 0x7f;
  return Buffer.from(b).toString('hex');
}

/** Loads the CA from `dir`, creating it (and `dir`) on first use [FLEET-CA-1]. */
export async function loadOrCreateCa(dir: string, now: number): Promise<CertificateAuthority> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, 'ca.key.pem');
  const certFile = join(dir, 'ca.cert.pem');
  let keyPem: string;
  let certPem: string;
  if (existsSync(keyFile) && existsSync(certFile)) {
    keyPem = readFileSync(keyFile, 'utf8');
    certPem = readFileSync(certFile, 'utf8');
  } else {
    const keys = await generateKeys();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: 'CN=storelink fleet CA, O=storelink',
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 20 * 365 * DAY),
      signingAlgorithm: SIGN,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    keyPem = await exportKeyPem(keys.privateKey);
    certPem = cert.toString('pem');
    writeFileSync(keyFile, keyPem, { mode: 0o600 });
    writeFileSync(certFile, certPem);
  }
  return openCa(dir, certPem, await importKeyPem(keyPem));
}

function openCa(dir: string, caCertPem: string, caKey: CryptoKey): CertificateAuthority {
  const caCert = new x509.X509Certificate(caCertPem);

  const sign = async (p: {
    subject: string;
    publicKey: x509.PublicKeyType;
    notBefore: number;
    notAfter: number;
    extensions: x509.Extension[];
  }) =>
    x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: p.subject,
      issuer: caCert.subject,
      notBefore: new Date(p.notBefore),
      notAfter: new Date(p.notAfter),
      publicKey: p.publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGN,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
        ...p.extensions,
      ],
    });

  return {
    caCertPem,

    async issueGatewayCertificate(gatewayId, site, opts) {
      let publicKey: x509.PublicKeyType;
      let keyPem: string | undefined;
      if (opts.csrPem !== undefined) {
        publicKey = await csrPublicKey(opts.csrPem);
      } else {
        const keys = await generateKeys();
        publicKey = keys.publicKey;
        keyPem = await exportKeyPem(keys.privateKey);
      }
      const notBefore = opts.now - 5 * 60_000; // a little clock skew at the gateway
      const notAfter = opts.now + opts.validityDays * DAY;
      // [FLEET-CERT-1] Whatever the CSR asked for, the subject is the gateway id.
      const cert = await sign({
        subject: `CN=${gatewayId}, OU=${site}, O=storelink`,
        publicKey,
        notBefore,
        notAfter,
        extensions: [
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
          new x509.SubjectAlternativeNameExtension([
            { type: 'url', value: `${GATEWAY_URN_PREFIX}${gatewayId}` },
          ]),
        ],
      });
      const certPem = cert.toString('pem');
      return {
        certPem,
        ...(keyPem !== undefined ? { keyPem } : {}),
        serial: cert.serialNumber.toLowerCase(),
        fingerprint: certificateFingerprint(certPem),
        notBefore: cert.notBefore.getTime(),
        notAfter: cert.notAfter.getTime(),
      };
    },

    async serverCertificate(hosts, now) {
      // [FLEET-CA-2] Reuse the stored one while it names the same hosts and has 30+ days left.
      const key = hosts.join(',');
      const certFile = join(dir, 'server.cert.pem');
      const keyFile = join(dir, 'server.key.pem');
      const hostsFile = join(dir, 'server.hosts');
      if (existsSync(certFile) && existsSync(keyFile) && existsSync(hostsFile)) {
        const certPem = readFileSync(certFile, 'utf8');
        const valid = new NodeX509(certPem).validTo;
        if (readFileSync(hostsFile, 'utf8') === key && Date.parse(valid) - now > 30 * DAY) {
          return { certPem, keyPem: readFileSync(keyFile, 'utf8') };
        }
      }
      const keys = await generateKeys();
      const cert = await sign({
        subject: `CN=${hosts[0] ?? 'localhost'}, O=storelink`,
        publicKey: keys.publicKey,
        notBefore: now - DAY,
        notAfter: now + 2 * 365 * DAY,
        extensions: [
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
          new x509.SubjectAlternativeNameExtension(
            hosts.map((h) =>
              isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h },
            ),
          ),
        ],
      });
      const out = { certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey) };
      writeFileSync(keyFile, out.keyPem, { mode: 0o600 });
      writeFileSync(certFile, out.certPem);
      writeFileSync(hostsFile, key);
      return out;
    },
  };
}

/** The public key of a CSR whose self-signature verifies; CLOUD_ERR_BAD_REQUEST otherwise. */
async function csrPublicKey(csrPem: string): Promise<x509.PublicKeyType> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (e) {
    throw cloudError('CLOUD_ERR_BAD_REQUEST', {
      errors: `csrPem is not a PEM PKCS#10 request: ${(e as Error).message}`,
    });
  }
  if (!(await csr.verify())) {
    throw cloudError('CLOUD_ERR_BAD_REQUEST', { errors: 'csrPem: the request signature does not verify' });
  }
  return csr.publicKey;
}

/** The gateway id a verified client certificate names: CN, and the SAN URI if present must agree. */
export function gatewayIdOfPeer(peer: {
  subject?: { CN?: string | string[] };
  subjectaltname?: string;
}): string | undefined {
  const cn = peer.subject?.CN;
  const id = Array.isArray(cn) ? undefined : cn;
  if (!id) return undefined;
  const uris = (peer.subjectaltname ?? '')
    .split(', ')
    .filter((s) => s.startsWith(`URI:${GATEWAY_URN_PREFIX}`))
    .map((s) => s.slice(`URI:${GATEWAY_URN_PREFIX}`.length));
  if (uris.length > 0 && !uris.every((u) => u === id)) return undefined;
  return id;
}
