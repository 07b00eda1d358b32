import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LANES, type Lane, newId } from '@storelink/protocols';
import { ClassicLevel } from 'classic-level';
import { addDrops, NO_DROPS, newLaneState, type LaneState } from './core.ts';
import { type DedupeEntry, decodeRecord } from './dedupe.ts';
import type { LogFn } from './engine.ts';
import {
  DEDUPE_PREFIX,
  EPOCH_KEY,
  eventKey,
  eventPrefix,
  lostKey,
  lostPrefix,
  metaKey,
  prefixEnd,
  seqOfEventKey,
} from './keys.ts';
import { SegmentIndex, segmentLines, segmentRuns, segmentValue } from './segments.ts';
import type { DropReason, RecoveryReport } from './types.ts';

/**
 * Start-up of the LevelDB store [OUTBOX-RECOVER-1]: open (repairing when LevelDB itself
 * reports corruption), then verify every lane against its counters and report, exactly,
 * which seqs could not be read back. Each step is a small function; `recover()` runs them.
 */

export type Db = ClassicLevel<string, string>;
type Batch = Array<{ type: 'put'; key: string; value: string } | { type: 'del'; key: string }>;

export interface Watermark {
  epoch: string;
  next: Record<Lane, number>;
}

export interface Recovered {
  epoch: string;
  lanes: Record<Lane, LaneState>;
  /** Per lane, the stored segments after recovery [OUTBOX-SEG-1]. */
  segments: Record<Lane, SegmentIndex>;
  /** Dedupe records in write order. */
  dedupe: Array<{ record: number; entries: DedupeEntry[] }>;
  report: RecoveryReport;
}

function isCorruption(err: unknown): boolean {
  for (
    let e = err as { code?: string; message?: string; cause?: unknown } | undefined;
    e;
    e = e.cause as typeof e
  ) {
    if (e.code === 'LEVEL_CORRUPTION' || /corrupt/i.test(e.message ?? '')) return true;
  }
  return false;
}

/** A directory with LevelDB files but no CURRENT would silently open as a *new* database. */
function lostCurrentFile(dir: string): boolean {
  if (!existsSync(dir) || existsSync(join(dir, 'CURRENT'))) return false;
  return readdirSync(dir).some((f) => /\.(ldb|log|sst)$|^MANIFEST-/.test(f));
}

export async function openDb(dir: string, log: LogFn): Promise<{ db: Db; repaired: boolean }> {
  let repaired = false;
  if (lostCurrentFile(dir)) {
    log('error', 'outbox store lost its CURRENT file; repairing', { dir });
    await ClassicLevel.repair(dir);
    repaired = true;
  }
  const db: Db = new ClassicLevel<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  try {
    await db.open();
    return { db, repaired };
  } catch (err) {
    if (!isCorruption(err)) throw err;
    log('error', 'outbox store is corrupt; running LevelDB repair', { dir, err: String(err) });
  }
  await db.close().catch(() => {});
  await ClassicLevel.repair(dir);
  const again: Db = new ClassicLevel<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  await again.open();
  return { db: again, repaired: true };
}

