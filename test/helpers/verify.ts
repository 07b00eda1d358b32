/**
 * The delivery check every torture run ends with: every PUBACKed device message must be
 * in the cloud store exactly once, and each device's messages must appear in the order
 * the device sent them within their lane's seq order.
 */
export interface AckedMessage {
  device: string;
  mid: string;
  /** The device's send index. */
  n: number;
}

/** What the harness needs of a stored cloud event. */
export interface StoredRow {
  epoch: string;
  lane: string;
  seq: number;
  device: string;
  mid?: string;
  payload?: unknown;
}

export interface DeliveryReport {
  acked: number;
  /** Stored events that carry a message id from this run (resends included, so duplicates show). */
  stored: number;
  lost: number;
  duplicates: number;
  reordered: number;
  /** Seqs missing between the lowest and highest stored seq of a lane (per epoch). */
  seqGaps: number;
  /** Up to 10 example lost mids, for the log. */
  lostExamples: string[];
}

export function midOf(row: StoredRow): string | undefined {
  if (row.mid) return row.mid;
  const p = row.payload as { id?: unknown } | undefined;
  return typeof p?.id === 'string' ? p.id : undefined;
}

export function verifyDelivery(
  acked: AckedMessage[],
  rows: StoredRow[],
  isOurs: (mid: string) => boolean,
): DeliveryReport {
  const ackedIndex = new Map<string, AckedMessage>();
  for (const a of acked) ackedIndex.set(a.mid, a);
  const seen = new Map<string, number>();
  let stored = 0;
  let duplicates = 0;
  let reordered = 0;
  let seqGaps = 0;
  // Lane order: sort by (epoch, lane, seq); the API already returns seq order per lane.
  const byLane = new Map<string, StoredRow[]>();
  for (const r of rows) {
    const k = `${r.epoch}/${r.lane}`;
    const l = byLane.get(k);
    if (l) l.push(r);
    else byLane.set(k, [r]);
  }
  for (const list of byLane.values()) {
    list.sort((a, b) => a.seq - b.seq);
    const first = list[0];
    const last = list[list.length - 1];
    if (first && last) seqGaps += last.seq - first.seq + 1 - new Set(list.map((r) => r.seq)).size;
    const highest = new Map<string, number>();
    for (const r of list) {
      const mid = midOf(r);
      if (!mid || !isOurs(mid)) continue;
      stored++;
      const c = (seen.get(mid) ?? 0) + 1;
      seen.set(mid, c);
      if (c > 1) duplicates++;
      const a = ackedIndex.get(mid);
      if (!a) continue;
      const top = highest.get(a.device) ?? -1;
      if (a.n < top) reordered++;
      else highest.set(a.device, a.n);
    }
  }
  let lost = 0;
  const lostExamples: string[] = [];
  for (const mid of ackedIndex.keys()) {
    if (!seen.has(mid)) {
      lost++;
      if (lostExamples.length < 10) lostExamples.push(mid);
    }
  }
  return { acked: ackedIndex.size, stored, lost, duplicates, reordered, seqGaps, lostExamples };
}
