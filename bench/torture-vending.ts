/**
 * `npm run torture -- vending --orders 100000 --seed N --json`: the vending money path
 * in simulated time (no sleeps), in process, deterministic for a seed.
 *
 * What runs for real: the cloud's order state machine, `OrdersService` (signature
 * verification, amount/order checks, idempotent notifications, the one dispense command,
 * results, refunds) and `SettlementSweeper` (query-order fallback, close, command
 * expiry, refund retries), and the simulated payment provider (firmware-sim) with
 * WeChat's 15-step retry schedule. The repo is `MemoryOrdersRepo` (same interface and
 * transaction semantics as the SQL one, which cloud/src/orders/vending.test.ts runs on
 * PGlite): PGlite costs ~1 ms per statement, 100,000 orders × ~15 statements would
 * take far longer than the few minutes this run is allowed.
 *
 * What is modelled: the broker/command path (lost and delayed commands), the edge agent
 * (idempotent per-order ledger as edge/src/vending/driver.ts [VEND-ONCE-1]: a repeat
 * returns the first outcome, an interrupted vend is never re-run; expired commands
 * refused; restarts; serial garbage, jams, no-drop), the outbox (results never lost on
 * the tx lane but delayed or sent twice), the buyer (pays at once, late, or never).
 *
 * Invariants (must be 0): double_dispense (an order whose item dropped more than once,
 * or that got more than one distinct dispense command), paid_not_settled (a payment the
 * provider took whose order is not dispensed or refunded at the end, or whose refund the
 * provider never made), refund_id_changed (the provider saw a refund retry with another
 * out_refund_no).
 */
import {
  MemoryOrdersRepo,
  type OrdersRepo,
  OrdersService,
  SettlementSweeper,
  SqlOrdersRepo,
} from '../cloud/src/orders/index.ts';
import { migrate } from '../cloud/src/store/migrations.ts';
import { openPglite } from '../cloud/src/store/pglite.ts';
import { NotificationVerifier } from '../cloud/src/payments/wechat.ts';
import { TimeQueue } from '../firmware-sim/src/payment/heap.ts';
import { SimPaymentProvider } from '../firmware-sim/src/payment/provider.ts';
import { log, num, rng as mulberry, type Scenario } from './lib.ts';

export interface VendingTortureOptions {
  orders: number;
  seed: number;
  gateways?: number;
  /** Mean gap between new orders (simulated ms). */
  orderGapMs?: number;
  /** Multiplies every fault probability (0 = a clean run). */
  faultScale?: number;
  /**
   * Break one safeguard on purpose, to prove the verdict detects it (tests only):
   * `edge-ledger` re-runs a repeated dispense, `refund-number` retries a refund with a new
   * out_refund_no.
   */
  sabotage?: 'edge-ledger' | 'refund-number';
  /** `memory` (default) or `pglite`: the SQL repo on an in-memory PGlite (slow: small runs). */
  store?: 'memory' | 'pglite';
}

export interface VendingTortureResult {
  orders: number;
  dispensed: number;
  refunded: number;
  expired_unpaid: number;
  double_dispense: number;
  paid_not_settled: number;
  refund_id_changed: number;
  /** Informational: items that dropped for an order that was then refunded (result too late). */
  dropped_but_refunded: number;
  /** Informational: fault and path counters. */
  counts: Record<string, number>;
  simulated_hours: number;
  seconds: number;
  seed: number;
}

const T0 = 1_763_900_000_000;
const SECRET = 'torture-vending-hmac-secret';

