import { createHash, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import type { DeviceConfig } from '../config.ts';

/**
 * Device credentials [AUTH-1]: username = device id, password from the agent config,
 * plain (compared as SHA-256 digests in constant time, so neither content nor length
 * leaks) or `scrypt$N$salt$hash`. Deny by default: unknown ids fail after the same work.
 */
export type AuthResult =
  | { ok: true }
  | { ok: false; reason: 'unknown_device' | 'bad_password' | 'no_credentials' };

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest();
const DUMMY = sha('storelink-no-such-device');

interface Entry {
  plain?: Buffer;
  scrypt?: { N: number; salt: Buffer; hash: Buffer };
  /** Digests of passwords already verified by scrypt, so reconnect storms stay cheap. */
  verified: Set<string>;
}

export function hashDevicePassword(password: string, N = 16384): string {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, 32, { N, r: 8, p: 1, maxmem: 256 * N * 8 });
  return `scrypt$${N}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export class DeviceAuth {
  private readonly entries = new Map<string, Entry>();

  constructor(devices: readonly DeviceConfig[]) {
    for (const d of devices) {
      if (d.password !== undefined) {
        this.entries.set(d.id, { plain: sha(d.password), verified: new Set() });
      } else if (d.passwordHash) {
        const [, n, salt, hash] = d.passwordHash.split('$');
        this.entries.set(d.id, {
          scrypt: { N: Number(n), salt: Buffer.from(salt!, 'base64'), hash: Buffer.from(hash!, 'base64') },
          verified: new Set(),
        });
      }
    }
  }

  has(deviceId: string): boolean {
    return this.entries.has(deviceId);
  }

  check(username: string | undefined, password: Buffer | undefined): AuthResult {
    if (!username || !password) return { ok: false, reason: 'no_credentials' };
    const entry = this.entries.get(username);
    const digest = sha(password);
    if (!entry) {
      timingSafeEqual(digest, DUMMY);
      return { ok: false, reason: 'unknown_device' };
    }
    if (entry.plain) {
      return timingSafeEqual(digest, entry.plain) ? { ok: true } : { ok: false, reason: 'bad_password' };
    }
    const s = entry.scrypt!;
    const key = digest.toString('base64');
    if (entry.verified.has(key)) return { ok: true };
    const got = scryptSync(password, s.salt, s.hash.length, { N: s.N, r: 8, p: 1, maxmem: 256 * s.N * 8 });
    if (got.length === s.hash.length && timingSafeEqual(got, s.hash)) {
      entry.verified.add(key);
      return { ok: true };
    }
    return { ok: false, reason: 'bad_password' };
  }
}
