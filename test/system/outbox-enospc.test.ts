import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { UnsequencedEvent } from '@storelink/protocols';
import { afterAll, describe, expect, it } from 'vitest';
import { smallFs } from '../../bench/scenarios/diskfull.ts';
import { makeEvent, options, readAll } from '../../edge/src/outbox/conformance.ts';
import { openResilientLevelStore } from '../../edge/src/outbox/reopen.ts';
import { cleanupTempDirs, tempMark } from '../helpers/tmp.ts';

/**
 * [OUTBOX-DISK-2] against the real thing: LevelDB on a 16 MB tmpfs, disk reserve switched
 * off, filled until LevelDB fails with ENOSPC (which it makes sticky). The store must
 * reopen itself, lose nothing it acknowledged, leave no seq gap, and take writes again once
 * space is freed from outside.
 */
describe('system: outbox on a full disk (real ENOSPC)', () => {
  const mark = tempMark();
  const fs = smallFs(16);
  afterAll(() => {
    try {
      fs.unmount();
    } catch {
      // already gone
    }
    cleanupTempDirs(mark);
  });

  it('reopens after ENOSPC, keeps every acknowledged event, resumes without a gap once space is freed', async () => {
    const filler = join(fs.dir, 'filler');
    writeFileSync(filler, Buffer.alloc(6 * 2 ** 20, 1));
    const store = await openResilientLevelStore(join(fs.dir, 'db'), {
      ...options({ now: Date.now }),
      disk: false,
      reopenMinMs: 50,
      reopenMaxMs: 500,
    });
    try {
      const acked = { tx: 0, telemetry: 0 };
      let failed = 0;
      // Incompressible (LevelDB compresses its tables): the disk must really fill up. A
      // repeated short string compressed so well that, with one value per group commit
      // [OUTBOX-SEG-1], 400 rounds fitted in the 10 MB left.
      const noise = () => randomBytes(240).toString('base64');
      for (let round = 0; round < 400 && failed < 1000; round++) {
        const events: UnsequencedEvent[] = Array.from({ length: 200 }, (_, i) => ({
          ...makeEvent(i % 10 === 0 ? 'tx' : 'telemetry'),
          payload: { x: noise() },
        }));
        const r = await Promise.allSettled(events.map((e) => store.outbox.append(e)));
        r.forEach((x, i) => {
          if (x.status === 'fulfilled') acked[events[i]!.lane as 'tx' | 'telemetry']++;
          else {
            failed++;
            expect((x.reason as { code?: string }).code).toBe('EDGE_ERR_OUTBOX_IO');
          }
        });
      }
      expect(failed).toBeGreaterThan(0);
      expect(store.health().reopens).toBeGreaterThanOrEqual(1);
      expect(store.health().lastWriteError).toMatch(/No space left on device/);

      rmSync(filler);
      const deadline = Date.now() + 30_000;
      let next: number | undefined;
      while (next === undefined && Date.now() < deadline) {
        next = await store.outbox.append(makeEvent('tx')).then(
          (e) => e.seq,
          () => undefined,
        );
        if (next === undefined) await new Promise((r) => setTimeout(r, 200));
      }
      // Every acknowledged append is held, seqs 1..n without a gap, the new one last. (A
      // batch whose write was reported failed may still have reached the log and be replayed
      // on reopen: held then exceeds acked — at-least-once, see "Known limits".)
      const tx = (await readAll(store, 'tx')).map((e) => e.seq);
      const tel = (await readAll(store, 'telemetry')).map((e) => e.seq);
      expect(tx).toEqual(Array.from({ length: tx.length }, (_, i) => i + 1));
      expect(tel).toEqual(Array.from({ length: tel.length }, (_, i) => i + 1));
      expect(tx.length).toBeGreaterThanOrEqual(acked.tx + 1);
      expect(tel.length).toBeGreaterThanOrEqual(acked.telemetry);
      expect(next).toBe(tx.at(-1));
      expect(store.recovery.lostCount).toBe(0);
    } finally {
      await store.close();
    }
  }, 120_000);
});
