import { spawn } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { fakeClock, makeEvent, options, outboxSuite, readAll } from './conformance.ts';
import { openLevelStore, WATERMARK_FILE } from './level.ts';
import type { Db } from './recovery.ts';
import type { EdgeStore } from './types.ts';

const root = mkdtempSync(join(tmpdir(), 'outbox-level-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const dirs = new WeakMap<EdgeStore, string>();
let n = 0;

outboxSuite(
  { test, describe, expect },
  {
    name: 'level',
    propertyRuns: 25,
    async open(opts) {
      const dir = join(root, `db-${n++}`);
      const store = await openLevelStore(dir, opts);
      dirs.set(store, dir);
      return store;
    },
    async reopen(store, opts) {
      const dir = dirs.get(store)!;
      await store.close();
      const again = await openLevelStore(dir, opts);
      dirs.set(again, dir);
      return again;
    },
  },
);

// ---- LevelDB-only behaviour -----------------------------------------------------------

function freshDir(): string {
  return join(root, `only-${n++}`);
}

/** Wraps db.batch so a test can count batches, see their options or make one fail. */
function batchSpy() {
  const spy = { calls: 0, syncs: [] as boolean[], failNext: 0, error: new Error('no space left on device') };
  Object.assign(spy.error, { code: 'ENOSPC' });
  const onDb = (db: Db) => {
    // classic-level's own _batch: both db.batch and the outbox's direct path end there.
    const raw = db as unknown as { _batch: (ops: unknown, o?: { sync?: boolean }) => Promise<void> };
    const batch = raw._batch.bind(db);
    raw._batch = (ops, o) => {
      spy.calls++;
      spy.syncs.push(o?.sync === true);
      if (spy.failNext > 0) {
        spy.failNext--;
        return Promise.reject(spy.error);
      }
      return batch(ops, o);
    };
  };
  return { spy, onDb };
}

function newestLog(dir: string): string {
  const logs = readdirSync(dir)
    .filter((f) => /^\d+\.log$/.test(f))
    .sort();
  return join(dir, logs[logs.length - 1]!);
}

/** Writes `count` tx events one batch each, closes, returns their JSON by seq. */
async function writeAndClose(dir: string, count: number): Promise<Map<number, string>> {
  const store = await openLevelStore(dir, options(fakeClock()));
  for (let i = 0; i < count; i++) await store.outbox.append(makeEvent('tx', { pad: 200, mid: `m-${i}` }));
  const byseq = new Map((await readAll(store, 'tx')).map((e) => [e.seq, e.json]));
  await store.close();
  return byseq;
}

function expand(ranges: Array<[number, number]> | undefined): number[] {
  return (ranges ?? []).flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i));
}

/** After damage: lost + readable is exactly 1..count, readable events are intact, seqs are not reused. */
async function expectExactRecovery(dir: string, written: Map<number, string>) {
  const store = await openLevelStore(dir, options(fakeClock()));
  try {
    const lost = expand(store.recovery.lost.tx);
    const held = await readAll(store, 'tx');
    expect(lost.length).toBeGreaterThan(0);
    expect(store.recovery.lostCount).toBe(lost.length);
    expect(store.recovery.message).toContain('LOST');
    expect([...lost, ...held.map((e) => e.seq)].sort((a, b) => a - b)).toEqual([...written.keys()]);
    for (const e of held) expect(e.json).toBe(written.get(e.seq));
    expect(store.outbox.stats().lanes.tx.dropReasons.corruption).toBe(lost.length);
    expect((await store.outbox.append(makeEvent('tx'))).seq).toBe(written.size + 1);
    return { lost, held };
  } finally {
    await store.close();
  }
}

