import { randomFillSync } from 'node:crypto';

/** Ids of sites, gateways and devices: safe as one MQTT topic level and as a file name. */
export const ID_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
const ID_RE = new RegExp(ID_PATTERN);

export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_RE.test(value) && value !== '.' && value !== '..';
}

// Crockford base32, as in the ULID spec.
const ENC = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const TIME_MAX = 2 ** 48 - 1;
const RAND_LEN = 16;
/** Random bytes drawn in bulk: one crypto call per 256 new milliseconds, not one per id. */
const pool = Buffer.alloc(RAND_LEN * 256);
let poolAt = pool.length;

let lastTime = -1;
let timePart = '';
/** The 16 random base32 digits of the last id, incremented within the same millisecond. */
const digits = new Uint8Array(RAND_LEN);
/** digits[0..11] as a string; only rebuilt when an increment carries into it. */
let randHead = '';

function encodeTime(t: number): string {
  let s = '';
  for (let i = 0; i < 10; i++) {
    s = ENC[t % 32]! + s;
    t = Math.floor(t / 32);
  }
  return s;
}

function freshRandom(): void {
  if (poolAt + RAND_LEN > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  for (let i = 0; i < RAND_LEN; i++) digits[i] = pool[poolAt + i]! & 31;
  poolAt += RAND_LEN;
  // Keep the top bit clear so ~2^79 increments fit before the random part could overflow.
  digits[0] = digits[0]! & 15;
  randHead = '';
  for (let i = 0; i < 12; i++) randHead += ENC[digits[i]!];
}

/** +1 on the random part; returns false on overflow (cannot happen in practice, see freshRandom). */
function increment(): boolean {
  for (let i = RAND_LEN - 1; i >= 0; i--) {
    if (digits[i]! < 31) {
      digits[i]!++;
      if (i < 12) {
        randHead = '';
        for (let j = 0; j < 12; j++) randHead += ENC[digits[j]!];
      }
      return true;
    }
    digits[i] = 0;
  }
  return false;
}

/**
 * A ULID: sortable by creation time, unique without coordination. Monotonic within this
 * process like ulidx's `monotonicFactory`: in the same (or an earlier) millisecond the
 * random part of the previous id is incremented, so ids made later always sort later.
 */
export function newId(now: number = Date.now()): string {
  if (!Number.isFinite(now) || now < 0 || now > TIME_MAX) throw new RangeError(`invalid ULID time: ${now}`);
  const t = Math.floor(now);
  if (t > lastTime || !increment()) {
    if (t > lastTime) {
      lastTime = t;
      timePart = encodeTime(t);
    }
    freshRandom();
  }
  return timePart + randHead + ENC[digits[12]!] + ENC[digits[13]!] + ENC[digits[14]!] + ENC[digits[15]!];
}
