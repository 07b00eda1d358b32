import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { generateSigningKeys, loadPrivateKey } from '@storelink/protocols';
import { cloudError } from './errors.ts';

export interface SigningKey {
  privateKey: KeyObject;
  publicKeyPem: string;
  /** True when this start generated the pair. */
  generated: boolean;
}

/**
 * The cloud's command signing key [CMD-SIG-1]. On first start the Ed25519 pair is
 * generated at `privateKeyFile` (mode 0600) with the public half next to it as
 * `<privateKeyFile>.pub`, which is what gateways are configured to trust. Later starts
 * read the private key and (re)write the public file from it, so the two cannot drift.
 */
export function loadOrCreateSigningKey(privateKeyFile: string): SigningKey {
  const pubFile = `${privateKeyFile}.pub`;
  try {
    let generated = false;
    if (!existsSync(privateKeyFile)) {
      const pair = generateSigningKeys();
      mkdirSync(dirname(privateKeyFile), { recursive: true });
      // 'wx': never overwrite a key another process created in the meantime.
      writeFileSync(privateKeyFile, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
      generated = true;
    }
    const privateKey = loadPrivateKey(readFileSync(privateKeyFile, 'utf8'));
    const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
    if (!existsSync(pubFile) || readFileSync(pubFile, 'utf8') !== publicKeyPem) {
      writeFileSync(pubFile, publicKeyPem, { mode: 0o644 });
    }
    return { privateKey, publicKeyPem, generated };
  } catch (e) {
    throw cloudError(
      'CLOUD_ERR_SIGNING_KEY',
      { file: privateKeyFile, reason: (e as Error).message },
      { cause: e },
    );
  }
}