async function getNumber(db: Db, key: string): Promise<number | undefined> {
  const v = await db.get(key);
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

async function getDrops(db: Db, lane: Lane): Promise<Record<DropReason, number>> {
  const v = await db.get(metaKey('drops', lane));
  if (v === undefined) return NO_DROPS();
  try {
    const d = JSON.parse(v) as Record<DropReason, number>;
    return addDrops(NO_DROPS(), { ttl: d.ttl || 0, budget: d.budget || 0, corruption: d.corruption || 0 });
  } catch {
    return NO_DROPS();
  }
}

async function loadLaneMeta(db: Db, lane: Lane): Promise<LaneState> {
  const s = newLaneState(lane);
  s.next = Math.max(1, (await getNumber(db, metaKey('next', lane))) ?? 1);
  s.acked = (await getNumber(db, metaKey('acked', lane))) ?? 0;
  s.low = Math.max(s.acked + 1, (await getNumber(db, metaKey('low', lane))) ?? 1);
  s.drops = await getDrops(db, lane);
  return s;
}

/** A stored value is readable when it parses and names the lane and seq of its key. */
function readableRts(value: string, lane: Lane, seq: number): number | undefined {
  try {
    const env = JSON.parse(value) as { lane?: unknown; seq?: unknown; rts?: unknown };
    if (env.lane !== lane || env.seq !== seq || typeof env.rts !== 'number') return undefined;
    return env.rts;
  } catch {
    return undefined;
  }
}

/**
 * Scans one lane's segments [OUTBOX-SEG-1] into its index and segment index. Lines below
 * `low` are acknowledged or dropped leftovers: a segment of nothing else is deleted, one
 * that still holds live lines is kept as it is. A segment with an unreadable line (or
 * lines that do not name the lane and seq of their place) is rewritten as the runs of its
 * readable live lines; the unreadable ones become holes, reported lost.
 */
async function scanLane(db: Db, s: LaneState, segs: SegmentIndex, ops: Batch): Promise<number> {
  const prefix = eventPrefix(s.lane);
  const it = db.iterator({ gte: prefix, lt: prefixEnd(prefix) });
  let unreadable = 0;
  try {
    for (let rows = await it.nextv(1000); rows.length > 0; rows = await it.nextv(1000)) {
      for (const [key, value] of rows) unreadable += scanSegment(s, segs, key, value, ops);
    }
  } finally {
    await it.close();
  }
  return unreadable;
}

/** One stored segment into the lane state; returns how many of its lines were unreadable. */
function scanSegment(s: LaneState, segs: SegmentIndex, key: string, value: string, ops: Batch): number {
  const first = seqOfEventKey(s.lane, key);
  const lines = first === undefined ? [] : segmentLines(value);
  const live: Array<{ lane: Lane; seq: number; json: string; rts: number }> = [];
  let unreadable = first === undefined ? 1 : 0;
  // Segments never overlap; should one repeat a seq already held, the first copy stays.
  const held = s.queue.length > 0 ? s.queue.seqAt(s.queue.length - 1) : 0;
  let overlaps = false;
  for (let k = 0; k < lines.length; k++) {
    const seq = first! + k;
    const rts = readableRts(lines[k]!, s.lane, seq);
    if (rts === undefined) unreadable++;
    else if (seq <= held) overlaps = true;
    else if (seq >= s.low) live.push({ lane: s.lane, seq, json: lines[k]!, rts });
  }
  for (const e of live) {
    const bytes = Buffer.byteLength(e.json);
    s.queue.push(e.seq, bytes, e.rts);
    s.bytes += bytes;
  }
  if (unreadable === 0 && !overlaps && live.length > 0) {
    segs.push(first!, lines.length);
    return 0;
  }
  // Nothing live (a leftover), or damaged: delete it and put back what is readable and live.
  ops.push({ type: 'del', key });
  for (const run of segmentRuns(live)) {
    ops.push({ type: 'put', key: eventKey(s.lane, run.first), value: segmentValue(live, run) });
    segs.push(run.first, run.count);
  }
  return unreadable;
}

async function loadLostRanges(db: Db, lane: Lane, low: number, ops: Batch): Promise<Array<[number, number]>> {
  const prefix = lostPrefix(lane);
  const out: Array<[number, number]> = [];
  for await (const [key, value] of db.iterator({ gte: prefix, lt: prefixEnd(prefix) })) {
    const from = Number(key.slice(prefix.length));
    const to = Number(value);
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || to < low) ops.push({ type: 'del', key });
    else out.push([from, to]);
  }
  return out;
}

/** Seq ranges in [low, next) that no stored event covers. */
export function holes(s: LaneState): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let expected = s.low;
  for (let i = 0; i < s.queue.length; i++) {
    const seq = s.queue.seqAt(i);
    if (seq > expected) out.push([expected, seq - 1]);
    expected = seq + 1;
  }
  if (expected < s.next) out.push([expected, s.next - 1]);
  return out;
}

/** `ranges` minus the already reported `known` ones (both ascending, known ranges are whole holes). */
function subtractKnown(
  ranges: Array<[number, number]>,
  known: Array<[number, number]>,
): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [from, to] of ranges) {
    let cursor = from;
    for (const [kf, kt] of known) {
      if (kt < cursor || kf > to) continue;
      if (kf > cursor) out.push([cursor, kf - 1]);
      cursor = Math.max(cursor, kt + 1);
    }
    if (cursor <= to) out.push([cursor, to]);
  }
  return out;
}

/**
 * Counters: `next` is the highest of the stored counter, the watermark file and
 * max(stored seq) + 1, so a seq is never handed out twice even when the tail of the log
 * (events and counters alike) was lost.
 */
