import { afterEach, describe, expect, it } from 'vitest';
import { type SlotConfig, VmcBoard } from '../../../firmware-sim/src/vmc/index.ts';
import { createSimLine, type SimLine } from '../gpio/line.ts';
import { VmcDriver, type VmcTelemetry } from './driver.ts';
import { createMockLink, type MockLink } from './mock-link.ts';

class MemKv {
  readonly map = new Map<string, string>();
  async get(k: string) {
    return this.map.get(k);
  }
  async put(k: string, v: string) {
    this.map.set(k, v);
  }
}

interface Rig {
  link: MockLink;
  board: VmcBoard;
  driver: VmcDriver;
  drop: SimLine;
  door: SimLine;
  kv: MemKv;
  telemetry: VmcTelemetry[];
}

let n = 0;
const rigs: Rig[] = [];

async function rig(
  opts: {
    slots?: SlotConfig[];
    startBoard?: boolean;
    kv?: MemKv;
    temperatureEveryMs?: number;
    motorMs?: number;
    /** Board-side IR beam: drop reported over the link only; driver trusts it if `edgeTrusts`. */
    dropOverSerial?: { edgeTrusts: boolean };
  } = {},
): Promise<Rig> {
  n++;
  const link = createMockLink(`/dev/vmc-edge-${n}`, `/dev/vmc-board-${n}`);
  const drop = createSimLine();
  const door = createSimLine();
  const kv = opts.kv ?? new MemKv();
  const board = new VmcBoard({
    path: `/dev/vmc-board-${n}`,
    binding: link.binding,
    slots: opts.slots ?? [
      { item: 1, priceCents: 250, stock: 3 },
      { item: 2, priceCents: 400, stock: 0 },
    ],
    ...(opts.dropOverSerial ? { dropOverSerial: true } : { dropLine: drop }),
    doorLine: door,
    seed: 42,
    pollMs: 5,
    responseTimeoutMs: 60,
    motorMs: opts.motorMs ?? 30,
    temperatureEveryMs: opts.temperatureEveryMs ?? 0,
  });
  const driver = new VmcDriver({
    path: `/dev/vmc-edge-${n}`,
    binding: link.binding,
    dropLine: drop,
    doorLine: door,
    dropOverSerial: opts.dropOverSerial?.edgeTrusts ?? false,
    ledger: kv,
    dropWindowMs: 300,
    linkTimeoutMs: 1500,
    reopenMinMs: 20,
    reopenMaxMs: 100,
  });
  const telemetry: VmcTelemetry[] = [];
  driver.on('telemetry', (t) => telemetry.push(t));
  await driver.start();
  if (opts.startBoard !== false) await board.start();
  const r = { link, board, driver, drop, door, kv, telemetry };
  rigs.push(r);
  return r;
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const ready = (r: Rig) => until(() => r.driver.readerState === 'enabled');

afterEach(async () => {
  for (const r of rigs.splice(0)) {
    await r.board.stop();
    await r.driver.stop();
  }
});

describe('VmcDriver against the simulated board over binding-mock', () => {
  it('dispenses on VEND SUCCESS plus a drop, once per order', async () => {
    const r = await rig();
    await ready(r);
    const o = await r.driver.vend({ orderId: 'o-1', slot: 1, priceCents: 250 });
    expect(o).toMatchObject({ orderId: 'o-1', outcome: 'dispensed', slot: 1, dropSeen: true });
    expect(o.approvedAfterMs).toBeLessThan(200);
    expect(r.board.slots.get(1)?.stock).toBe(2);
    // Replays: the same outcome, no second motor run [VEND-ONCE-1].
    const again = await r.driver.vend({ orderId: 'o-1', slot: 1, priceCents: 250 });
    expect(again).toEqual(o);
    expect(r.board.counters.vends).toBe(1);
    expect(r.driver.counters.vendReplays).toBe(1);
    await until(() => r.telemetry.some((t) => t.kind === 'stock'));
    expect(r.telemetry).toContainEqual({ kind: 'stock', slot: 1, count: 2 });
  });

  it('concurrent calls with one orderId run the motor once', async () => {
    const r = await rig();
    await ready(r);
    const [a, b] = await Promise.all([
      r.driver.vend({ orderId: 'o-c', slot: 1, priceCents: 250 }),
      r.driver.vend({ orderId: 'o-c', slot: 1, priceCents: 250 }),
    ]);
    expect(a).toEqual(b);
    expect(a.outcome).toBe('dispensed');
    expect(r.board.counters.vends).toBe(1);
  });

  it('an order the ledger shows as started before a restart is never vended again', async () => {
    const kv = new MemKv();
    kv.map.set('vmc/vend/o-crash', JSON.stringify({ status: 'started', slot: 1, at: 0 }));
    const r = await rig({ kv });
    await ready(r);
    const o = await r.driver.vend({ orderId: 'o-crash', slot: 1, priceCents: 250 });
    expect(o).toMatchObject({ outcome: 'failed', reason: 'interrupted', code: 'EDGE_ERR_VMC_INTERRUPTED' });
    expect(r.board.counters.vends).toBe(0);
  });

  it('bad input: a replayed order and an expired order are refused with a clear code and counted', async () => {
    const r = await rig();
    await ready(r);
    const warnings: Array<{ err: { code: string } }> = [];
    const first = await r.driver.vend({ orderId: 'o-r', slot: 1, priceCents: 250 });
    // A restarted driver over the same ledger still refuses to run the motor again.
    const d2 = new (r.driver.constructor as typeof VmcDriver)({
      path: '/dev/none',
      binding: r.link.binding,
      ledger: r.kv,
      log: { warn: (o) => warnings.push(o as { err: { code: string } }), info: () => {} },
    });
    expect(await d2.vend({ orderId: 'o-r', slot: 1, priceCents: 250 })).toEqual(first);
    expect(d2.counters.vendReplays).toBe(1);
    expect(warnings.map((w) => w.err.code)).toContain('EDGE_ERR_VMC_REPLAY');
    const expired = await d2.vend({ orderId: 'o-exp', slot: 1, priceCents: 250, expiresAt: Date.now() - 1 });
    expect(expired).toMatchObject({ outcome: 'failed', reason: 'expired', code: 'EDGE_ERR_VMC_EXPIRED' });
    expect(d2.counters.vendsFailed.expired).toBe(1);
    expect(warnings.map((w) => w.err.code)).toContain('EDGE_ERR_VMC_EXPIRED');
    expect(r.board.counters.vends).toBe(1);
  });

  it('NAK from the board: the approval is repeated, one dispense', async () => {
    const r = await rig();
    await ready(r);
    r.board.fault('nak', { count: 2 });
    const o = await r.driver.vend({ orderId: 'o-nak', slot: 1, priceCents: 250 });
    expect(o.outcome).toBe('dispensed');
    expect(r.driver.counters.repeatedResponses).toBeGreaterThan(0);
    expect(r.board.counters.vends).toBe(1);
  });

  it('slow board (about a second between frames) still completes', async () => {
    const r = await rig();
    await ready(r);
    r.board.fault('slow', { count: 2, ms: 900 });
    const o = await r.driver.vend({ orderId: 'o-slow', slot: 1, priceCents: 250 });
    expect(o.outcome).toBe('dispensed');
    expect(r.driver.isLinkUp).toBe(true);
  });

  it('garbled frames are dropped, counted, and the session survives', async () => {
    const r = await rig();
    await ready(r);
    r.board.fault('garble', { count: 4 });
    const o = await r.driver.vend({ orderId: 'o-garble', slot: 1, priceCents: 250 });
    expect(o.outcome).toBe('dispensed');
    const errs = Object.values(r.driver.counters.parseErrors).reduce((a, b) => a + b, 0);
    expect(errs).toBeGreaterThanOrEqual(4);
    expect(r.driver.counters.parseErrors.PROTO_ERR_MDB_CHECKSUM).toBeGreaterThan(0);
    expect(r.board.counters.vends).toBe(1);
    expect(r.board.counters.resets).toBe(1); // no re-setup: the session state was kept
  });

  it('board reset mid-vend: failed vmc_reset, then the session is re-established', async () => {
    const r = await rig();
    await ready(r);
    r.board.fault('reset_mid_vend');
    const o = await r.driver.vend({ orderId: 'o-reset', slot: 1, priceCents: 250 });
    expect(o).toMatchObject({ outcome: 'failed', reason: 'vmc_reset', dropSeen: false });
    expect(r.telemetry).toContainEqual({ kind: 'event', code: 'ELA', active: true, orderId: 'o-reset' });
    const next = await r.driver.vend({ orderId: 'o-after-reset', slot: 1, priceCents: 250 });
    expect(next.outcome).toBe('dispensed');
    expect(r.driver.counters.vmcResets).toBeGreaterThanOrEqual(2);
  });

  it('motor jam (VEND SUCCESS, no drop): failed no_drop with EJL', async () => {
    const r = await rig();
    await ready(r);
    r.board.fault('jam');
    const o = await r.driver.vend({ orderId: 'o-jam', slot: 1, priceCents: 250 });
    expect(o).toMatchObject({
      outcome: 'failed',
      reason: 'no_drop',
      code: 'EDGE_ERR_VMC_NO_DROP',
      dropSeen: false,
    });
    expect(r.telemetry).toContainEqual({ kind: 'event', code: 'EJL', active: true, orderId: 'o-jam' });
  });

  it('empty slot: VEND FAILURE, failed vend_failed', async () => {
    const r = await rig();
    await ready(r);
    const o = await r.driver.vend({ orderId: 'o-empty', slot: 2, priceCents: 400 });
    expect(o).toMatchObject({ outcome: 'failed', reason: 'vend_failed' });
  });

  it('price or slot the order did not pay for is denied', async () => {
    const r = await rig();
    await ready(r);
    const o = await r.driver.vend({ orderId: 'o-cheap', slot: 1, priceCents: 100 });
    expect(o).toMatchObject({ outcome: 'failed', reason: 'denied', code: 'EDGE_ERR_VMC_DENIED' });
    expect(r.board.counters.vends).toBe(0);
    expect((await r.driver.vend({ orderId: 'o-ok', slot: 1, priceCents: 250 })).outcome).toBe('dispensed');
  });

  it('power loss mid-vend: never dispensed, EA7 reported, link recovers', async () => {
    const r = await rig();
    await ready(r);
    r.board.once('motor', () => r.board.fault('power_loss', { ms: 400 }));
    const o = await r.driver.vend({ orderId: 'o-power', slot: 1, priceCents: 250 });
    expect(o.outcome).toBe('failed');
    expect(o.reason).toBe('vmc_reset');
    await until(() => r.telemetry.some((t) => t.kind === 'event' && t.code === 'EA7'));
    expect((await r.driver.vend({ orderId: 'o-power-2', slot: 1, priceCents: 250 })).outcome).toBe(
      'dispensed',
    );
  });

  it('serial port disappears mid-vend and comes back: the vend completes once', async () => {
    const r = await rig();
    await ready(r);
    r.board.once('motor', () => {
      r.link.unplug();
      setTimeout(() => r.link.plug(), 300);
    });
    const o = await r.driver.vend({ orderId: 'o-unplug', slot: 1, priceCents: 250 });
    expect(o.outcome).toBe('dispensed');
    expect(r.driver.counters.portLosses).toBeGreaterThanOrEqual(1);
    expect(r.driver.counters.portOpens).toBeGreaterThanOrEqual(2);
    expect(r.board.counters.vends).toBe(1);
  });

  it('a deadline that passes while the approved motor runs does not fail the vend', async () => {
    const r = await rig({ motorMs: 600 });
    await ready(r);
    const o = await r.driver.vend({ orderId: 'o-long-motor', slot: 1, priceCents: 250, deadlineMs: 300 });
    expect(o.outcome).toBe('dispensed');
    expect(o.durationMs).toBeGreaterThan(300);
  });

  it('no controller: the order times out before approval, nothing dispensed', async () => {
    const r = await rig({ startBoard: false });
    const o = await r.driver.vend({ orderId: 'o-nobody', slot: 1, priceCents: 250, deadlineMs: 200 });
    expect(o).toMatchObject({ outcome: 'failed', reason: 'timeout', code: 'EDGE_ERR_VMC_TIMEOUT' });
    expect(o.approvedAfterMs).toBeUndefined();
  });

  it('board-side drop sensor: DIAG DROP over the link confirms only when configured', async () => {
    const r = await rig({ dropOverSerial: { edgeTrusts: true } });
    await ready(r);
    expect(await r.driver.vend({ orderId: 'o-serial-drop', slot: 1, priceCents: 250 })).toMatchObject({
      outcome: 'dispensed',
      dropSeen: true,
    });
    const untrusting = await rig({ dropOverSerial: { edgeTrusts: false } });
    await ready(untrusting);
    expect(
      await untrusting.driver.vend({ orderId: 'o-serial-drop-2', slot: 1, priceCents: 250 }),
    ).toMatchObject({
      outcome: 'failed',
      reason: 'no_drop',
    });
  });

  it('a silent port (dead fd after a pty was replaced) is closed and reopened [VMC-PORT-2]', async () => {
    const link = createMockLink('/dev/silent-edge', '/dev/silent-board');
    const d = new VmcDriver({
      path: '/dev/silent-edge',
      binding: link.binding,
      ledger: new MemKv(),
      linkTimeoutMs: 100,
    });
    await d.start();
    await until(() => d.counters.portOpens >= 3, 3000);
    expect(d.counters.portLosses).toBeGreaterThanOrEqual(2);
    await d.stop();
  });

  it('lock relay is driven through its GPIO line', async () => {
    const lock = createSimLine({ direction: 'out' });
    const d = new VmcDriver({ path: '/dev/unused', ledger: new MemKv(), lockLine: lock });
    await d.setLock(true);
    await d.setLock(false);
    expect(lock.writes).toEqual([1, 0]);
  });

  it('door and temperature telemetry', async () => {
    const r = await rig({ temperatureEveryMs: 20 });
    await ready(r);
    r.board.setDoor(true);
    await until(() => r.telemetry.some((t) => t.kind === 'door'));
    expect(r.telemetry).toContainEqual({ kind: 'door', open: true });
    await until(() => r.telemetry.some((t) => t.kind === 'event' && t.code === 'EGS'));
    await until(() => r.telemetry.some((t) => t.kind === 'temperature'));
  });
});