describe('level outbox only', () => {
  test('group commit: 1000 concurrent appends share a handful of write batches [OUTBOX-WRITE-1]', async () => {
    const { spy, onDb } = batchSpy();
    const store = await openLevelStore(freshDir(), { ...options(fakeClock()), onDb });
    const envs = await Promise.all(
      Array.from({ length: 1000 }, () => store.outbox.append(makeEvent('event'))),
    );
    expect(envs.map((e) => e.seq)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(spy.calls).toBeGreaterThan(0);
    expect(spy.calls).toBeLessThanOrEqual(5);
    expect(spy.syncs.every((s) => s === false)).toBe(true);
    await store.close();
  });

  test("durability 'power' fsyncs each group commit; acks do not need to", async () => {
    const { spy, onDb } = batchSpy();
    const store = await openLevelStore(freshDir(), {
      ...options(fakeClock(), { durability: 'power' }),
      onDb,
    });
    await Promise.all(Array.from({ length: 10 }, () => store.outbox.append(makeEvent('tx'))));
    await store.outbox.ack('tx', 5);
    expect(spy.syncs).toEqual([true, false]);
    await store.close();
  });

  test('a failed write rejects its whole batch with EDGE_ERR_OUTBOX_IO, leaves no gap, and the store carries on', async () => {
    const { spy, onDb } = batchSpy();
    const dir = freshDir();
    const probe = Buffer.byteLength(JSON.stringify({ ...makeEvent('telemetry', { pad: 100 }), seq: 10 }));
    const opts = options(fakeClock(), {
      lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: probe * 2 + 10 } },
    });
    const store = await openLevelStore(dir, { ...opts, onDb });
    await store.outbox.append(makeEvent('telemetry', { pad: 100 }));
    await store.outbox.append(makeEvent('telemetry', { pad: 100 }));
    spy.failNext = 1;
    const failed = await Promise.allSettled([
      store.outbox.append(makeEvent('tx', { mid: 'x' })),
      store.outbox.append(makeEvent('tx')),
      store.outbox.append(makeEvent('telemetry', { pad: 100 })), // would have dropped telemetry 1
    ]);
    for (const r of failed) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'EDGE_ERR_OUTBOX_IO' });
      expect(String((r as PromiseRejectedResult).reason.message)).toContain('ENOSPC');
    }
    expect(store.outbox.stats().lanes.telemetry).toMatchObject({ depth: 2, dropped: 0, nextSeq: 3 });
    expect(store.outbox.floor('telemetry')).toBe(1);
    // Space is back: the same seqs are handed out again, nothing skipped, dedupe not poisoned.
    expect((await store.outbox.append(makeEvent('tx', { mid: 'x' }))).seq).toBe(1);
    expect((await store.outbox.append(makeEvent('tx'))).seq).toBe(2);
    await store.close();
    const again = await openLevelStore(dir, opts);
    expect(again.recovery.lostCount).toBe(0);
    expect((await readAll(again, 'tx')).map((e) => e.seq)).toEqual([1, 2]);
    expect((await again.outbox.append(makeEvent('tx'))).seq).toBe(3);
    await again.close();
  });

  test.each([
    ['truncated', (file: string) => truncateSync(file, statSync(file).size - 3000)],
    [
      'zero-filled',
      (file: string) => {
        const size = statSync(file).size;
        const fd = openSync(file, 'r+');
        writeSync(fd, Buffer.alloc(3000), 0, 3000, size - 3000);
        closeSync(fd);
      },
    ],
  ])(
    'recovery: a %s log tail is reported exactly and seqs are never reused [OUTBOX-RECOVER-1]',
    async (_, damage) => {
      const dir = freshDir();
      const written = await writeAndClose(dir, 300);
      damage(newestLog(dir));
      const { lost } = await expectExactRecovery(dir, written);
      expect(lost[lost.length - 1]).toBe(300);
      // Reported once: the next open finds nothing new but keeps the count.
      const again = await openLevelStore(dir, options(fakeClock()));
      expect(again.recovery.lostCount).toBe(0);
      expect(again.outbox.stats().lanes.tx.dropReasons.corruption).toBe(lost.length);
      expect(again.outbox.stats().lanes.tx.nextSeq).toBe(302);
      await again.close();
    },
  );

  test('recovery: damage in the middle of the log leaves a hole that is reported and later passed by the floor', async () => {
    const dir = freshDir();
    const written = await writeAndClose(dir, 400);
    const file = newestLog(dir);
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(500), 0, 500, 40_000);
    closeSync(fd);
    const { lost, held } = await expectExactRecovery(dir, written);
    expect(Math.max(...held.map((e) => e.seq))).toBeGreaterThan(Math.max(...lost));
    const store = await openLevelStore(dir, options(fakeClock()));
    // The cloud acknowledges everything below the hole; the floor then jumps over it [OUTBOX-ACK-3].
    await store.outbox.ack('tx', lost[0]! - 1);
    expect(store.outbox.floor('tx')).toBe(lost[lost.length - 1]! + 1);
    await store.close();
  });

  test('recovery: an unreadable value is deleted and reported; a missing counter is rebuilt from the events', async () => {
    const dir = freshDir();
    let db: Db | undefined;
    const store = await openLevelStore(dir, { ...options(fakeClock()), onDb: (d) => (db = d) });
    for (let i = 0; i < 5; i++) await store.outbox.append(makeEvent('event'));
    await db!.put('o!event!0000000000000003', '{"not json');
    await db!.del('m!next!event');
    await store.close();
    rmSync(join(dir, WATERMARK_FILE));
    const again = await openLevelStore(dir, options(fakeClock()));
    expect(again.recovery.lost).toEqual({ event: [[3, 3]] });
    expect((await readAll(again, 'event')).map((e) => e.seq)).toEqual([1, 2, 4, 5]);
    expect(again.outbox.stats().lanes.event).toMatchObject({ nextSeq: 6, depth: 4 });
    expect(again.outbox.stats().lanes.event.dropReasons.corruption).toBe(1);
    await again.close();
  });

  test('recovery: a store LevelDB refuses to open is repaired and keeps its events', async () => {
    const dir = freshDir();
    const written = await writeAndClose(dir, 50);
    const manifest = readdirSync(dir).find((f) => f.startsWith('MANIFEST-'))!;
    writeFileSync(join(dir, manifest), Buffer.alloc(statSync(join(dir, manifest)).size));
    const store = await openLevelStore(dir, options(fakeClock()));
    expect(store.recovery).toMatchObject({ repaired: true, lostCount: 0 });
    expect((await readAll(store, 'tx')).map((e) => e.json)).toEqual([...written.values()]);
    await store.close();
  });

  test('dedupe records are deleted once all their entries fall out of the per-device bound', async () => {
    const dir = freshDir();
    let db: Db | undefined;
    const opts = options(fakeClock(), { dedupe: { maxPerDevice: 2 } });
    const store = await openLevelStore(dir, { ...opts, onDb: (d) => (db = d) });
    for (let i = 0; i < 10; i++) await store.outbox.append(makeEvent('event', { mid: `m-${i}` }));
    await store.outbox.append(makeEvent('event')); // a later batch carries the deletions
    const records = await db!.keys({ gte: 'd!', lt: 'd"' }).all();
    expect(records.length).toBeLessThanOrEqual(3);
    await store.close();
    const again = await openLevelStore(dir, opts);
    expect((await again.outbox.append(makeEvent('event', { mid: 'm-9' }))).seq).toBe(10);
    expect((await again.outbox.append(makeEvent('event', { mid: 'm-0' }))).seq).toBe(12);
    await again.close();
  });

  test('dedupe index and epoch survive a restart [INGEST-DEDUPE-1] [OUTBOX-EPOCH-1]', async () => {
    const dir = freshDir();
    const written = await writeAndClose(dir, 5);
    const store = await openLevelStore(dir, options(fakeClock()));
    const resend = await store.outbox.append(makeEvent('tx', { pad: 200, mid: 'm-3' }));
    expect(resend.seq).toBe(4);
    expect(resend.id).toBe(JSON.parse(written.get(4)!).id);
    expect(store.outbox.stats().lanes.tx.depth).toBe(5);
    const epoch = store.outbox.epoch;
    await store.close();
    const other = await openLevelStore(freshDir(), options(fakeClock()));
    expect(other.outbox.epoch).not.toBe(epoch);
    await other.close();
  });
});

