import type { Lane } from '@storelink/protocols';

/**
 * LevelDB key layout (docs/reliability.md, "Key layout"). Every key is ASCII, so byte
 * order is string order; seqs are 16-digit zero-padded so they sort numerically.
 *
 *   o!{lane}!{seq16}        -> envelope JSON, exactly as it travels uplink
 *   m!epoch                 -> outbox epoch (ULID) [OUTBOX-EPOCH-1]
 *   m!next!{lane}           -> next seq to assign
 *   m!acked!{lane}          -> highest seq acknowledged by the cloud
 *   m!low!{lane}            -> every lower seq was acknowledged or deliberately dropped
 *   m!drops!{lane}          -> {"ttl":n,"budget":n,"corruption":n}, cumulative
 *   m!lost!{lane}!{from16}  -> last seq of a range already reported lost
 *   d!{record16}            -> resend dedupe entries of one group commit [INGEST-DEDUPE-1]
 *   k!{key}                 -> KvStore value
 */

export const SEQ_DIGITS = 16;

export function pad(seq: number): string {
  return String(seq).padStart(SEQ_DIGITS, '0');
}

export const eventPrefix = (lane: Lane): string => `o!${lane}!`;
export const eventKey = (lane: Lane, seq: number): string => `o!${lane}!${pad(seq)}`;
/** Exclusive upper bound of the range of keys starting with `prefix` (last character + 1). */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

export function seqOfEventKey(lane: Lane, key: string): number | undefined {
  const digits = key.slice(eventPrefix(lane).length);
  if (digits.length !== SEQ_DIGITS || !/^\d+$/.test(digits)) return undefined;
  const seq = Number(digits);
  return Number.isSafeInteger(seq) && seq >= 1 ? seq : undefined;
}

export const EPOCH_KEY = 'm!epoch';
export const metaKey = (field: 'next' | 'acked' | 'low' | 'drops', lane: Lane): string =>
  `m!${field}!${lane}`;
export const lostPrefix = (lane: Lane): string => `m!lost!${lane}!`;
export const lostKey = (lane: Lane, from: number): string => `m!lost!${lane}!${pad(from)}`;

export const DEDUPE_PREFIX = 'd!';
export const dedupeRecordKey = (record: number): string => `d!${pad(record)}`;

export const KV_PREFIX = 'k!';
export const kvKey = (key: string): string => `k!${key}`;
