/**
 * Outbox micro-benchmark (not a test). Prints JSON: appends/s of concurrent appends at
 * both durability levels, against raw classic-level batch writes of the same envelopes
 * (batches of `concurrency` puts) in the same run, plus the read()+ack() drain rate the
 * uplink would see (all events appended in the process run).
 *
 *   npx tsx edge/src/outbox/bench-outbox.ts [--events=200000] [--concurrency=1000] [--power-events=20000] [--mids=1] [--rounds=5]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EventEnvelope, LANES, newId, type UnsequencedEvent } from '@storelink/protocols';
import { ClassicLevel } from 'classic-level';
import { openLevelStore } from './level.ts';
import type { Durability, EdgeStore, OutboxOptions } from './types.ts';

function arg(name: string, def: number): number {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? Number(hit.split('=')[1]) : def;
}

const EVENTS = arg('events', 200_000);
const POWER_EVENTS = arg('power-events', 20_000);
const CONCURRENCY = arg('concurrency', 1000);
/** `--mids=0` sends events without device message ids (no dedupe index writes). */
const MIDS = arg('mids', 1) !== 0;
const ROUNDS = arg('rounds', 5);
const root = mkdtempSync(join(tmpdir(), 'bench-outbox-'));

function event(i: number): UnsequencedEvent {
  const lane = LANES[i % 3]!;
  return {
    id: newId(),
    type: 'shelf.weight',
    device: `shelf-${i % 16}`,
    gateway: 'gw-bench',
    site: 'site-bench',
    ts: Date.now(),
    rts: Date.now(),
    lane,
    ...(MIDS ? { mid: `m-${i}` } : {}),
    payload: { slot: i % 24, grams: 1000 + (i % 500), delta: -(i % 300), stable: true },
  };
}

function storeOptions(durability: Durability): OutboxOptions {
  return {
    durability,
    maxBytes: 0,
    lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: 0, ttlMs: 3_600_000 } },
    now: Date.now,
    expireIntervalMs: 0,
  };
}

/** `concurrency` workers, each appending and awaiting, like devices waiting for PUBACK. */
async function concurrentAppends(
  store: EdgeStore,
  from: number,
  n: number,
  concurrency: number,
): Promise<number> {
  let next = from;
  const end = from + n;
  const worker = async () => {
    while (next < end) await store.outbox.append(event(next++));
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return n / ((performance.now() - t0) / 1000);
}

/** Raw baseline: the same envelopes serialised, written in batches of `batchSize` puts. */
async function rawBatches(
  db: ClassicLevel<string, string>,
  from: number,
  n: number,
  batchSize: number,
  sync: boolean,
) {
  const t0 = performance.now();
  for (let i = from; i < from + n; i += batchSize) {
    const ops = [];
    for (let j = i; j < Math.min(from + n, i + batchSize); j++) {
      const env: EventEnvelope = { ...event(j), seq: j + 1 };
      ops.push({
        type: 'put' as const,
        key: `o!${env.lane}!${String(j + 1).padStart(16, '0')}`,
        value: JSON.stringify(env),
      });
    }
    await db.batch(ops, { sync });
  }
  return n / ((performance.now() - t0) / 1000);
}

async function drain(store: EdgeStore): Promise<number> {
  let count = 0;
  const t0 = performance.now();
  for (const lane of LANES) {
    for (;;) {
      const batch = await store.outbox.read(lane, store.outbox.acked(lane), 1000, 512 * 1024);
      if (batch.length === 0) break;
      count += batch.length;
      await store.outbox.ack(lane, batch[batch.length - 1]!.seq);
    }
  }
  return count / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * The machine is noisy, so raw and outbox writes alternate in `ROUNDS` rounds against
 * the same two growing databases; the figure reported is the median of the rounds.
 */
async function compare(durability: Durability, total: number) {
  const raw = new ClassicLevel<string, string>(join(root, `raw-${durability}`));
  await raw.open();
  const store = await openLevelStore(join(root, `outbox-${durability}`), storeOptions(durability));
  const per = Math.floor(total / ROUNDS);
  const rawRates: number[] = [];
  const outboxRates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    rawRates.push(await rawBatches(raw, r * per, per, CONCURRENCY, durability === 'power'));
    outboxRates.push(await concurrentAppends(store, r * per, per, CONCURRENCY));
  }
  const drainPerSec = durability === 'process' ? await drain(store) : undefined;
  await store.close();
  await raw.close();
  const ratios = rawRates.map((x, i) => outboxRates[i]! / x);
  return {
    appendsPerSec: Math.round(median(outboxRates)),
    rawBatchPutsPerSec: Math.round(median(rawRates)),
    ratio: Number(median(ratios).toFixed(2)),
    ...(drainPerSec === undefined ? {} : { drainPerSec: Math.round(drainPerSec) }),
  };
}

const processRun = await compare('process', EVENTS);
const powerRun = await compare('power', POWER_EVENTS);
rmSync(root, { recursive: true, force: true });

console.log(
  JSON.stringify(
    {
      bench: 'outbox',
      node: process.version,
      events: EVENTS,
      powerEvents: POWER_EVENTS,
      concurrency: CONCURRENCY,
      mids: MIDS,
      rounds: ROUNDS,
      process: processRun,
      power: powerRun,
    },
    null,
    2,
  ),
);
