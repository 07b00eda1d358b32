import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { fleet } from '@storelink/protocols';
import { pino } from 'pino';
import { startCloud } from '../cloud/src/index.ts';
import type { SqlCloudStore } from '../cloud/src/store/sql-store.ts';
import { startEdge } from '../edge/src/agent.ts';
import { SimFridge } from '../firmware-sim/src/fridge.ts';
import { log, num, type Scenario } from './lib.ts';

export interface ShadowsBenchResult {
  measured: string;
  n: number;
  /** Baseline in the same run: a signed `ping` to the gateway, issued → result committed. */
  ping_p50_ms: number;
  ping_p99_ms: number;
  /** Gateway shadow: desired changed (API call) → applied report committed. */
  gateway_p50_ms: number;
  gateway_p99_ms: number;
  /** Device shadow: desired changed → device.config on the sim → applied report committed. */
  device_p50_ms: number;
  device_p99_ms: number;
  gateway_vs_ping_p50: number;
  device_vs_ping_p50: number;
  /** Changes whose report did not arrive (must be 0). */
  lost: number;
  wall_s: number;
}

const pct = (sorted: number[], p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const round = (v: number) => Math.round(v * 100) / 100;

/**
 * `bench shadows`: how long a desired shadow change takes to be applied and reported, for
 * the gateway's own shadow and for a device behind it, against a plain signed ping issued
 * the same way in the same run. The real cloud (embedded broker, PGlite) and edge agent
 * (LevelDB) on loopback and one simulated fridge over MQTT; the clock stops when the
 * ingest transaction carrying the report (or the ping's command.result) runs its hook.
 */
export const shadowsBench: Scenario<ShadowsBenchResult> = {
  name: 'shadows',
  description: 'shadow change → applied report committed (gateway and device) vs a signed ping; p50/p99 ms',
  options: { n: { type: 'string', default: '100' } },
  mustBeZero: ['lost'],
  async run(args) {
    const n = num(args.n, 100);
    const dir = mkdtempSync(join(tmpdir(), 'storelink-bench-shadows-'));
    const quiet = () => pino({ level: 'silent' }, new Writable({ write: (_c, _e, cb) => cb() }));
    const t0 = performance.now();
    const cloud = await startCloud(
      {
        dataDir: join(dir, 'cloud'),
        http: { host: '127.0.0.1', port: 0 },
        broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
        store: { kind: 'pglite', dir: join(dir, 'cloud', 'pg') },
        signing: { privateKeyFile: join(dir, 'cloud', 'key.pem') },
        service: { username: 'svc', password: 'svc-secret' },
        gateways: [{ id: 'gw-1', site: 's1', password: 'pw-gw' }],
        log: { level: 'silent' },
      },
      { logger: quiet() },
    );
    const edge = await startEdge(
      {
        site: 's1',
        gateway: 'gw-1',
        dataDir: join(dir, 'edge'),
        broker: { host: '127.0.0.1', port: 0, wsPort: null },
        http: { host: '127.0.0.1', port: 0 },
        cloud: {
          url: cloud.brokerUrl,
          username: 'gw-1',
          password: 'pw-gw',
          publicKeyPem: cloud.publicKeyPem,
        },
        devices: [{ id: 'fr-1', password: 'pw-fr' }],
        log: { level: 'silent' },
      },
      { logger: quiet() },
    );
    const sim = new SimFridge({
      id: 'fr-1',
      password: 'pw-fr',
      brokerUrl: `mqtt://127.0.0.1:${edge.brokerPort}`,
      intervalMs: 3_600_000,
    }).start();
    try {
      await sim.ready(15_000);
      const store = cloud.store as SqlCloudStore;
      const shadows = cloud.fleetShadows!.shadows;
      // Resolves per key when the committed-by-ingest report arrives.
      const waiting = new Map<string, () => void>();
      store.onIngestEvents(async (_tx, batch) => {
        for (const ev of batch.events) {
          if (ev.type === fleet.SHADOW_REPORTED) {
            const p = ev.payload as fleet.ShadowReported;
            waiting.get(`${p.device ?? ''}#${p.version}`)?.();
          } else if (ev.type === 'command.result') {
            waiting.get((ev.payload as { commandId: string }).commandId)?.();
          }
        }
      });
      const until = (key: string, start: () => Promise<unknown>) =>
        new Promise<number>((resolve, reject) => {
          const begin = performance.now();
          const timer = setTimeout(() => {
            waiting.delete(key);
            reject(new Error(`no report for ${key}`));
          }, 10_000);
          waiting.set(key, () => {
            clearTimeout(timer);
            waiting.delete(key);
            // After the hook the batch commits; the next microtask turn is close enough.
            setImmediate(() => resolve(performance.now() - begin));
          });
          start().catch(reject);
        });
      const ping: number[] = [];
      const gw: number[] = [];
      const dev: number[] = [];
      let lost = 0;
      for (let i = 1; i <= n; i++) {
        try {
          const c = { id: '' };
          const pingKey = new Promise<number>((resolve, reject) => {
            const begin = performance.now();
            void cloud
              .sendCommand({ gateway: 'gw-1', type: 'ping', payload: { echo: String(i) } })
              .then((r) => {
                c.id = r.id;
                const timer = setTimeout(() => reject(new Error('no ping result')), 10_000);
                waiting.set(r.id, () => {
                  clearTimeout(timer);
                  setImmediate(() => resolve(performance.now() - begin));
                });
              }, reject);
          });
          ping.push(await pingKey);
          gw.push(
            await until(`#${i}`, () =>
              shadows.change({ gateway: 'gw-1', patch: { labels: { run: String(i) } } }),
            ),
          );
          dev.push(
            await until(`fr-1#${i}`, () =>
              shadows.change({ gateway: 'gw-1', device: 'fr-1', patch: { doorOpenAlarmMs: 60_000 + i } }),
            ),
          );
        } catch (e) {
          lost++;
          log(`round ${i}: ${(e as Error).message}`);
        }
      }
      for (const a of [ping, gw, dev]) a.sort((x, y) => x - y);
      const result: ShadowsBenchResult = {
        measured: 'API change (or ping issue) → report (or result) in the ingest transaction',
        n,
        ping_p50_ms: round(pct(ping, 50)),
        ping_p99_ms: round(pct(ping, 99)),
        gateway_p50_ms: round(pct(gw, 50)),
        gateway_p99_ms: round(pct(gw, 99)),
        device_p50_ms: round(pct(dev, 50)),
        device_p99_ms: round(pct(dev, 99)),
        gateway_vs_ping_p50: round(pct(gw, 50) / pct(ping, 50)),
        device_vs_ping_p50: round(pct(dev, 50) / pct(ping, 50)),
        lost,
        wall_s: round((performance.now() - t0) / 1000),
      };
      return result;
    } finally {
      await sim.stop({ force: true });
      await edge.close();
      await cloud.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