export async function runVendingTorture(o: VendingTortureOptions): Promise<VendingTortureResult> {
  const started = Date.now();
  const rnd = mulberry(o.seed);
  const f = o.faultScale ?? 1;
  const P = {
    commandLost: 0.02 * f,
    commandDelay: 0.05 * f,
    commandDuplicated: 0.02 * f,
    resultDelayed: 0.05 * f,
    resultDuplicated: 0.05 * f,
    edgeRestart: 0.01 * f,
    restartMidVend: 0.003 * f,
    garbage: 0.03 * f,
    garbageTimeout: 0.2,
    jam: 0.02 * f,
    noDrop: 0.01 * f,
    vmcReset: 0.002 * f,
    ackLost: 0.03 * f,
    payLate: 0.01 * f,
    neverPay: 0.05,
    viaCommandResult: 0.3,
  };
  const counts: Record<string, number> = {};
  const count = (k: string, n = 1) => {
    counts[k] = (counts[k] ?? 0) + n;
  };

  let now = T0;
  const clock = () => now;
  const events = new TimeQueue<() => Promise<void> | void>();
  const at = (when: number, fn: () => Promise<void> | void) => events.push(Math.max(when, now), fn);

  // ---------- the edge, modelled ----------
  interface Edge {
    id: string;
    downUntil: number;
    /** [VEND-ONCE-1] orderId → outcome (persisted: survives restarts). */
    ledger: Map<string, { status: 'started' | 'done'; outcome?: 'dispensed' | 'failed'; reason?: string }>;
    seq: number;
  }
  const edges: Edge[] = Array.from({ length: o.gateways ?? 50 }, (_, i) => ({
    id: `gw-${i + 1}`,
    downUntil: 0,
    ledger: new Map(),
    seq: 0,
  }));
  const edgeById = new Map(edges.map((e) => [e.id, e]));
  const drops = new Map<string, number>(); // orderId → items physically dropped
  const commandsPerOrder = new Map<string, Set<string>>();
  const seenEvents = new Set<string>(); // cloud ingest dedupe on (gateway, seq) [INGEST-EXACTLY-ONCE-1]

  let closeStore = async () => {};
  let repo: OrdersRepo;
  if (o.store === 'pglite') {
    const sql = await openPglite();
    await migrate(sql);
    repo = new SqlOrdersRepo(sql);
    closeStore = () => sql.close();
  } else repo = new MemoryOrdersRepo();
  const provider = new SimPaymentProvider({
    algorithm: 'hmac-sha256',
    key: SECRET,
    now: clock,
    rng: rnd,
    faults: {
      lose: 0.1 * f,
      duplicate: 0.05 * f,
      delay: 0.05 * f,
      delayMaxMs: 10 * 60_000,
      neverNotify: 0.02 * f,
      apiError: 0.05 * f,
    },
    deliver: async (req) => {
      let status: number;
      try {
        await svc.handleNotification('wechat', req.headers, req.body);
        status = 200;
      } catch (e) {
        status = (e as { status?: number }).status ?? 500;
        count(`notify_${status}`);
      }
      if (status === 200 && rnd() < P.ackLost) {
        count('notify_ack_lost');
        return 0; // processed, but the provider never hears it: it retries (a duplicate)
      }
      return status;
    },
  });

  const svc: OrdersService = new OrdersService({
    repo,
    providers: {
      wechat: {
        verifier: new NotificationVerifier('wechat', {
          algorithm: 'hmac-sha256',
          key: SECRET,
          maxSkewMs: 300_000,
        }),
        client: provider,
      },
    },
    now: clock,
    timing: {
      orderTtlMs: 120_000,
      dispenseTtlMs: 60_000,
      settleMarginMs: 300_000,
      lateGraceMs: 60_000,
      retryMs: 30_000,
    },
    issueDispense: async (c) => {
      let set = commandsPerOrder.get(c.payload.orderId);
      if (!set) {
        set = new Set();
        commandsPerOrder.set(c.payload.orderId, set);
      }
      set.add(c.id);
      count('commands_issued');
      const expiresAt = now + c.ttlMs;
      if (rnd() < P.commandLost) {
        count('commands_lost');
        return;
      }
      const delay = rnd() < P.commandDelay ? Math.floor(rnd() * 120_000) : 50 + Math.floor(rnd() * 500);
      at(now + delay, () => edgeReceives(c.gateway, c.id, c.payload, expiresAt));
      if (rnd() < P.commandDuplicated) {
        // QoS1 redelivery (lost PUBACK, reconnect): the same command twice at the edge.
        count('commands_duplicated');
        at(now + delay + Math.floor(rnd() * 20_000), () =>
          edgeReceives(c.gateway, c.id, c.payload, expiresAt),
        );
      }
    },
  });
  const sweeper = new SettlementSweeper(svc, { batch: 1000 });
  if (o.sabotage === 'refund-number') {
    const real = provider.refund.bind(provider);
    let calls = 0;
    provider.refund = (req) => real({ ...req, outRefundNo: `${req.outRefundNo}-${++calls}` });
  }

  /** The edge outbox: a result is never lost, but may be late or sent twice. */
  function report(
    e: Edge,
    r: {
      orderId?: string;
      commandId: string;
      outcome: 'dispensed' | 'failed';
      reason?: string;
      rejected?: boolean;
    },
  ) {
    e.seq += 1;
    const key = `${e.id}:${e.seq}`;
    const viaCmd = r.rejected || rnd() < P.viaCommandResult;
    const deliver = async () => {
      if (seenEvents.has(key)) {
        count('results_duplicate_dropped_by_ingest');
        return;
      }
      seenEvents.add(key);
      await svc.vendResult(
        e.id,
        viaCmd
          ? { commandId: r.commandId, outcome: r.outcome, ...(r.reason ? { reason: r.reason } : {}) }
          : { orderId: r.orderId!, outcome: r.outcome, ...(r.reason ? { reason: r.reason } : {}) },
      );
    };
    const base = Math.max(now, e.downUntil) + 20 + Math.floor(rnd() * 300);
    if (rnd() < P.resultDelayed) {
      count('results_delayed');
      at(base + Math.floor(rnd() * 4 * 60_000), deliver);
    } else at(base, deliver);
    if (rnd() < P.resultDuplicated) {
      count('results_duplicated');
      at(base + Math.floor(rnd() * 60_000), deliver);
    }
  }

  function edgeReceives(
    gw: string,
    commandId: string,
    p: { orderId: string; slot: number; priceCents: number },
    expiresAt: number,
  ) {
    const e = edgeById.get(gw)!;
    if (now < e.downUntil) {
      // QoS1 to a persistent session: the broker delivers it when the agent is back.
      count('commands_queued_during_restart');
      at(e.downUntil + 100, () => edgeReceives(gw, commandId, p, expiresAt));
      return;
    }
    if (rnd() < P.edgeRestart) {
      count('edge_restarts');
      e.downUntil = now + 5_000 + Math.floor(rnd() * 90_000);
      at(e.downUntil + 100, () => edgeReceives(gw, commandId, p, expiresAt));
      return;
    }
    const prior = o.sabotage === 'edge-ledger' ? undefined : e.ledger.get(p.orderId);
    if (prior?.status === 'started') {
      // A copy arriving while the first runs shares its execution (edge commands): it
      // answers when the first one is done.
      count('edge_replays_in_flight');
      at(now + 5_000, () => edgeReceives(gw, commandId, p, expiresAt));
      return;
    }
    if (prior) {
      // [VEND-ONCE-1] a repeat returns the first outcome; an interrupted one is never re-run.
      count('edge_replays');
      const outcome = prior.outcome ?? 'failed';
      report(e, {
        orderId: p.orderId,
        commandId,
        outcome,
        ...(prior.reason ? { reason: prior.reason } : {}),
      });
      return;
    }
    if (now >= expiresAt) {
      count('edge_refused_expired');
      report(e, { commandId, outcome: 'failed', reason: 'expired', rejected: true });
      return;
    }
    e.ledger.set(p.orderId, { status: 'started' });
    let dur = 3_000 + Math.floor(rnd() * 5_000);
    let outcome: 'dispensed' | 'failed' = 'dispensed';
    let reason: string | undefined;
    let dropped = true;
    if (rnd() < P.garbage) {
      count('serial_garbage');
      dur += 1_000 + Math.floor(rnd() * 3_000); // NAK / retransmit rounds
      if (rnd() < P.garbageTimeout) {
        outcome = 'failed';
        reason = 'timeout';
        dropped = false;
      }
    }
    if (outcome === 'dispensed') {
      const x = rnd();
      if (x < P.jam) {
        count('jams');
        outcome = 'failed';
        reason = 'vend_failed';
        dropped = false;
      } else if (x < P.jam + P.noDrop) {
        count('no_drop');
        outcome = 'failed';
        reason = 'no_drop';
        dropped = false;
      } else if (x < P.jam + P.noDrop + P.vmcReset) {
        count('vmc_reset');
        outcome = 'failed';
        reason = 'vmc_reset';
        dropped = false;
      }
    }
    if (rnd() < P.restartMidVend) {
      // The agent dies during the vend: the motor may or may not have run; on restart the
      // ledger says "started" and the driver reports it interrupted, never re-runs it.
      count('edge_restart_mid_vend');
      const didDrop = rnd() < 0.5;
      if (didDrop) drops.set(p.orderId, (drops.get(p.orderId) ?? 0) + 1);
      e.downUntil = now + dur + 5_000 + Math.floor(rnd() * 60_000);
      const entry = { status: 'done' as const, outcome: 'failed' as const, reason: 'interrupted' };
      at(e.downUntil, () => {
        e.ledger.set(p.orderId, entry);
        report(e, { orderId: p.orderId, commandId, ...entry });
      });
      return;
    }
    at(now + dur, () => {
      if (dropped) drops.set(p.orderId, (drops.get(p.orderId) ?? 0) + 1);
      e.ledger.set(p.orderId, { status: 'done', outcome, ...(reason ? { reason } : {}) });
      report(e, { orderId: p.orderId, commandId, outcome, ...(reason ? { reason } : {}) });
    });
  }

  // ---------- buyers ----------
  const gap = o.orderGapMs ?? 2_000;
  let created = 0;
  const scheduleNextOrder = (when: number) =>
    at(when, async () => {
      created += 1;
      const n = created;
      const gw = edges[Math.floor(rnd() * edges.length)]!;
      const amount = 100 + Math.floor(rnd() * 50) * 10;
      const order = await svc.createOrder({
        id: `ORD${String(n).padStart(9, '0')}`,
        gateway: gw.id,
        site: 's1',
        slot: 1 + Math.floor(rnd() * 40),
        amountCents: amount,
        provider: 'wechat',
      });
      const x = rnd();
      if (x < P.neverPay) count('buyers_walked_away');
      else if (x < P.neverPay + P.payLate) {
        count('buyers_paid_late');
        at(now + 60_000 + Math.floor(rnd() * 240_000), () => {
          if (!provider.pay(order.id, order.amountCents, order.currency).ok) count('late_pay_refused_closed');
        });
      } else
        at(
          now + 2_000 + Math.floor(rnd() * 30_000),
          () => void provider.pay(order.id, order.amountCents, order.currency),
        );
      if (created < o.orders) scheduleNextOrder(now + 1 + Math.floor(rnd() * 2 * gap));
    });
  scheduleNextOrder(T0);

  // ---------- the simulated-time loop ----------
  const sweepEvery = 10_000;
  let nextSweep = T0 + sweepEvery;
  // After the last order: the full 24h retry schedule, then refunds' backoff to settle.
  const hardStop = () => (created >= o.orders ? lastOrderAt + 49 * 3600_000 : Number.POSITIVE_INFINITY);
  let lastOrderAt = T0;
  let loops = 0;
  for (;;) {
    if (created < o.orders) lastOrderAt = now;
    const candidates = [events.peekAt(), provider.nextAt(), nextSweep].filter(
      (x): x is number => x !== undefined,
    );
    const next = Math.min(...candidates);
    if (next > hardStop()) break;
    const quiet = events.size === 0 && provider.pending === 0 && created >= o.orders;
    if (quiet && (await repo.due(Number.MAX_SAFE_INTEGER, 1)).length === 0) break;
    now = Math.max(now, next);
    for (;;) {
      const job = events.popDue(now);
      if (!job) break;
      await job();
    }
    await provider.tick(now);
    if (now >= nextSweep) {
      await sweeper.tick(now);
      nextSweep = now + sweepEvery;
    }
    if (++loops % 200_000 === 0) log(`vending: ${created}/${o.orders} orders, ${events.size} events pending`);
  }

  // ---------- verdict ----------
  let dispensed = 0;
  let refunded = 0;
  let expired = 0;
  let paidNotSettled = 0;
  let doubleDispense = 0;
  let droppedButRefunded = 0;
  const states: Record<string, number> = {};
  const all = await repo.list({ limit: o.orders + 1 });
  const byId = new Map(all.map((x) => [x.id, x]));
  await closeStore();
  for (const ord of all) {
    states[ord.state] = (states[ord.state] ?? 0) + 1;
    if (ord.state === 'dispensed') dispensed++;
    else if (ord.state === 'refunded') refunded++;
    else if (ord.state === 'expired') expired++;
    const d = drops.get(ord.id) ?? 0;
    if (d > 1 || (commandsPerOrder.get(ord.id)?.size ?? 0) > 1) doubleDispense++;
    if (d >= 1 && ord.state === 'refunded') droppedButRefunded++;
  }
  for (const t of provider.trades.values()) {
    const ord = byId.get(t.outTradeNo);
    const settled =
      ord !== undefined &&
      ((ord.state === 'dispensed' && t.state === 'SUCCESS') ||
        (ord.state === 'refunded' && t.state === 'REFUND'));
    if (!settled) paidNotSettled++;
  }
  for (const [k, v] of Object.entries(states)) counts[`state_${k}`] = v;
  for (const [k, v] of Object.entries(provider.stats)) counts[`provider_${k}`] = v;
  return {
    orders: all.length,
    dispensed,
    refunded,
    expired_unpaid: expired,
    double_dispense: doubleDispense,
    paid_not_settled: paidNotSettled,
    refund_id_changed: provider.stats.refundIdChanged,
    dropped_but_refunded: droppedButRefunded,
    counts: Object.fromEntries(Object.entries(counts).sort(([a], [b]) => (a < b ? -1 : 1))),
    simulated_hours: Math.round(((now - T0) / 3600_000) * 10) / 10,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    seed: o.seed,
  };
}

export const vending: Scenario<VendingTortureResult> = {
  name: 'vending',
  description:
    'orders → payments → dispense → refunds in simulated time with faults at every hop; double_dispense, paid_not_settled, refund_id_changed must be 0',
  options: {
    orders: { type: 'string', default: '100000' },
    seed: { type: 'string', default: '1' },
    gateways: { type: 'string', default: '50' },
    'fault-scale': { type: 'string', default: '1' },
    store: { type: 'string', default: 'memory' },
  },
  mustBeZero: ['double_dispense', 'paid_not_settled', 'refund_id_changed'],
  async run(args) {
    const r = await runVendingTorture({
      orders: num(args.orders, 100_000),
      seed: num(args.seed, 1),
      gateways: num(args.gateways, 50),
      faultScale: num(args['fault-scale'], 1),
      store: args.store === 'pglite' ? 'pglite' : 'memory',
    });
    log(`vending: ${r.orders} orders in ${r.seconds}s (${r.simulated_hours} simulated hours)`);
    return r;
  },
};