function settleNext(s: LaneState, wm: Watermark | undefined, epoch: string): void {
  const maxStored = s.queue.length > 0 ? s.queue.seqAt(s.queue.length - 1) : 0;
  const fromWm = wm && wm.epoch === epoch ? wm.next[s.lane] : 0;
  // `low` too: pipelined batches may reach LevelDB out of order, so a stored `m!next` can
  // lag a later one that was acknowledged and deleted since; every seq below low was handed out.
  s.next = Math.max(s.next, fromWm, maxStored + 1, s.acked + 1, s.low);
}

async function verifyLane(
  db: Db,
  lane: Lane,
  wm: Watermark | undefined,
  epoch: string,
  ops: Batch,
): Promise<{ state: LaneState; segs: SegmentIndex; lost: Array<[number, number]>; unreadable: number }> {
  const s = await loadLaneMeta(db, lane);
  const storedNext = s.next;
  const segs = new SegmentIndex();
  const unreadable = await scanLane(db, s, segs, ops);
  settleNext(s, wm, epoch);
  if (s.next !== storedNext) ops.push({ type: 'put', key: metaKey('next', lane), value: String(s.next) });
  const known = await loadLostRanges(db, lane, s.low, ops);
  const lost = subtractKnown(holes(s), known);
  const lostCount = lost.reduce((n, [a, b]) => n + b - a + 1, 0);
  if (lostCount > 0) {
    s.drops.corruption += lostCount;
    ops.push({ type: 'put', key: metaKey('drops', lane), value: JSON.stringify(s.drops) });
    for (const [from, to] of lost) ops.push({ type: 'put', key: lostKey(lane, from), value: String(to) });
  }
  return { state: s, segs, lost, unreadable };
}

async function loadDedupe(db: Db, ops: Batch): Promise<Recovered['dedupe']> {
  const out: Recovered['dedupe'] = [];
  for await (const [key, value] of db.iterator({ gte: DEDUPE_PREFIX, lt: prefixEnd(DEDUPE_PREFIX) })) {
    const record = Number(key.slice(DEDUPE_PREFIX.length));
    const entries = decodeRecord(value);
    if (!Number.isSafeInteger(record) || !entries) ops.push({ type: 'del', key });
    else out.push({ record, entries });
  }
  return out;
}

async function loadEpoch(db: Db, now: number, ops: Batch): Promise<{ epoch: string; created: boolean }> {
  const stored = await db.get(EPOCH_KEY);
  if (stored) return { epoch: stored, created: false };
  const epoch = newId(now);
  ops.push({ type: 'put', key: EPOCH_KEY, value: epoch });
  return { epoch, created: true };
}

function describe(report: Omit<RecoveryReport, 'message'>, total: number, created: boolean): string {
  const ranges = Object.entries(report.lost)
    .map(([lane, rs]) => `${lane} ${rs.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')}`)
    .join('; ');
  const head = created ? 'new outbox created' : `outbox verified: ${total} events held`;
  const repaired = report.repaired ? ' after LevelDB repair' : '';
  return report.lostCount > 0
    ? `${head}${repaired}; LOST ${report.lostCount} events (${ranges})`
    : `${head}${repaired}; nothing lost`;
}

/** Verifies the opened store and writes the fixes (counters, lost ranges, deletions) in one batch. */
export async function recover(
  db: Db,
  repaired: boolean,
  wm: Watermark | undefined,
  now: number,
): Promise<Recovered> {
  const ops: Batch = [];
  const { epoch, created } = await loadEpoch(db, now, ops);
  const lanes = {} as Record<Lane, LaneState>;
  const segments = {} as Record<Lane, SegmentIndex>;
  const lost: RecoveryReport['lost'] = {};
  let lostCount = 0;
  let total = 0;
  for (const lane of LANES) {
    const v = await verifyLane(db, lane, wm, epoch, ops);
    lanes[lane] = v.state;
    segments[lane] = v.segs;
    total += v.state.queue.length;
    if (v.lost.length > 0) lost[lane] = v.lost;
    lostCount += v.lost.reduce((n, [a, b]) => n + b - a + 1, 0);
  }
  const dedupe = await loadDedupe(db, ops);
  if (ops.length > 0) await db.batch(ops, { sync: true });
  const partial = { repaired, lost, lostCount };
  return {
    epoch,
    lanes,
    segments,
    dedupe,
    report: { ...partial, message: describe(partial, total, created) },
  };
}
