/**
 * Outbox micro-benchmark (not a test). Prints JSON: appends/s of concurrent appends at
 * both durability levels, against raw classic-level batch writes of the same bytes in
 * the same run, plus the read()+ack() drain rate the uplink would see.
 *
 *   npx tsx edge/src/outbox/bench-outbox.ts [--events=200000] [--concurrency=1000] [--power-events=20000] [--mids=1]
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
async function concurrentAppends(store: EdgeStore, n: number, concurrency: number): Promise<number> {
  let next = 0;
  const worker = async () => {
    while (next < n) await store.outbox.append(event(next++));
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return n / ((performance.now() - t0) / 1000);
}

/** Raw baseline: the same envelopes serialised, written in batches of `concurrency` puts. */
async function rawBatches(n: number, batchSize: number, sync: boolean): Promise<number> {
  const db = new ClassicLevel<string, string>(join(root, `raw-${sync}`));
  await db.open();
  const t0 = performance.now();
  for (let i = 0; i < n; i += batchSize) {
    const ops = [];
    for (let j = i; j < Math.min(n, i + batchSize); j++) {
      const env: EventEnvelope = { ...event(j), seq: j + 1 };
      ops.push({
        type: 'put' as const,
        key: `o!${env.lane}!${String(j + 1).padStart(16, '0')}`,
        value: JSON.stringify(env),
      });
    }
    await db.batch(ops, { sync });
  }
  const rate = n / ((performance.now() - t0) / 1000);
  await db.close();
  return rate;
}

async function drain(store: EdgeStore): Promise<{ events: number; perSec: number }> {
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
  return { events: count, perSec: count / ((performance.now() - t0) / 1000) };
}

async function run(durability: Durability, n: number) {
  const store = await openLevelStore(join(root, `outbox-${durability}`), storeOptions(durability));
  const appendsPerSec = await concurrentAppends(store, n, CONCURRENCY);
  const drained = await drain(store);
  await store.close();
  return { appendsPerSec, drained };
}

const rawProcess = await rawBatches(EVENTS, CONCURRENCY, false);
const processRun = await run('process', EVENTS);
const rawPower = await rawBatches(POWER_EVENTS, CONCURRENCY, true);
const powerRun = await run('power', POWER_EVENTS);
rmSync(root, { recursive: true, force: true });

const r = (x: number) => Math.round(x);
console.log(
  JSON.stringify(
    {
      bench: 'outbox',
      node: process.version,
      events: EVENTS,
      powerEvents: POWER_EVENTS,
      concurrency: CONCURRENCY,
      mids: MIDS,
      process: {
        appendsPerSec: r(processRun.appendsPerSec),
        rawBatchPutsPerSec: r(rawProcess),
        ratio: Number((processRun.appendsPerSec / rawProcess).toFixed(2)),
        drainPerSec: r(processRun.drained.perSec),
      },
      power: {
        appendsPerSec: r(powerRun.appendsPerSec),
        rawSyncBatchPutsPerSec: r(rawPower),
        ratio: Number((powerRun.appendsPerSec / rawPower).toFixed(2)),
      },
    },
    null,
    2,
  ),
);