describe('level outbox under SIGKILL', () => {
  test("durability 'process': every acknowledged append survives kill -9 at an arbitrary instant [OUTBOX-WRITE-1]", async () => {
    const dir = freshDir();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('./sigkill-child.ts', import.meta.url)), dir, 'process'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const acked: number[] = [];
    let buffered = '';
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const l of lines) if (/^\d+$/.test(l)) acked.push(Number(l));
        // Kill mid-stream, while batches are in flight.
        if (acked.length >= 3000 && !child.killed) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', (code, signal) =>
        acked.length < 3000
          ? reject(new Error(`child exited early (${code ?? signal}) after ${acked.length} acks: ${stderr}`))
          : resolve(),
      );
    });
    await exited;
    const store = await openLevelStore(dir, options(fakeClock()));
    try {
      expect(store.recovery.lostCount).toBe(0);
      const held = new Set((await readAll(store, 'tx')).map((e) => e.seq));
      const missing = acked.filter((seq) => !held.has(seq));
      expect(missing).toEqual([]);
      // Gap-free: the stored seqs are exactly 1..next-1, acknowledged or not.
      const next = store.outbox.stats().lanes.tx.nextSeq;
      expect(held.size).toBe(next - 1);
      expect(next - 1).toBeGreaterThanOrEqual(Math.max(...acked));
    } finally {
      await store.close();
    }
  }, 30_000);
});
