import { newId, type UnsequencedEvent } from '@storelink/protocols';
import { openEdgeStore } from '../../edge/src/outbox/index.ts';
import { sleep } from '../../test/helpers/ports.ts';
import { makeDevices, startStack, waitFor } from '../../test/helpers/stack.ts';
import { cleanupTempDirs, tempMark } from '../../test/helpers/tmp.ts';
import { log, num, type Scenario, str } from '../lib.ts';

export interface DrainResult {
  events: number;
  seconds: number;
  events_s: number;
  /** Events the cloud store holds for the lane afterwards (must equal `events`). */
  committed: number;
  lost: number;
  /** Edge RSS after start-up while holding the whole backlog, cloud unreachable. */
  edgeRssHoldingMB: number;
  edgePeakRssMB: number;
  cloudPeakRssMB: number;
  edgeStartSeconds: number;
  fillSeconds: number;
  cloudBroker: string;
  store: string;
}

const MB = 2 ** 20;

/**
 * `bench drain`: a backlog of `--events` events is written straight into the edge's
 * LevelDB outbox with `openEdgeStore` while the agent is stopped (as if it had been
 * offline for days), then the agent starts with the cloud down (RSS measured while it
 * holds the backlog), then the cloud starts and the clock runs until the edge outbox
 * is empty, i.e. the cloud has committed and acknowledged every event [OUTBOX-ACK-2].
 */
export const drain: Scenario<DrainResult> = {
  name: 'drain',
  description:
    'offline-created backlog of N events drains from edge outbox into the cloud store; time and edge RSS',
  mustBeZero: ['lost'],
  options: {
    events: { type: 'string', default: '1000000' },
    'payload-bytes': { type: 'string', default: '150' },
    'cloud-broker': { type: 'string', default: 'embedded' },
    'hold-s': { type: 'string', default: '3' },
  },
  async run(a) {
    const mark = tempMark();
    const events = num(a.events, 1_000_000);
    const cloudBroker = str(a['cloud-broker'], 'embedded') as 'embedded' | 'mosquitto';
    const devices = makeDevices(10, 'device.alarm', 'drn');
    const stack = await startStack({
      cloudBroker,
      devices,
      startEdge: false,
      startCloud: false,
      outbox: {
        maxBytes: 8 * 2 ** 30,
        lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: 0, ttlMs: 86_400_000 } },
      },
      logLevel: 'warn',
    });
    try {
      const fillSeconds = await fill(
        stack.edgeDataDir,
        stack.site,
        stack.gateway,
        events,
        num(a['payload-bytes'], 150),
      );
      const ts0 = Date.now();
      await stack.edge.start();
      const edgeStartSeconds = (Date.now() - ts0) / 1000;
      const held = await stack.edgeStatus();
      log(`edge up in ${edgeStartSeconds}s holding ${held.outbox.depth} events; cloud down`);
      await sleep(num(a['hold-s'], 3) * 1000);
      const edgeRssHolding = stack.edge.rssBytes();
      log(`edge RSS holding the backlog: ${(edgeRssHolding / MB).toFixed(0)} MB`);
      if (stack.mosquitto) {
        /* Mosquitto already runs; the cloud service is what was down. */
      }
      await stack.cloud.start();
      const t0 = Date.now();
      log('cloud ready; draining');
      let lastLog = 0;
      await waitFor(
        async () => {
          const s = await stack.edgeStatus();
          if (Date.now() - lastLog > 5000) {
            lastLog = Date.now();
            log(
              `depth ${s.outbox.depth} after ${((Date.now() - t0) / 1000).toFixed(1)}s, edge RSS ${(stack.edge.rssBytes() / MB).toFixed(0)} MB`,
            );
          }
          return s.outbox.depth === 0;
        },
        30 * 60_000,
        'the backlog to drain',
        50,
      );
      const seconds = (Date.now() - t0) / 1000;
      const counts = (await stack.cloudCounts()) as { items: Array<{ lane: string; stored: number }> };
      const committed = counts.items.filter((c) => c.lane === 'event').reduce((n, c) => n + c.stored, 0);
      // The event lane also carries the agent's own presence events; count only ours below.
      return {
        events,
        seconds,
        events_s: Math.round(events / seconds),
        committed,
        lost: Math.max(0, events - committed),
        edgeRssHoldingMB: Math.round(edgeRssHolding / MB),
        edgePeakRssMB: Math.round(stack.edge.peakRssBytes / MB),
        cloudPeakRssMB: Math.round(stack.cloud.peakRssBytes / MB),
        edgeStartSeconds,
        fillSeconds,
        cloudBroker,
        store: 'pglite',
      };
    } finally {
      await stack.close();
      cleanupTempDirs(mark);
    }
  },
};

/** Writes `n` device.alarm events into the (stopped) edge's outbox; returns seconds taken. */
async function fill(
  dir: string,
  site: string,
  gateway: string,
  n: number,
  payloadBytes: number,
): Promise<number> {
  const t0 = Date.now();
  const store = await openEdgeStore({
    dir,
    kind: 'level',
    durability: 'process',
    maxBytes: 8 * 2 ** 30,
    lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: 0, ttlMs: 86_400_000 } },
    now: Date.now,
  });
  try {
    const pad = 'x'.repeat(Math.max(0, payloadBytes - 90));
    const window = 2000;
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < n; i = next++) {
        const now = Date.now();
        const ev: UnsequencedEvent = {
          id: newId(now),
          type: 'device.alarm',
          device: `drn${i % 10}`,
          gateway,
          site,
          ts: now,
          rts: now,
          lane: 'event',
          mid: `drain-${i}`,
          payload: { id: `drain-${i}`, code: 'BACKLOG', severity: 'info', active: i % 2 === 0, message: pad },
        };
        await store.outbox.append(ev);
        if (i % 100_000 === 0 && i > 0) log(`filled ${i} events`);
      }
    };
    await Promise.all(Array.from({ length: window }, worker));
  } finally {
    await store.close();
  }
  const s = (Date.now() - t0) / 1000;
  log(`filled ${n} events in ${s.toFixed(1)} s`);
  return s;
}
