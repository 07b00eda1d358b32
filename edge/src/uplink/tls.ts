import { readFileSync } from 'node:fs';
import type { EdgeConfig } from '../config.ts';

/**
 * TLS material for the cloud connection (docs/fleet-provisioning.md): the cloud CA and
 * this gateway's client certificate + key, from inline PEM or from files. Read at every
 * connect attempt, so a certificate rotated on disk is presented at the next connect
 * [FLEET-ROTATE-1]; a file that cannot be read fails the attempt (retried with backoff).
 */
export interface UplinkTls {
  ca?: string;
  cert?: string;
  key?: string;
}

export function readUplinkTls(c: EdgeConfig['cloud']): UplinkTls {
  const pick = (pem: string | undefined, file: string | undefined, what: string): string | undefined => {
    if (pem) return pem;
    if (!file) return undefined;
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`cloud ${what} file ${file} cannot be read: ${(e as Error).message}`, { cause: e });
    }
  };
  const out: UplinkTls = {};
  const ca = pick(c.caPem, c.caFile, 'CA');
  const cert = pick(c.certPem, c.certFile, 'certificate');
  const key = pick(c.keyPem, c.keyFile, 'key');
  if (ca !== undefined) out.ca = ca;
  if (cert !== undefined) out.cert = cert;
  if (key !== undefined) out.key = key;
  return out;
}
