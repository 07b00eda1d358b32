import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { fakeClock, makeEvent, options, readAll } from './conformance.ts';
import { openLevelStore } from './level.ts';
import type { Db } from './recovery.ts';
import { SEGMENT_MAX_CHARS, SegmentIndex, segmentRuns, segmentValue } from './segments.ts';

const root = mkdtempSync(join(tmpdir(), 'outbox-seg-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `seg-${n++}`);

async function eventKeys(db: Db): Promise<string[]> {
  return db.keys({ gte: 'o!', lt: 'o"' }).all();
}

describe('segments [OUTBOX-SEG-1]', () => {
  test('runs cut at a lane change and at a seq gap', () => {
    const events = [
      { lane: 'tx' as const, seq: 4, json: 'a' },
      { lane: 'tx' as const, seq: 5, json: 'b' },
      { lane: 'event' as const, seq: 1, json: 'c' },
      { lane: 'event' as const, seq: 3, json: 'd' },
    ];
    const runs = segmentRuns(events);
    expect(runs.map((r) => [r.lane, r.first, r.count])).toEqual([
      ['tx', 4, 2],
      ['event', 1, 1],
      ['event', 3, 1],
    ]);
    expect(segmentValue(events, runs[0]!)).toBe('a\nb');
  });

  test('a run is cut before its value would pass SEGMENT_MAX_CHARS', () => {
    const json = 'x'.repeat(1000);
    const events = Array.from({ length: 200 }, (_, i) => ({ lane: 'tx' as const, seq: i + 1, json }));
    const runs = segmentRuns(events);
    expect(runs.length).toBeGreaterThan(2);
    expect(runs.reduce((n, r) => n + r.count, 0)).toBe(200);
    for (const r of runs) expect(segmentValue(events, r).length).toBeLessThan(SEGMENT_MAX_CHARS);
    expect(runs.map((r) => r.first)).toEqual(
      runs.map((_, k) => 1 + runs.slice(0, k).reduce((n, x) => n + x.count, 0)),
    );
  });

  test('the index finds the segment holding a seq and the segments an ack removes whole', () => {
    const idx = new SegmentIndex();
    idx.push(1, 3); // 1-3
    idx.push(4, 1); // 4
    idx.push(8, 5); // 8-12 (5-7 lost)
    expect(idx.startFor(2)).toBe(1);
    expect(idx.startFor(4)).toBe(4);
    expect(idx.startFor(6)).toBe(4);
    expect(idx.startFor(12)).toBe(8);
    expect(idx.wholeThrough(2)).toEqual([]);
    expect(idx.wholeThrough(9)).toEqual([1, 4]);
    idx.dropThrough(9);
    expect(idx.length).toBe(1);
    expect(idx.startFor(3)).toBe(3);
    expect(idx.wholeThrough(12)).toEqual([8]);
  });

  test('one group commit is one value; a partly acknowledged segment stays until its last line goes', async () => {
    const dir = freshDir();
    let db: Db | undefined;
    const opts = options(fakeClock());
    const store = await openLevelStore(dir, { ...opts, onDb: (d) => (db = d) });
    // Ten appends in one tick share one batch: one segment of tx 1-10.
    await Promise.all(Array.from({ length: 10 }, () => store.outbox.append(makeEvent('tx'))));
    expect(await eventKeys(db!)).toEqual(['o!tx!0000000000000001']);
    await store.outbox.ack('tx', 4);
    expect(await eventKeys(db!)).toEqual(['o!tx!0000000000000001']);
    // Reading from below the floor never returns acknowledged lines.
    expect((await store.outbox.read('tx', 0, 100)).map((e) => e.seq)).toEqual([5, 6, 7, 8, 9, 10]);
    expect((await store.outbox.read('tx', 6, 2)).map((e) => e.seq)).toEqual([7, 8]);
    await store.close();

    const again = await openLevelStore(dir, { ...opts, onDb: (d) => (db = d) });
    expect(again.recovery.lostCount).toBe(0);
    expect(again.outbox.stats().lanes.tx).toMatchObject({ depth: 6, nextSeq: 11 });
    expect((await readAll(again, 'tx')).map((e) => e.seq)).toEqual([5, 6, 7, 8, 9, 10]);
    await again.outbox.append(makeEvent('tx'));
    await again.outbox.ack('tx', 10);
    expect(await eventKeys(db!)).toEqual(['o!tx!0000000000000011']);
    expect((await readAll(again, 'tx')).map((e) => e.seq)).toEqual([11]);
    await again.close();
  });

  test('recovery rewrites a segment with a damaged line as the runs around it and reports the line lost', async () => {
    const dir = freshDir();
    let db: Db | undefined;
    const opts = options(fakeClock());
    const store = await openLevelStore(dir, { ...opts, onDb: (d) => (db = d) });
    await Promise.all(Array.from({ length: 5 }, () => store.outbox.append(makeEvent('event'))));
    const key = 'o!event!0000000000000001';
    const lines = (await db!.get(key))!.split('\n');
    expect(lines).toHaveLength(5);
    lines[2] = '{"damaged';
    await db!.put(key, lines.join('\n'));
    await store.close();

    const again = await openLevelStore(dir, { ...opts, onDb: (d) => (db = d) });
    expect(again.recovery.lost).toEqual({ event: [[3, 3]] });
    expect(await eventKeys(db!)).toEqual(['o!event!0000000000000001', 'o!event!0000000000000004']);
    expect((await readAll(again, 'event')).map((e) => e.seq)).toEqual([1, 2, 4, 5]);
    expect(again.outbox.stats().lanes.event).toMatchObject({ depth: 4, nextSeq: 6 });
    await again.close();
    // Reported once: the next open finds nothing new.
    const third = await openLevelStore(dir, opts);
    expect(third.recovery.lostCount).toBe(0);
    await third.close();
  });

  test('a store written one event per key (before segments) opens and reads unchanged', async () => {
    const dir = freshDir();
    let db: Db | undefined;
    const opts = options(fakeClock());
    const store = await openLevelStore(dir, { ...opts, onDb: (d) => (db = d) });
    for (let i = 0; i < 3; i++) await store.outbox.append(makeEvent('telemetry'));
    // Sequential appends: three single-line segments, i.e. the old layout.
    expect(await eventKeys(db!)).toHaveLength(3);
    await store.close();
    const again = await openLevelStore(dir, opts);
    expect((await readAll(again, 'telemetry')).map((e) => e.seq)).toEqual([1, 2, 3]);
    await again.close();
  });
});
