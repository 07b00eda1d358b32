import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { gatewayTopic } from '@storelink/protocols';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { startCloud } from '../cloud/src/index.ts';
import { startEdge } from '../edge/src/agent.ts';
import { createMockLink } from '../edge/src/vending/mock-link.ts';
import { httpNotify, httpOrderApi } from '../firmware-sim/src/payment/buyer.ts';
import { SimPaymentProvider } from '../firmware-sim/src/payment/provider.ts';
import { VmcBoard } from '../firmware-sim/src/vmc/index.ts';
import { log, num, type Scenario } from './lib.ts';

export interface DispenseBenchResult {
  /** What the latency spans. */
  measured: string;
  transport: string;
  orders: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  /** Goal: p99 under 50 ms. */
  goal_p99_ms: number;
  meets_goal: boolean;
  /** Whole orders (notify → approved → dispensed) one after another, per second. */
  orders_per_s: number;
  /** Split of the span at the moment the command is on the cloud broker (a subscriber sees it). */
  cloud_p50_ms: number;
  cloud_p99_ms: number;
  edge_p50_ms: number;
  edge_p99_ms: number;
  /** Baseline in the same run: driver.vend() → VEND APPROVED on the line, no cloud or MQTT. */
  serial_only_p50_ms: number;
  serial_only_p99_ms: number;
  dispensed: number;
  /** Orders that did not end dispensed (must be 0). */
  not_dispensed: number;
  wall_s: number;
}

