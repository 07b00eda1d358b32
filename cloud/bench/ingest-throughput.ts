/**
 * Cloud ingest throughput through the whole path: raw MQTT gateways publish 500-event
 * QoS1 batches to the embedded broker, the ingest commits them (PGlite on disk unless
 * STORE_URL is set) and acks; a gateway keeps WINDOW batches unacknowledged, like the
 * edge uplink. Prints one JSON line.
 *
 *   npx tsx cloud/bench/ingest-throughput.ts [events=200000] [gateways=4] [batch=500] [window=4]
 */
import { gatewayTopic, newId } from '@storelink/protocols';
import { startCloud } from '../src/index.ts';
import { connectGateway, silentLogger, tempDir } from '../src/test-support.ts';
import { batchOf, telemetryRun } from '../src/testing.ts';

const [events = 200_000, gateways = 4, batchSize = 500, window = 4] = process.argv.slice(2).map(Number);
const tmp = tempDir('storelink-bench-');
const gws = Array.from({ length: gateways }, (_, i) => ({ gateway: `gw-${i}`, site: 'bench' }));
const cloud = await startCloud(
  {
    dataDir: tmp.dir,
    http: { host: '127.0.0.1', port: 0 },
    broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
    ...(process.env.STORE_URL ? { store: { kind: 'postgres', url: process.env.STORE_URL } } : {}),
    gateways: gws.map((g) => ({ id: g.gateway, site: g.site, password: 'pw' })),
  },
  { logger: silentLogger() },
);
const perGateway = Math.floor(events / gateways / batchSize) * batchSize;
const t0 = performance.now();
await Promise.all(
  gws.map(async (gw) => {
    const g = await connectGateway(cloud.brokerUrl, { username: gw.gateway, password: 'pw' });
    const epoch = newId();
    let acked = 0;
    let wake: (() => void) | undefined;
    g.client.on('message', (_t, p) => {
      const a = JSON.parse(p.toString());
      if (a.epoch === epoch) acked = Math.max(acked, a.acks.telemetry ?? 0);
      wake?.();
    });
    await g.client.subscribeAsync(gatewayTopic(gw, 'ack'), { qos: 1 });
    let next = 1;
    while (acked < perGateway) {
      while (next <= perGateway && next - 1 - acked < window * batchSize) {
        const b = batchOf(gw, epoch, telemetryRun(gw, next, batchSize), { telemetry: acked + 1 });
        g.client.publish(gatewayTopic(gw, 'up'), JSON.stringify(b), { qos: 1 });
        next += batchSize;
      }
      await new Promise<void>((r) => {
        wake = r;
      });
    }
    await g.close();
  }),
);
const seconds = (performance.now() - t0) / 1000;
const total = perGateway * gateways;
const counts = await Promise.all(gws.map((g) => cloud.store.laneCounts(g.gateway)));
const stored = counts.flat().reduce((a, c) => a + c.stored, 0);
console.log(
  JSON.stringify({
    bench: 'cloud-ingest-throughput',
    store: process.env.STORE_URL ? 'postgres' : 'pglite',
    events: total,
    stored,
    gateways,
    batchSize,
    window,
    seconds: Number(seconds.toFixed(2)),
    eventsPerSecond: Math.round(total / seconds),
  }),
);
await cloud.close();
tmp.remove();
