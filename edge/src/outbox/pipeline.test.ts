import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventEnvelope } from '@storelink/protocols';
import { afterAll, describe, expect, test } from 'vitest';
import { fakeClock, makeEvent, options, readAll } from './conformance.ts';
import { openLevelStore } from './level.ts';
import type { Db } from './recovery.ts';

/**
 * Pipelined group commit [OUTBOX-WRITE-1]: batch k+1 is written while batch k is still
 * in flight; appends settle strictly in batch order, and a failure of k undoes k+1.
 */

const root = mkdtempSync(join(tmpdir(), 'outbox-pipe-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `p-${n++}`);

type BatchFn = (ops: unknown, o?: { sync?: boolean }) => Promise<void>;

/**
 * Intercepts db.batch: `hold` makes the next call wait until the test releases it (with
 * success or a failure that writes nothing); `failNext` fails calls outright.
 */
function gate() {
  const g = {
    calls: [] as Array<{ ops: Array<{ type: string; key: string }>; done: Promise<void> }>,
    hold: 0,
    failNext: 0,
    held: [] as Array<{ ok: () => void; fail: (e: Error) => void }>,
  };
  const onDb = (db: Db) => {
    // classic-level's own _batch: both db.batch and the outbox's direct path end there.
    const raw = db as unknown as { _batch: BatchFn };
    const real = raw._batch.bind(db);
    raw._batch = (ops, o) => {
      let done: Promise<void>;
      if (g.failNext > 0) {
        g.failNext--;
        done = Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));
      } else if (g.hold > 0) {
        g.hold--;
        done = new Promise<void>((resolve, reject) => {
          g.held.push({ ok: () => real(ops, o).then(resolve, reject), fail: reject });
        });
      } else done = real(ops, o);
      g.calls.push({ ops: ops as Array<{ type: string; key: string }>, done: done.catch(() => {}) });
      return done;
    };
  };
  return { g, onDb };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('pipelined group commit', () => {
  test('a later batch written first still resolves after the earlier one, in seq order', async () => {
    const { g, onDb } = gate();
    const store = await openLevelStore(freshDir(), { ...options(fakeClock()), onDb });
    const order: number[] = [];
    const track = (p: Promise<EventEnvelope>) => p.then((e) => order.push(e.seq));
    g.hold = 1;
    const first = track(store.outbox.append(makeEvent('tx')));
    await tick();
    expect(g.calls.length).toBe(1);
    const second = [track(store.outbox.append(makeEvent('tx'))), track(store.outbox.append(makeEvent('tx')))];
    await tick();
    // Batch 2 went to LevelDB while batch 1 is still held, and it has finished.
    expect(g.calls.length).toBe(2);
    await g.calls[1]!.done;
    await tick();
    expect(order).toEqual([]);
    g.held[0]!.ok();
    await Promise.all([first, ...second]);
    expect(order).toEqual([1, 2, 3]);
    expect((await readAll(store, 'tx')).map((e) => e.seq)).toEqual([1, 2, 3]);
    await store.close();
  });

  test('writesInFlight: 1 keeps exactly one write in flight', async () => {
    const { g, onDb } = gate();
    const store = await openLevelStore(freshDir(), { ...options(fakeClock(), { writesInFlight: 1 }), onDb });
    g.hold = 1;
    const first = store.outbox.append(makeEvent('tx'));
    await tick();
    const second = store.outbox.append(makeEvent('tx'));
    await tick();
    expect(g.calls.length).toBe(1);
    g.held[0]!.ok();
    expect([(await first).seq, (await second).seq]).toEqual([1, 2]);
    expect(g.calls.length).toBe(2);
    await store.close();
  });

  test('a failed batch undoes its pipelined successor that was written: no gap, no stray events, resends work', async () => {
    const { g, onDb } = gate();
    const dir = freshDir();
    const opts = options(fakeClock());
    const store = await openLevelStore(dir, { ...opts, onDb });
    await store.outbox.append(makeEvent('tx', { mid: 'before' }));
    g.hold = 1;
    const a = store.outbox.append(makeEvent('tx', { mid: 'a' }));
    await tick();
    const later = [
      store.outbox.append(makeEvent('tx', { mid: 'b' })),
      store.outbox.append(makeEvent('event', { mid: 'c' })),
      store.outbox.append(makeEvent('tx', { mid: 'a' })), // resend of a, in flight in batch 1
      store.outbox.append(makeEvent('tx', { mid: 'before' })), // resend of a committed event
    ];
    await tick();
    expect(g.calls.length).toBe(3);
    await g.calls[2]!.done; // batch 2 is in LevelDB now (tx 3, event 1)
    g.held[0]!.fail(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));
    const settled = await Promise.allSettled([a, ...later]);
    for (const r of settled.slice(0, 4)) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'EDGE_ERR_OUTBOX_IO' });
    }
    // The resend of an event committed before does not depend on the failed writes.
    expect(settled[4]).toMatchObject({ status: 'fulfilled', value: { seq: 1 } });
    // The undo: one more batch deleting batch 2's keys and restoring the counters.
    await tick();
    expect(g.calls.length).toBe(4);
    const undo = g.calls[3]!.ops;
    expect(undo.filter((o) => o.type === 'del').map((o) => o.key)).toEqual(
      expect.arrayContaining(['o!tx!0000000000000003', 'o!event!0000000000000001']),
    );
    expect(store.outbox.stats().lanes.tx).toMatchObject({ depth: 1, nextSeq: 2 });
    expect(store.outbox.stats().lanes.event).toMatchObject({ depth: 0, nextSeq: 1 });
    // Devices resend: the same seqs are handed out again, dedupe is not poisoned.
    expect((await store.outbox.append(makeEvent('tx', { mid: 'a' }))).seq).toBe(2);
    expect((await store.outbox.append(makeEvent('event', { mid: 'c' }))).seq).toBe(1);
    await store.close();
    const again = await openLevelStore(dir, opts);
    expect(again.recovery.lostCount).toBe(0);
    expect((await readAll(again, 'tx')).map((e) => e.seq)).toEqual([1, 2]);
    expect((await readAll(again, 'event')).map((e) => e.seq)).toEqual([1]);
    expect((await again.outbox.append(makeEvent('tx', { mid: 'b' }))).seq).toBe(3);
    await again.close();
  });

  test('when the undo itself fails, the next write carries it', async () => {
    const { g, onDb } = gate();
    const dir = freshDir();
    const opts = options(fakeClock());
    const store = await openLevelStore(dir, { ...opts, onDb });
    g.hold = 1;
    const a = store.outbox.append(makeEvent('tx'));
    await tick();
    const b = [store.outbox.append(makeEvent('tx')), store.outbox.append(makeEvent('tx'))];
    await tick();
    await g.calls[1]!.done; // tx 2 and 3 written
    g.failNext = 1; // the undo fails
    g.held[0]!.fail(new Error('I/O error'));
    const settled = await Promise.allSettled([a, ...b]);
    expect(settled.every((r) => r.status === 'rejected')).toBe(true);
    await tick();
    expect(g.calls.length).toBe(3);
    // One new event: seq 1 again; the write also deletes the stray tx 2 and 3.
    expect((await store.outbox.append(makeEvent('tx'))).seq).toBe(1);
    const carried = g.calls[3]!.ops;
    // tx 2 and 3 were one group commit (one segment at tx 2 [OUTBOX-SEG-1]); the undo
    // deletes the key of every seq it took back, so a run cut into several segments goes too.
    expect(carried.filter((o) => o.type === 'del' && o.key.startsWith('o!')).map((o) => o.key)).toEqual([
      'o!tx!0000000000000002',
      'o!tx!0000000000000003',
    ]);
    await store.close();
    const again = await openLevelStore(dir, opts);
    expect(again.recovery.lostCount).toBe(0);
    expect((await readAll(again, 'tx')).map((e) => e.seq)).toEqual([1]);
    expect((await again.outbox.append(makeEvent('tx'))).seq).toBe(2);
    await again.close();
  });

  test('the undo of a batch cut into several segments deletes every one of them [OUTBOX-SEG-1]', async () => {
    const { g, onDb } = gate();
    const dir = freshDir();
    const opts = options(fakeClock());
    const store = await openLevelStore(dir, { ...opts, onDb });
    g.hold = 1;
    const a = store.outbox.append(makeEvent('tx'));
    await tick();
    // ~300 KB in one group commit: more than one segment (SEGMENT_MAX_CHARS).
    const big = Array.from({ length: 100 }, () => store.outbox.append(makeEvent('tx', { pad: 3000 })));
    await tick();
    await g.calls[1]!.done;
    const written = g.calls[1]!.ops.filter((o) => o.type === 'put' && o.key.startsWith('o!tx!'));
    expect(written.length).toBeGreaterThan(2);
    g.held[0]!.fail(new Error('I/O error'));
    const settled = await Promise.allSettled([a, ...big]);
    expect(settled.every((r) => r.status === 'rejected')).toBe(true);
    await tick();
    const dels = new Set(g.calls[2]!.ops.filter((o) => o.type === 'del').map((o) => o.key));
    for (const put of written) expect(dels.has(put.key)).toBe(true);
    await store.close();
    const again = await openLevelStore(dir, opts);
    expect(again.recovery.lostCount).toBe(0);
    expect(await readAll(again, 'tx')).toEqual([]);
    expect((await again.outbox.append(makeEvent('tx'))).seq).toBe(1);
    await again.close();
  });

  test('an ack waits for in-flight batches and holds new ones back', async () => {
    const { g, onDb } = gate();
    const store = await openLevelStore(freshDir(), { ...options(fakeClock()), onDb });
    await Promise.all([store.outbox.append(makeEvent('tx')), store.outbox.append(makeEvent('tx'))]);
    g.hold = 1;
    const a = store.outbox.append(makeEvent('tx'));
    await tick();
    const ack = store.outbox.ack('tx', 2);
    const b = store.outbox.append(makeEvent('tx'));
    await tick();
    expect(g.calls.length).toBe(2); // the ack is not written yet, nor is batch b formed
    g.held[0]!.ok();
    await ack;
    expect((await a).seq).toBe(3);
    expect((await b).seq).toBe(4);
    expect(store.outbox.floor('tx')).toBe(3);
    await store.close();
  });
});
