import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LANES, type Lane } from '@storelink/protocols';
import { OutboxCore, type WriteSet } from './core.ts';
import { EngineOutbox, type LogFn, type OutboxStorage } from './engine.ts';
import { dedupeRecordKey, eventKey, eventPrefix, KV_PREFIX, kvKey, metaKey, prefixEnd } from './keys.ts';
import { type Db, openDb, recover, type Watermark } from './recovery.ts';
import { type SegmentIndex, segmentLines, segmentRuns, segmentValue } from './segments.ts';
import type { EdgeStore, KvStore, OutboxOptions } from './types.ts';

type Op = { type: 'put'; key: string; value: string } | { type: 'del'; key: string };

export interface LevelStoreOptions extends OutboxOptions {
  onLog?: LogFn;
  /** Test seam: sees the opened database (e.g. to count or fail `db.batch`). */
  onDb?: (db: Db) => void;
}

/** Name of the watermark file kept beside the LevelDB files. */
export const WATERMARK_FILE = 'STORELINK-WATERMARK';
const WATERMARK_SIZE = 256;

/**
 * The watermark file holds the `next` counters after the last committed batch, written
 * (without fsync) after each batch that assigned seqs. If the tail of the LevelDB log is
 * lost (power cut under `durability: process`, a damaged disk), counters and events
 * vanish together and the store would look consistent; the watermark is how recovery
 * still sees that seqs up to it were handed out, reports them lost and never reuses them
 * [OUTBOX-RECOVER-1].
 */
class WatermarkFile {
  private fd: number | undefined;

  constructor(private readonly path: string) {}

  static read(path: string): Watermark | undefined {
    try {
      const w = JSON.parse(readFileSync(path, 'utf8').trim()) as Watermark;
      return typeof w.epoch === 'string' && LANES.every((l) => Number.isSafeInteger(w.next?.[l]))
        ? w
        : undefined;
    } catch {
      return undefined;
    }
  }

