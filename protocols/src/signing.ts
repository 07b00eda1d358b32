import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { canonicalJson } from './canonical.ts';
import type { CommandEnvelope, UnsignedCommand } from './commands.ts';
import { protoError, type StorelinkError } from './errors.ts';

/** The bytes a command signature covers: the topic it travels on plus every field but `sig`. */
export function commandSigningBytes(topic: string, cmd: UnsignedCommand): Buffer {
  const { v, id, type, target, issuedAt, expiresAt, payload } = cmd;
  return Buffer.from(canonicalJson({ topic, v, id, type, target, issuedAt, expiresAt, payload }), 'utf8');
}

export function loadPrivateKey(pem: string | KeyObject): KeyObject {
  if (typeof pem !== 'string') return pem;
  try {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`key type is ${key.asymmetricKeyType}`);
    return key;
  } catch (e) {
    throw protoError('PROTO_ERR_BAD_KEY', { kind: 'private', reason: (e as Error).message }, { cause: e });
  }
}

export function loadPublicKey(pem: string | KeyObject): KeyObject {
  if (typeof pem !== 'string') return pem;
  try {
    const key = createPublicKey(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`key type is ${key.asymmetricKeyType}`);
    return key;
  } catch (e) {
    throw protoError('PROTO_ERR_BAD_KEY', { kind: 'public', reason: (e as Error).message }, { cause: e });
  }
}

export function generateSigningKeys(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

export function signCommand(
  privateKey: KeyObject | string,
  topic: string,
  cmd: UnsignedCommand,
): CommandEnvelope {
  const sig = sign(null, commandSigningBytes(topic, cmd), loadPrivateKey(privateKey)).toString('base64');
  return { ...cmd, sig };
}

/**
 * Verifies signature [CMD-SIG-1] and expiry [CMD-EXP-1]. The signature is checked first:
 * an unsigned or tampered command is refused as such even when it has also expired.
 */
export function verifyCommand(
  publicKey: KeyObject | string,
  topic: string,
  cmd: CommandEnvelope,
  now: number,
): { ok: true } | { ok: false; error: StorelinkError } {
  let good = false;
  try {
    good = verify(
      null,
      commandSigningBytes(topic, cmd),
      loadPublicKey(publicKey),
      Buffer.from(cmd.sig, 'base64'),
    );
  } catch {
    good = false;
  }
  if (!good) return { ok: false, error: protoError('PROTO_ERR_BAD_SIGNATURE', { id: cmd.id }) };
  if (now >= cmd.expiresAt) {
    return {
      ok: false,
      error: protoError('PROTO_ERR_EXPIRED', {
        id: cmd.id,
        expiresAt: new Date(cmd.expiresAt).toISOString(),
        now: new Date(now).toISOString(),
      }),
    };
  }
  return { ok: true };
}
