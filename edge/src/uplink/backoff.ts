/**
 * Reconnect delay for attempt `n` (0-based): exponential growth from `minMs` capped at
 * `maxMs`, with full jitter inside [minMs, cap] so a fleet that lost the cloud together
 * does not reconnect together [UPLINK-BACKOFF-1].
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random = Math.random): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(minMs + random() * (cap - minMs));
}