const pct = (sorted: number[], p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const round = (v: number) => Math.round(v * 100) / 100;

/**
 * `bench dispense`: payment notification accepted → vend approved on the serial line.
 * The real cloud (embedded broker, PGlite, orders/payments) and the real edge agent (LevelDB
 * outbox, command router, VmcDriver) on loopback; the simulated board on the other end of
 * a @serialport/binding-mock cable (in-process, no pty), polling every 5 ms and running a
 * 1 ms motor, so it answers at once. Each order is created over HTTP (not timed); the clock
 * starts when the simulated provider sends its signed notification (HTTP POST
 * /api/v1/payments/notify/wechat) and stops at the driver's `approved` event (VEND APPROVED
 * written on the line). Orders run one after another.
 */
export const dispenseBench: Scenario<DispenseBenchResult> = {
  name: 'dispense',
  description:
    'payment notify (HTTP) → vend approved on the serial line; p50/p99 ms and orders/s (goal p99 < 50 ms)',
  options: {
    orders: { type: 'string', default: '100' },
    warmup: { type: 'string', default: '10' },
  },
  mustBeZero: ['not_dispensed'],
  async run(args) {
    const orders = num(args.orders, 100);
    const warmup = num(args.warmup, 10);
    const dir = mkdtempSync(join(tmpdir(), 'storelink-bench-dispense-'));
    const silent = pino({ level: 'silent' });
    const SECRET = 'bench-dispense-secret';
    const GW = 'gw-bench-vend';
    const SITE = 'bench';
    const SLOT = 1;
    const service = { username: 'bench-svc', password: 'bench-svc-secret' };
    const PRICE = 100;
    const cloud = await startCloud(
      {
        dataDir: join(dir, 'cloud'),
        http: { host: '127.0.0.1', port: 0 },
        broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
        store: { kind: 'pglite', dir: join(dir, 'cloud', 'pg') },
        gateways: [{ id: GW, site: SITE, password: 'gw-secret' }],
        service,
        log: { level: 'silent' },
        payments: { providers: { wechat: { algorithm: 'hmac-sha256', key: SECRET } }, sweepIntervalMs: 0 },
      },
      { logger: silent },
    );
    const link = createMockLink('/dev/bench-vmc-edge', '/dev/bench-vmc-board');
    const board = new VmcBoard({
      path: '/dev/bench-vmc-board',
      binding: link.binding,
      slots: [{ item: SLOT, priceCents: PRICE, stock: 60_000 }],
      dropOverSerial: true,
      pollMs: 5,
      motorMs: 1,
      dropPulseMs: 1,
    });
    const edge = await startEdge(
      {
        site: SITE,
        gateway: GW,
        dataDir: join(dir, 'edge'),
        broker: { host: '127.0.0.1', port: 0, wsPort: null },
        http: { host: '127.0.0.1', port: 0 },
        cloud: {
          url: cloud.brokerUrl,
          username: GW,
          password: 'gw-secret',
          publicKeyPem: cloud.publicKeyPem,
        },
        log: { level: 'silent' },
        vending: { serialPath: '/dev/bench-vmc-edge', dropGpio: 'serial', dropWindowMs: 500 },
      },
      { logger: silent, binding: link.binding },
    );
    const driver = edge.vending!.driver;
    const started = new Map<string, number>();
    const approved = new Map<string, number>();
    const outcomes = new Map<string, (o: string) => void>();
    driver.on('approved', ({ orderId }) => approved.set(orderId, performance.now()));
    driver.on('outcome', (o) => outcomes.get(o.orderId)?.(o.outcome));
    const notify = httpNotify(cloud.httpUrl);
    const provider = new SimPaymentProvider({
      algorithm: 'hmac-sha256',
      key: SECRET,
      now: Date.now,
      deliver: async (req) => {
        const id = (JSON.parse(req.body) as { resource: { out_trade_no: string } }).resource.out_trade_no;
        started.set(id, performance.now());
        const st = await notify(req);
        if (st !== 200) log(`notify ${id}: HTTP ${st}`);
        return st;
      },
    });
    const api = httpOrderApi(cloud.httpUrl);
    // A listener on the command topic splits the span: cloud (notify → command on the broker), edge (→ approved).
    const onBroker = new Map<string, number>();
    const spy = await mqtt.connectAsync(cloud.brokerUrl, {
      ...service,
      clientId: 'bench-spy',
      reconnectPeriod: 0,
    });
    spy.on('message', (_t, buf) => {
      const c = JSON.parse(buf.toString()) as { type: string; payload: { orderId?: string } };
      if (c.type === 'vend.dispense' && c.payload.orderId) onBroker.set(c.payload.orderId, performance.now());
    });
    await spy.subscribeAsync(gatewayTopic({ site: SITE, gateway: GW }, 'cmd'), { qos: 1 });
    try {
      await board.start();
      const t0 = Date.now();
      // A command published before the edge has subscribed is not queued for it.
      while (!driver.isLinkUp || !edge.status().uplink.connected) {
        if (Date.now() - t0 > 10_000)
          throw new Error('the board never polled the edge or the edge never reached the cloud');
        await new Promise((r) => setTimeout(r, 10));
      }
      log(`dispense: cloud ${cloud.httpUrl}, edge up, board polling; ${warmup} warm-up + ${orders} orders`);

      const one = async (): Promise<{ id: string; outcome: string }> => {
        const order = await api.createOrder({
          gateway: GW,
          slot: SLOT,
          amountCents: PRICE,
          provider: 'wechat',
        });
        const done = new Promise<string>((res, rej) => {
          const timer = setTimeout(() => rej(new Error(`order ${order.id}: no outcome in 10 s`)), 10_000);
          outcomes.set(order.id, (o) => {
            clearTimeout(timer);
            res(o);
          });
        });
        const paid = provider.pay(order.id, order.amountCents, order.currency);
        if (!paid.ok) throw new Error(`pay ${order.id}: ${paid.reason}`);
        await provider.tick(Date.now());
        const outcome = await done;
        outcomes.delete(order.id);
        return { id: order.id, outcome };
      };

      for (let i = 0; i < warmup; i++) {
        const w = await one();
        if (i === 0) log(`first order ${w.id}: ${w.outcome}`);
      }
      const latencies: number[] = [];
      const cloudPart: number[] = [];
      const edgePart: number[] = [];
      let dispensed = 0;
      const wall0 = performance.now();
      for (let i = 0; i < orders; i++) {
        const { id, outcome } = await one();
        if (outcome === 'dispensed') dispensed++;
        const a = approved.get(id);
        const s = started.get(id);
        if (a !== undefined && s !== undefined) latencies.push(a - s);
        const b = onBroker.get(id);
        if (a !== undefined && s !== undefined && b !== undefined) {
          cloudPart.push(b - s);
          edgePart.push(a - b);
        }
      }
      const wall = (performance.now() - wall0) / 1000;

      // Baseline: the serial half alone (driver.vend → VEND APPROVED), same rig.
      const serial: number[] = [];
      for (let i = 0; i < Math.min(orders, 50); i++) {
        const o = await driver.vend({ orderId: `benchdirect${i}`, slot: SLOT, priceCents: PRICE });
        if (o.approvedAfterMs !== undefined) serial.push(o.approvedAfterMs);
      }

      latencies.sort((x, y) => x - y);
      serial.sort((x, y) => x - y);
      cloudPart.sort((x, y) => x - y);
      edgePart.sort((x, y) => x - y);
      const p99 = pct(latencies, 99);
      return {
        measured:
          'HTTP POST /api/v1/payments/notify/wechat sent → VmcDriver "approved" (VEND APPROVED written on the serial line)',
        transport: '@serialport/binding-mock ports wired back to back (in-process), board poll 5 ms',
        orders,
        p50_ms: round(pct(latencies, 50)),
        p99_ms: round(p99),
        max_ms: round(latencies.at(-1) ?? 0),
        goal_p99_ms: 50,
        meets_goal: latencies.length === orders && p99 < 50,
        orders_per_s: round(orders / wall),
        cloud_p50_ms: round(pct(cloudPart, 50)),
        cloud_p99_ms: round(pct(cloudPart, 99)),
        edge_p50_ms: round(pct(edgePart, 50)),
        edge_p99_ms: round(pct(edgePart, 99)),
        serial_only_p50_ms: round(pct(serial, 50)),
        serial_only_p99_ms: round(pct(serial, 99)),
        dispensed,
        not_dispensed: orders - dispensed,
        wall_s: round(wall),
      };
    } finally {
      await spy.endAsync();
      await board.stop();
      await edge.close();
      await cloud.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
