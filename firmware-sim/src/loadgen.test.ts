import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkDeviceEvent } from '@storelink/protocols';
import { afterEach, describe, expect, it } from 'vitest';
import { type AckRecord, loadPayload, startQos1Publishers } from './loadgen.ts';
import { eventually, startTestBroker, type TestBroker } from './test-support.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function midsOf(b: TestBroker) {
  const seen: Array<{ client: string; mid: string; n: number }> = [];
  b.aedes.on('publish', (packet, client) => {
    if (!client || !packet.topic.startsWith('dev/')) return;
    const p = JSON.parse(packet.payload.toString()) as { id: string; metrics: { n: number } };
    seen.push({ client: client.id, mid: p.id, n: p.metrics.n });
  });
  return seen;
}

describe('startQos1Publishers', () => {
  it('payloads are schema-valid at the requested size', () => {
    for (const bytes of [50, 200, 1000, 8000]) {
      const t = loadPayload('telemetry', 'd-boot-1', 1, 1_700_000_000_000, bytes);
      expect(checkDeviceEvent('telemetry', JSON.parse(t)).ok).toBe(true);
      if (bytes >= 200) expect(Math.abs(t.length - bytes)).toBeLessThan(20);
      const a = loadPayload('device.alarm', 'd-boot-1', 1, 1_700_000_000_000, Math.min(bytes, 500));
      expect(checkDeviceEvent('device.alarm', JSON.parse(a)).ok).toBe(true);
    }
  });

  it('keeps the in-flight window, records every PUBACK, and honours a rate', async () => {
    // A broker that is slow to acknowledge makes the window visible.
    let maxOutstanding = 0;
    const b = await startTestBroker({
      aedes: {
        authorizePublish: (_client, _packet, done) => {
          setTimeout(() => done(null), 2);
        },
      },
    });
    cleanups.push(() => b.close());
    const dir = mkdtempSync(join(tmpdir(), 'loadgen-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'acks.jsonl');
    const pubs = startQos1Publishers({
      brokerUrl: b.url,
      devices: [{ id: 'lg-1' }, { id: 'lg-2', type: 'device.alarm' }],
      inflight: 4,
      maxPerDevice: 150,
      ackLog: file,
      flushEvery: 16,
    });
    cleanups.push(() => pubs.close());
    const probe = setInterval(() => {
      maxOutstanding = Math.max(maxOutstanding, pubs.stats().outstanding);
    }, 1);
    cleanups.push(() => clearInterval(probe));
    await pubs.done();
    expect(maxOutstanding).toBeGreaterThan(4);
    expect(maxOutstanding).toBeLessThanOrEqual(8);
    const res = await pubs.stop();
    expect(res).toEqual({ sent: 300, acked: 300, outstanding: 0 });
    const acked = pubs.acked();
    expect(acked).toHaveLength(300);
    expect(new Set(acked).size).toBe(300);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    const recs = lines.map((l) => JSON.parse(l) as AckRecord);
    expect(recs.map((r) => r.mid)).toEqual(acked);
    for (const dev of ['lg-1', 'lg-2']) {
      const ns = recs.filter((r) => r.device === dev).map((r) => r.n);
      expect(ns).toEqual([...Array(150).keys()]);
    }

    // A rate limit: 100/s for 300 ms is about 30 messages, not hundreds.
    const slow = startQos1Publishers({ brokerUrl: b.url, devices: [{ id: 'lg-3' }], ratePerDevice: 100 });
    cleanups.push(() => slow.close());
    await slow.ready();
    const t0 = slow.stats().sent;
    await new Promise((r) => setTimeout(r, 300));
    const sent = slow.stats().sent - t0;
    expect(sent).toBeGreaterThan(5);
    expect(sent).toBeLessThan(60);
  });

  it('survives the broker dying: reconnects, resends what was not acknowledged, loses nothing', async () => {
    // Broker 1 stops acknowledging after 100 messages (like an agent that stored them
    // but died before the PUBACK left), then is killed.
    const seen1: string[] = [];
    const b1 = await startTestBroker({
      aedes: {
        // aedes PUBACKs once a publish has passed authorizePublish; holding the callback
        // holds the PUBACK (aedes' `published` hook does not).
        authorizePublish: (client, packet, done) => {
          if (client && packet.topic.startsWith('dev/')) {
            seen1.push((JSON.parse(packet.payload.toString()) as { id: string }).id);
            if (seen1.length > 100) return; // received, never acknowledged
          }
          done(null);
        },
      },
    });
    const port = b1.port;
    const acks: AckRecord[] = [];
    const pubs = startQos1Publishers({
      brokerUrl: b1.url,
      devices: [{ id: 'lg-1' }, { id: 'lg-2' }],
      inflight: 8,
      maxPerDevice: 200,
      reconnectPeriodMs: 20,
      ackLog: acks,
    });
    cleanups.push(() => pubs.close());
    await eventually(
      () => pubs.ackedCount() === 100 && seen1.length > 100 && pubs.stats().outstanding === 16,
      5000,
      'window full of unacked messages',
    );
    await new Promise((r) => setTimeout(r, 50));
    // The window holds: nothing beyond 8 per device is sent while PUBACKs are missing.
    expect(pubs.stats().sent).toBe(116);
    await b1.kill();
    await eventually(() => pubs.stats().connected === 0, 3000, 'publishers offline');

    const b2 = await startTestBroker({ port });
    cleanups.push(() => b2.close());
    const seen2 = midsOf(b2);
    await pubs.done();
    const res = await pubs.stop();
    expect(res).toEqual({ sent: 400, acked: 400, outstanding: 0 });

    // Every message is acknowledged exactly once, per device in full.
    expect(acks).toHaveLength(400);
    expect(new Set(acks.map((a) => a.mid)).size).toBe(400);
    for (const dev of ['lg-1', 'lg-2']) {
      const ns = acks
        .filter((a) => a.device === dev)
        .map((a) => a.n)
        .sort((x, y) => x - y);
      expect(ns).toEqual([...Array(200).keys()]);
    }
    // The unacknowledged messages broker 1 had received were sent again, same ids:
    // these resends are what the edge dedupes by id [INGEST-DEDUPE-1].
    const unacked1 = seen1.slice(100);
    expect(unacked1.length).toBeGreaterThan(0);
    const mids2 = new Set(seen2.map((s) => s.mid));
    for (const m of unacked1) expect(mids2.has(m)).toBe(true);
    expect(pubs.stats().connects).toBeGreaterThanOrEqual(4);
  });
});
