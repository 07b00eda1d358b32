import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { fakeClock, makeEvent, options, outboxSuite, readAll } from './conformance.ts';
import { DiskGuard, type FsSpace } from './disk-guard.ts';
import type { Db } from './recovery.ts';
import { openResilientLevelStore, type ResilientStore } from './reopen.ts';
import type { EdgeStore } from './types.ts';

const root = mkdtempSync(join(tmpdir(), 'outbox-reopen-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `db-${n++}`);
const MiB = 2 ** 20;

/** A filesystem of `totalMiB` whose free space the test sets. */
function fakeFs(totalMiB: number, freeMiB: number) {
  const fs = { freeMiB, calls: 0 };
  const statfs = (): FsSpace => {
    fs.calls++;
    return { bsize: 4096, blocks: (totalMiB * MiB) / 4096, bavail: Math.floor((fs.freeMiB * MiB) / 4096) };
  };
  return { fs, statfs };
}

/** Every db opened gets its _batch wrapped; `failFrom(i)` makes db number i fail every write (sticky, as LevelDB). */
function stickyFailures() {
  const dbs: Db[] = [];
  const failing = new Set<number>();
  const onDb = (db: Db) => {
    const i = dbs.push(db) - 1;
    const raw = db as unknown as { _batch: (ops: unknown, o?: unknown) => Promise<void> };
    const batch = raw._batch.bind(db);
    raw._batch = (ops, o) => {
      if (failing.has(i)) {
        const e = new Error('IO error: /x/000076.log: No space left on device');
        return Promise.reject(Object.assign(e, { code: 'LEVEL_IO_ERROR' }));
      }
      return batch(ops, o);
    };
    // KV puts go through _put.
    const rawPut = db as unknown as { _put: (k: string, v: string, o?: unknown) => Promise<void> };
    const put = rawPut._put.bind(db);
    rawPut._put = (k, v, o) =>
      failing.has(i) ? Promise.reject(new Error('IO error: No space left on device')) : put(k, v, o);
  };
  return { dbs, failing, onDb };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

// The wrapped store is what the agent uses: it must pass the same suite as the bare store.
const dirs = new WeakMap<EdgeStore, string>();
const roomy = fakeFs(100_000, 50_000).statfs;
outboxSuite(
  { test, describe, expect },
  {
    name: 'level + disk guard + reopen',
    propertyRuns: 10,
    async open(opts) {
      const dir = freshDir();
      const store = await openResilientLevelStore(dir, { ...opts, disk: { statfs: roomy } });
      dirs.set(store, dir);
      return store;
    },
    async reopen(store, opts) {
      const dir = dirs.get(store)!;
      await store.close();
      const again = await openResilientLevelStore(dir, { ...opts, disk: { statfs: roomy } });
      dirs.set(again, dir);
      return again;
    },
  },
);

describe('DiskGuard [OUTBOX-DISK-1]', () => {
  test('default reserve is max(16 MiB, 2 %) capped at half of a tiny filesystem', () => {
    const clock = fakeClock();
    expect(new DiskGuard('/x', { now: clock.now, statfs: fakeFs(10_000, 5000).statfs }).reserve()).toBe(
      200 * MiB,
    );
    expect(new DiskGuard('/x', { now: clock.now, statfs: fakeFs(100, 50).statfs }).reserve()).toBe(16 * MiB);
    expect(new DiskGuard('/x', { now: clock.now, statfs: fakeFs(24, 20).statfs }).reserve()).toBe(12 * MiB);
  });

  test('below the reserve only tx is admitted, below the hard floor nothing; statfs is cached', () => {
    const clock = fakeClock();
    const { fs, statfs } = fakeFs(1000, 500);
    const g = new DiskGuard('/x', { now: clock.now, statfs, reserveBytes: 100 * MiB, hardFloorBytes: MiB });
    expect(g.refuse('telemetry')).toBeUndefined();
    fs.freeMiB = 50;
    // Cached: the drop is seen only after refreshMs (or refreshEvery admits).
    expect(g.refuse('telemetry')).toBeUndefined();
    clock.advance(1000);
    expect(g.refuse('telemetry')).toBe('disk');
    expect(g.refuse('event')).toBe('disk');
    expect(g.refuse('tx')).toBeUndefined();
    fs.freeMiB = 0.5;
    g.refresh();
    expect(g.refuse('tx')).toBe('disk');
    expect(g.status()).toMatchObject({ low: true, refused: { telemetry: 1, event: 1, tx: 1 } });
    fs.freeMiB = 500;
    clock.advance(1000);
    expect(g.refuse('event')).toBeUndefined();
    expect(g.status().low).toBe(false);
  });

  test('refreshes after refreshEvery admitted appends even within refreshMs', () => {
    const clock = fakeClock();
    const { fs, statfs } = fakeFs(1000, 500);
    const g = new DiskGuard('/x', { now: clock.now, statfs, reserveBytes: 100 * MiB, refreshEvery: 10 });
    for (let i = 0; i < 10; i++) expect(g.refuse('telemetry')).toBeUndefined();
    fs.freeMiB = 10;
    expect(g.refuse('telemetry')).toBe('disk');
  });
});

describe('resilient level store', () => {
  test('below the reserve: telemetry and event refused as OUTBOX_FULL "disk" and counted, tx stored [OUTBOX-DISK-1]', async () => {
    const clock = fakeClock();
    const { fs, statfs } = fakeFs(1000, 500);
    const store = await openResilientLevelStore(freshDir(), {
      ...options(clock),
      disk: { statfs, reserveBytes: 100 * MiB },
    });
    try {
      await store.outbox.append(makeEvent('telemetry'));
      fs.freeMiB = 10;
      clock.advance(1000);
      await expect(store.outbox.append(makeEvent('telemetry'))).rejects.toMatchObject({
        code: 'EDGE_ERR_OUTBOX_FULL',
        details: { lane: 'telemetry', reason: 'disk' },
      });
      await expect(store.outbox.append(makeEvent('event'))).rejects.toMatchObject({
        code: 'EDGE_ERR_OUTBOX_FULL',
      });
      expect((await store.outbox.append(makeEvent('tx'))).seq).toBe(1);
      const st = store.outbox.stats().lanes;
      expect(st.telemetry.dropReasons).toEqual({ ttl: 0, budget: 0, corruption: 0, disk: 1 });
      expect(st.telemetry.dropped).toBe(1);
      // Refused event-lane appends were not PUBACKed: not a drop.
      expect(st.event.dropped).toBe(0);
      expect(store.health().disk).toMatchObject({ low: true, refused: { telemetry: 1, event: 1, tx: 0 } });
      // Space returns: every lane is accepted again, seqs continue without a gap.
      fs.freeMiB = 500;
      clock.advance(1000);
      expect((await store.outbox.append(makeEvent('telemetry'))).seq).toBe(2);
      expect((await store.outbox.append(makeEvent('event'))).seq).toBe(1);
    } finally {
      await store.close();
    }
  });

  test('a sticky write error closes and reopens the store: nothing acknowledged lost, no seq gap [OUTBOX-DISK-2]', async () => {
    const clock = fakeClock();
    const f = stickyFailures();
    const logs: string[] = [];
    const store = await openResilientLevelStore(freshDir(), {
      ...options(clock),
      onDb: f.onDb,
      disk: false,
      reopenMinMs: 5,
      onLog: (_l, msg) => logs.push(msg),
    });
    try {
      const ok = await Promise.all([1, 2, 3].map(() => store.outbox.append(makeEvent('tx', { pad: 50 }))));
      expect(ok.map((e) => e.seq)).toEqual([1, 2, 3]);
      f.failing.add(0);
      const failed = await Promise.allSettled([store.outbox.append(makeEvent('tx'))]);
      expect(failed[0]).toMatchObject({ status: 'rejected', reason: { code: 'EDGE_ERR_OUTBOX_IO' } });
      // While the store reopens, appends are refused (the device resends), not queued.
      expect(store.health().reopening).toBe(true);
      await expect(store.outbox.append(makeEvent('tx'))).rejects.toMatchObject({
        code: 'EDGE_ERR_OUTBOX_IO',
      });
      // Reads wait for the reopen and see everything acknowledged before.
      const held = await readAll(store, 'tx');
      expect(held.map((e) => e.seq)).toEqual([1, 2, 3]);
      expect(f.dbs.length).toBe(2);
      expect(store.health()).toMatchObject({ reopening: false, reopens: 1 });
      expect(store.health().lastWriteError).toMatch(/No space left/);
      expect(store.recovery.lostCount).toBe(0);
      // The engine resumes on the new db: the failed seq 4 is reused, no gap.
      expect((await store.outbox.append(makeEvent('tx'))).seq).toBe(4);
      expect(store.outbox.stats().lanes.tx).toMatchObject({ depth: 4, nextSeq: 5, dropped: 0 });
      expect(logs).toContain('outbox store reopened after a write error');
    } finally {
      await store.close();
    }
  });

  test('a failed ack is owed and applied after the reopen [OUTBOX-DISK-3]', async () => {
    const clock = fakeClock();
    const f = stickyFailures();
    const store = await openResilientLevelStore(freshDir(), {
      ...options(clock),
      onDb: f.onDb,
      disk: false,
      reopenMinMs: 5,
    });
    try {
      for (let i = 0; i < 5; i++) await store.outbox.append(makeEvent('event'));
      f.failing.add(0);
      await expect(store.outbox.ack('event', 3)).rejects.toMatchObject({ code: 'EDGE_ERR_OUTBOX_IO' });
      expect(store.health().owedAcks).toEqual({ event: 3 });
      await until(() => store.outbox.acked('event') === 3);
      expect(store.health().owedAcks).toEqual({});
      expect((await readAll(store, 'event')).map((e) => e.seq)).toEqual([4, 5]);
      expect(store.outbox.floor('event')).toBe(4);
    } finally {
      await store.close();
    }
  });

  test('a failed KV write reopens the store too; the retried put succeeds and data survives', async () => {
    const clock = fakeClock();
    const f = stickyFailures();
    const store = await openResilientLevelStore(freshDir(), {
      ...options(clock),
      onDb: f.onDb,
      disk: false,
      reopenMinMs: 5,
    });
    try {
      await store.kv.put('uplink!bdSeq', '7', { sync: true });
      f.failing.add(0);
      await expect(store.kv.put('uplink!bdSeq', '8', { sync: true })).rejects.toThrow(/No space/);
      // The next call waits for the reopen and writes to the new db.
      await store.kv.put('uplink!bdSeq', '8', { sync: true });
      expect(await store.kv.get('uplink!bdSeq')).toBe('8');
      expect(store.health().reopens).toBe(1);
    } finally {
      await store.close();
    }
  });

  test('reopen retries with backoff until the open succeeds', async () => {
    const clock = fakeClock();
    const f = stickyFailures();
    let opens = 0;
    let failOpens = 0;
    const store: ResilientStore = await openResilientLevelStore(freshDir(), {
      ...options(clock),
      onDb: f.onDb,
      disk: false,
      reopenMinMs: 5,
      reopenMaxMs: 20,
      openStore: async (dir, o) => {
        opens++;
        if (failOpens > 0) {
          failOpens--;
          throw new Error('IO error: cannot open: No space left on device');
        }
        const { openLevelStore } = await import('./level.ts');
        return openLevelStore(dir, o);
      },
    });
    try {
      await store.outbox.append(makeEvent('tx'));
      f.failing.add(0);
      failOpens = 3;
      await expect(store.outbox.append(makeEvent('tx'))).rejects.toMatchObject({
        code: 'EDGE_ERR_OUTBOX_IO',
      });
      expect((await store.outbox.append(makeEvent('tx')).catch(() => undefined))?.seq).toBeUndefined();
      expect((await readAll(store, 'tx')).map((e) => e.seq)).toEqual([1]);
      expect(opens).toBe(5);
      expect((await store.outbox.append(makeEvent('tx'))).seq).toBe(2);
    } finally {
      await store.close();
    }
  });
});
