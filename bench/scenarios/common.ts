import { openEdgeStore } from '../../edge/src/outbox/index.ts';
import { type AckRecord, startQos1Publishers } from '@storelink/firmware-sim';
import { type Stack, waitFor } from '../../test/helpers/stack.ts';
import { type DeliveryReport, type StoredRow, verifyDelivery } from '../../test/helpers/verify.ts';
import { log } from '../lib.ts';

export { startQos1Publishers, type AckRecord };

/** Waits until the edge outbox holds nothing the cloud has not committed (lanes empty). */
export async function waitDrained(stack: Stack, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  let lastLog = 0;
  await waitFor(
    async () => {
      const s = await stack.edgeStatus();
      if (Date.now() - lastLog > 5000) {
        lastLog = Date.now();
        log(`edge outbox depth ${s.outbox.depth}`);
      }
      return s.outbox.depth === 0;
    },
    timeoutMs,
    'the edge outbox to drain to the cloud',
    100,
  );
  return (Date.now() - t0) / 1000;
}

/** Reads the cloud store back and checks it against the device ack log. */
export async function checkCloud(stack: Stack, ackLog: AckRecord[], runId: string): Promise<DeliveryReport> {
  const rows = await stack.cloudEvents(['event', 'telemetry']);
  return verifyDelivery(ackLog, rows, ours(runId));
}

/** Message ids of this run (the loadgen puts the run id between dashes). */
export const ours = (runId: string) => (mid: string) => mid.includes(`-${runId.slice(0, 14)}-`);

/** Outbox options used when a harness opens the edge store directly (edge stopped). */
export const BIG_LANES = {
  tx: { maxBytes: 0 },
  event: { maxBytes: 0 },
  telemetry: { maxBytes: 0, ttlMs: 7 * 24 * 3600 * 1000 },
};

/**
 * Reads every event still held in a stopped edge's outbox, as rows the verifier takes
 * (used when a run has no cloud: then "stored" means "held by the outbox").
 */
export async function readEdgeOutbox(dir: string): Promise<StoredRow[]> {
  const store = await openEdgeStore({
    dir,
    kind: 'level',
    durability: 'process',
    maxBytes: 8 * 2 ** 30,
    lanes: BIG_LANES,
    now: Date.now,
  });
  try {
    const rows: StoredRow[] = [];
    const epoch = store.outbox.epoch;
    for (const lane of ['tx', 'event', 'telemetry'] as const) {
      let after = store.outbox.floor(lane) - 1;
      for (;;) {
        const batch = await store.outbox.read(lane, after, 5000);
        if (batch.length === 0) break;
        for (const e of batch) {
          const env = JSON.parse(e.json) as StoredRow;
          rows.push({ ...env, epoch });
        }
        after = batch[batch.length - 1]!.seq;
      }
    }
    return rows;
  } finally {
    await store.close();
  }
}