  write(w: Watermark): void {
    this.fd ??= openSync(this.path, 'w');
    // Fixed size at offset 0: a rewrite never leaves a longer old tail behind.
    const buf = Buffer.alloc(WATERMARK_SIZE, 0x20);
    buf.write(JSON.stringify(w));
    writeSync(this.fd, buf, 0, WATERMARK_SIZE, 0);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * The LevelDB operations of one write set. Events go as segments, one value per lane run
 * [OUTBOX-SEG-1]; removals delete the segments that are wholly gone (`segs` is the
 * committed index: sets that remove are only formed with nothing else in flight).
 */
function toOps(ws: WriteSet, segs: Record<Lane, SegmentIndex>): Op[] {
  const ops: Op[] = [];
  // An owed undo of pipelined batches goes first: this set's puts of the same keys win.
  // Every seq's key is deleted: an undone batch's run of a lane may have been cut into
  // several segments (SEGMENT_MAX_CHARS), each keyed by its own first seq; deleting a key
  // that holds no segment costs a tombstone, on a path that only failures take.
  const r = ws.repair;
  if (r) {
    for (const x of r.removed)
      for (const seq of x.seqs) ops.push({ type: 'del', key: eventKey(x.lane, seq) });
    for (const record of r.dedupeDel) ops.push({ type: 'del', key: dedupeRecordKey(record) });
    for (const m of r.next) ops.push({ type: 'put', key: metaKey('next', m.lane), value: String(m.value) });
  }
  for (const run of segmentRuns(ws.events))
    ops.push({ type: 'put', key: eventKey(run.lane, run.first), value: segmentValue(ws.events, run) });
  for (const x of ws.removed)
    for (const first of segs[x.lane].wholeThrough(lastRemoved(x)))
      ops.push({ type: 'del', key: eventKey(x.lane, first) });
  // [OUTBOX-WRITE-1] counters travel in the same batch as the events they count.
  for (const m of ws.meta) ops.push({ type: 'put', key: metaKey(m.field, m.lane), value: String(m.value) });
  for (const d of ws.drops)
    ops.push({ type: 'put', key: metaKey('drops', d.lane), value: JSON.stringify(d.value) });
  const d = ws.dedupeRecord;
  if (d) ops.push({ type: 'put', key: dedupeRecordKey(d.record), value: d.value });
  for (const record of ws.dedupeDel) ops.push({ type: 'del', key: dedupeRecordKey(record) });
  return ops;
}

/** Highest seq a removal entry removes (seqs come from the head of the lane, ascending). */
const lastRemoved = (x: { seqs: number[] }): number => x.seqs[x.seqs.length - 1] ?? 0;

class LevelStorage implements OutboxStorage {
  constructor(
    private readonly db: Db,
    private readonly watermark: WatermarkFile,
    private readonly epoch: string,
    private readonly core: () => OutboxCore,
    private readonly segs: Record<Lane, SegmentIndex>,
  ) {}

  async write(ws: WriteSet, sync: boolean): Promise<void> {
    const ops = toOps(ws, this.segs);
    if (ops.length === 0) return;
    await this.batch(ops, sync);
  }

  /**
   * classic-level's own batch (the one `db.batch` ends in), skipping abstract-level's
   * per-operation clone, validation and encoding lookup: our keys and values are
   * already non-empty utf8 strings, this db has no hooks, sublevels or write listeners,
   * and the native side reads only type/key/value. Measured: see docs/performance.md.
   */
  private batch(ops: Op[], sync: boolean): Promise<void> {
    const own = (this.db as unknown as { _batch?: (o: Op[], opts: { sync: boolean }) => Promise<void> })
      ._batch;
    if (this.db.status !== 'open' || typeof own !== 'function') return this.db.batch(ops, { sync });
    return own.call(this.db, ops, { sync });
  }

  /**
   * In commit order, after the set's state was applied: with pipelined batches LevelDB may
   * finish them in any order, the watermark and the segment index must still only move
   * with committed state.
   */
  committed(ws: WriteSet): void {
    for (const x of ws.removed) this.segs[x.lane].dropThrough(lastRemoved(x));
    for (const run of segmentRuns(ws.events)) this.segs[run.lane].push(run.first, run.count);
    if (ws.repair || ws.meta.some((m) => m.field === 'next')) this.writeWatermark();
  }

  /**
   * Events afterSeq < seq <= lastSeq, at most `limit`: from the segment holding afterSeq + 1.
   * The caller starts at a held seq, so lines of a partly acknowledged segment are skipped.
   */
  async readRange(lane: Lane, afterSeq: number, lastSeq: number, limit: number) {
    const from = this.segs[lane].startFor(afterSeq + 1);
    const it = this.db.iterator({ gte: eventKey(lane, from), lte: eventKey(lane, lastSeq) });
    const cut = eventPrefix(lane).length;
    const out: Array<{ seq: number; json: string }> = [];
    try {
      while (out.length < limit) {
        const rows = await it.nextv(16);
        if (rows.length === 0) break;
        for (const [key, value] of rows) {
          const first = Number(key.slice(cut));
          const lines = segmentLines(value);
          for (let k = 0; k < lines.length && out.length < limit; k++) {
            const seq = first + k;
            if (seq > afterSeq && seq <= lastSeq) out.push({ seq, json: lines[k]! });
          }
        }
      }
    } finally {
      await it.close();
    }
    return out;
  }

  private writeWatermark(): void {
    const next = {} as Record<Lane, number>;
    for (const l of LANES) next[l] = this.core().lanes[l].next;
    this.watermark.write({ epoch: this.epoch, next });
  }
}

class LevelKv implements KvStore {
  constructor(
    private readonly db: Db,
    private readonly syncDefault: boolean,
  ) {}

  get(key: string): Promise<string | undefined> {
    return this.db.get(kvKey(key));
  }
  put(key: string, value: string, opts?: { sync?: boolean }): Promise<void> {
    return this.db.put(kvKey(key), value, { sync: opts?.sync ?? this.syncDefault });
  }
  del(key: string): Promise<void> {
    return this.db.del(kvKey(key), { sync: this.syncDefault });
  }
  async keys(prefix: string, limit = -1): Promise<string[]> {
    const gte = kvKey(prefix);
    const lt = prefix === '' ? prefixEnd(KV_PREFIX) : prefixEnd(gte);
    const keys = await this.db.keys({ gte, lt, limit }).all();
    return keys.map((k) => k.slice(KV_PREFIX.length));
  }
}

/**
 * Opens (creating when missing) the LevelDB outbox + KV at `dir`, verifies it and
 * reports what could not be recovered in `recovery` [OUTBOX-RECOVER-1].
 */
export async function openLevelStore(dir: string, opts: LevelStoreOptions): Promise<EdgeStore> {
  const log = opts.onLog ?? (() => {});
  const { db, repaired } = await openDb(dir, log);
  const watermarkPath = join(dir, WATERMARK_FILE);
  const rec = await recover(db, repaired, WatermarkFile.read(watermarkPath), opts.now());
  if (rec.report.lostCount > 0)
    log('error', rec.report.message, { lost: rec.report.lost, code: 'EDGE_ERR_OUTBOX_CORRUPT' });
  else log('info', rec.report.message);
  const core = new OutboxCore(opts, rec.lanes);
  for (const r of rec.dedupe) core.dedupe.addRecord(r.record, r.entries);
  core.dedupe.prune(opts.now());
  const watermark = new WatermarkFile(watermarkPath);
  watermark.write({
    epoch: rec.epoch,
    next: { tx: rec.lanes.tx.next, event: rec.lanes.event.next, telemetry: rec.lanes.telemetry.next },
  });
  opts.onDb?.(db);
  const outbox = new EngineOutbox(
    rec.epoch,
    core,
    new LevelStorage(db, watermark, rec.epoch, () => core, rec.segments),
    log,
  );
  return {
    outbox,
    kv: new LevelKv(db, opts.durability === 'power'),
    recovery: rec.report,
    async close() {
      await outbox.close();
      watermark.close();
      await db.close();
    },
  };
}
