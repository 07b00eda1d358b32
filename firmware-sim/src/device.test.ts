import { checkDeviceEvent, newId, validateDeviceResult } from '@storelink/protocols';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSimFleet, type SimFleet } from './fleet.ts';
import { SimFridge } from './fridge.ts';
import { acceleratedClock } from './rng.ts';
import {
  eventually,
  type Observed,
  type Observer,
  startObserver,
  startTestBroker,
  type TestBroker,
} from './test-support.ts';
import type { SimVending } from './vending.ts';

const CREDS = { 'fridge-1': 'pw-fridge', 'vend-1': 'pw-vend' };

let broker: TestBroker;
let obs: Observer;
const cleanups: Array<() => Promise<unknown>> = [];

beforeEach(async () => {
  broker = await startTestBroker();
  obs = await startObserver(broker.url);
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await obs.close();
  await broker.close();
});

function fleet(spec: Omit<Parameters<typeof startSimFleet>[0], 'brokerUrl'>): SimFleet {
  const f = startSimFleet({ brokerUrl: broker.url, ...spec });
  cleanups.push(() => f.stop({ force: true }));
  return f;
}

const isEvt = (device: string, type: string) => (m: Observed) => m.topic === `dev/${device}/evt/${type}`;
const cmd = (expiresInMs: number, payload: unknown, id = newId()) => ({
  id,
  expiresAt: Date.now() + expiresInMs,
  payload,
});
async function command(device: string, type: string, body: { id: string } & Record<string, unknown>) {
  const from = obs.messages.length;
  await obs.publish(`dev/${device}/cmd/${type}`, body);
  const res = await obs.waitFor((m) => m.topic === `dev/${device}/res/${body.id}`, 5000, from);
  expect(validateDeviceResult(res.payload)).toBe(true);
  return res.payload as { status: string; code?: string; result?: Record<string, unknown>; message?: string };
}

describe('SimDevice against a real broker', () => {
  it('publishes schema-valid telemetry with unique, increasing ids', async () => {
    const f = fleet({
      devices: [
        { id: 'fridge-1', password: 'pw-fridge', kind: 'fridge', intervalMs: 15 },
        { id: 'vend-1', password: 'pw-vend', kind: 'vending', intervalMs: 15 },
      ],
    });
    await f.ready();
    for (const id of ['fridge-1', 'vend-1']) {
      await eventually(
        () => obs.messages.filter(isEvt(id, 'telemetry')).length >= 8,
        5000,
        `${id} telemetry`,
      );
    }
    type Tele = { id: string; ts: number; metrics: Record<string, unknown> };
    const fr = obs.messages.filter(isEvt('fridge-1', 'telemetry')).map((m) => m.payload as Tele);
    const vd = obs.messages.filter(isEvt('vend-1', 'telemetry')).map((m) => m.payload as Tele);
    for (const p of [...fr, ...vd]) {
      const r = checkDeviceEvent('telemetry', p);
      expect(r.ok, JSON.stringify(r)).toBe(true);
    }
    const m0 = fr[0]!.metrics;
    expect(Object.keys(m0).sort()).toEqual(['compressor', 'door', 'tempC']);
    expect(typeof m0.tempC).toBe('number');
    expect(m0.tempC as number).toBeGreaterThan(0);
    expect(m0.tempC as number).toBeLessThan(8);
    const v0 = vd[0]!.metrics;
    for (const k of ['slots_total', 'sold_total', 'stock_min', 'tempC', 'door']) expect(v0).toHaveProperty(k);

    for (const list of [fr, vd]) {
      const ids = list.map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      // `{device}-{boot}-{counter}`: one boot prefix, counters strictly increasing.
      const prefixes = new Set(ids.map((id) => id.slice(0, id.lastIndexOf('-'))));
      expect(prefixes.size).toBe(1);
      const counters = ids.map((id) => Number(id.slice(id.lastIndexOf('-') + 1)));
      for (let i = 1; i < counters.length; i++) expect(counters[i]!).toBeGreaterThan(counters[i - 1]!);
    }
    const s = f.stats();
    expect(s.connected).toBe(2);
    await eventually(() => f.stats().acked > 0);
    expect(f.stats().acked).toBeLessThanOrEqual(f.stats().published);
  });

  it('message ids differ across restarts of the same device (boot id)', () => {
    const a = new SimFridge({ id: 'fridge-1', brokerUrl: broker.url });
    const b = new SimFridge({ id: 'fridge-1', brokerUrl: broker.url });
    expect(a.bootId).not.toBe(b.bootId);
    expect(a.publishEvent('telemetry', { metrics: { x: 1 } })).not.toBe(
      b.publishEvent('telemetry', { metrics: { x: 1 } }),
    );
  });

  it('connects with its own credentials and keeps retrying when refused', async () => {
    const authed = await startTestBroker({ credentials: CREDS });
    cleanups.push(() => authed.close());
    const good = startSimFleet({
      brokerUrl: authed.url,
      devices: [{ id: 'fridge-1', password: 'pw-fridge', kind: 'fridge', intervalMs: 50 }],
    });
    const bad = startSimFleet({
      brokerUrl: authed.url,
      reconnectPeriodMs: 20,
      devices: [{ id: 'vend-1', password: 'wrong', kind: 'vending', intervalMs: 50 }],
    });
    cleanups.push(
      () => good.stop({ force: true }),
      () => bad.stop({ force: true }),
    );
    await good.ready();
    await eventually(() => bad.stats().connectErrors >= 2, 5000, 'refused reconnects');
    expect(bad.stats().connected).toBe(0);
    expect(good.stats().connected).toBe(1);
  });

  it('answers ping on its res topic', async () => {
    const f = fleet({ devices: [{ id: 'fridge-1', kind: 'fridge', intervalMs: 1000 }] });
    await f.ready();
    const res = await command('fridge-1', 'ping', cmd(60_000, { echo: 'hello' }));
    expect(res.status).toBe('ok');
    expect(res.result?.echo).toBe('hello');
    expect(f.stats().commandsHandled).toBe(1);
  });

  it('device.config changes the telemetry interval; unknown keys and bad values change nothing', async () => {
    const f = fleet({ devices: [{ id: 'vend-1', kind: 'vending', intervalMs: 60_000 }] });
    await f.ready();
    const dev = f.device('vend-1')!;
    await new Promise((r) => setTimeout(r, 150));
    expect(obs.messages.filter(isEvt('vend-1', 'telemetry'))).toHaveLength(0);

    const unknown = await command(
      'vend-1',
      'device.config',
      cmd(60_000, { config: { intervalMs: 20, colour: 1 } }),
    );
    expect(unknown).toMatchObject({ status: 'error', code: 'UNKNOWN_KEY' });
    expect(unknown.message).toContain("'colour'");
    const bad = await command('vend-1', 'device.config', cmd(60_000, { config: { intervalMs: -5 } }));
    expect(bad).toMatchObject({ status: 'error', code: 'BAD_VALUE' });
    const badShape = await command('vend-1', 'device.config', cmd(60_000, { intervalMs: 20 }));
    expect(badShape).toMatchObject({ status: 'error', code: 'BAD_COMMAND' });
    expect(dev.config().intervalMs).toBe(60_000);

    const ok = await command('vend-1', 'device.config', cmd(60_000, { config: { intervalMs: 20 } }));
    expect(ok).toEqual({
      status: 'ok',
      result: { applied: { intervalMs: 20 }, previous: { intervalMs: 60_000 } },
    });
    expect(dev.config().intervalMs).toBe(20);
    const from = obs.messages.length;
    await new Promise((r) => setTimeout(r, 300));
    const n = obs.messages.slice(from).filter(isEvt('vend-1', 'telemetry')).length;
    expect(n).toBeGreaterThanOrEqual(5);
    expect(n).toBeLessThanOrEqual(20);
    // The state document follows the config.
    const state = obs.messages.filter((m) => m.topic === 'dev/vend-1/state').at(-1);
    expect(state?.payload).toMatchObject({ kind: 'vending', config: { intervalMs: 20 } });
  });

  it('refuses an expired command with EXPIRED and does not execute it', async () => {
    const f = fleet({ devices: [{ id: 'fridge-1', kind: 'fridge', intervalMs: 60_000 }] });
    await f.ready();
    const res = await command('fridge-1', 'device.config', cmd(-1000, { config: { intervalMs: 20 } }));
    expect(res).toMatchObject({ status: 'error', code: 'EXPIRED' });
    expect(f.device('fridge-1')!.config().intervalMs).toBe(60_000);
    expect(f.stats().commandsFailed).toBe(1);
  });

  it('never crashes on bad commands, answers what it can, replays a repeated id', async () => {
    const f = fleet({ devices: [{ id: 'fridge-1', kind: 'fridge', intervalMs: 60_000 }] });
    await f.ready();
    const dev = f.device('fridge-1')!;
    await obs.publish('dev/fridge-1/cmd/ping', 'not json{');
    await obs.publish('dev/fridge-1/cmd/ping', { nothing: true });
    await eventually(() => dev.stats().badCommands === 2, 3000, 'bad commands counted');
    const id = newId();
    const noPayload = await command('fridge-1', 'ping', { id, expiresAt: 'soon' } as never);
    expect(noPayload).toMatchObject({ status: 'error', code: 'BAD_COMMAND' });
    const unk = await command('fridge-1', 'dispense', cmd(60_000, {}));
    expect(unk).toMatchObject({ status: 'error', code: 'UNKNOWN_COMMAND' });
    const badPing = await command('fridge-1', 'ping', cmd(60_000, { echo: 5 }));
    expect(badPing).toMatchObject({ status: 'error', code: 'BAD_COMMAND' });

    // A redelivered command id gets the first answer and is not executed again.
    const c = cmd(60_000, { config: { setpointC: 3 } });
    expect(await command('fridge-1', 'device.config', c)).toMatchObject({ status: 'ok' });
    const handled = dev.stats().commandsHandled;
    expect(await command('fridge-1', 'device.config', c)).toMatchObject({
      status: 'ok',
      result: { applied: { setpointC: 3 } },
    });
    expect(dev.stats().commandsHandled).toBe(handled);
    expect((await command('fridge-1', 'ping', cmd(60_000, {}))).status).toBe('ok');
    expect(dev.connected).toBe(true);
  });

  it('records coded errors the edge sends on dev/{id}/err', async () => {
    const f = fleet({ devices: [{ id: 'fridge-1', kind: 'fridge', intervalMs: 60_000 }] });
    await f.ready();
    await obs.publish('dev/fridge-1/err', {
      code: 'PROTO_ERR_SCHEMA',
      topic: 'dev/fridge-1/evt/telemetry',
      message: 'telemetry payload does not match its schema',
    });
    await eventually(() => f.stats().errorsReceived === 1, 3000, 'error received');
    expect(f.device('fridge-1')!.stats().lastError?.code).toBe('PROTO_ERR_SCHEMA');
  });

  it('warm fault raises TEMP_HIGH, which clears once the compressor works again', async () => {
    const now = acceleratedClock(1200);
    const f = fleet({
      now,
      devices: [{ id: 'fridge-1', kind: 'fridge', intervalMs: 10, options: { doorOpensPerHour: 0 } }],
    });
    await f.ready();
    const fridge = f.device<SimFridge>('fridge-1')!;
    expect(fridge.temperature).toBeLessThan(8);
    fridge.setFault('warm');
    const raised = await obs.waitFor(
      (m) => isEvt('fridge-1', 'device.alarm')(m) && (m.payload as { code: string }).code === 'TEMP_HIGH',
      8000,
    );
    expect(checkDeviceEvent('device.alarm', raised.payload).ok).toBe(true);
    expect(raised.payload).toMatchObject({ code: 'TEMP_HIGH', active: true, severity: 'warning' });
    const tele = obs.messages.filter(isEvt('fridge-1', 'telemetry')).at(-1)!.payload as {
      metrics: { tempC: number; compressor: boolean };
    };
    expect(tele.metrics.compressor).toBe(false);
    expect(fridge.activeAlarms()).toEqual(['TEMP_HIGH']);

    const from = obs.messages.length;
    fridge.setFault('warm', false);
    const cleared = await obs.waitFor(
      (m) => isEvt('fridge-1', 'device.alarm')(m) && (m.payload as { active: boolean }).active === false,
      8000,
      from,
    );
    expect(cleared.payload).toMatchObject({ code: 'TEMP_HIGH', active: false });
    expect(fridge.temperature).toBeLessThan(8);
  });

  it('a door left open raises DOOR_OPEN; closing clears it', async () => {
    const now = acceleratedClock(1200);
    const f = fleet({
      now,
      devices: [{ id: 'fridge-1', kind: 'fridge', intervalMs: 10, options: { doorOpensPerHour: 0 } }],
    });
    await f.ready();
    const fridge = f.device<SimFridge>('fridge-1')!;
    fridge.setFault('door');
    const open = await obs.waitFor((m) => (m.payload as { code?: string }).code === 'DOOR_OPEN', 5000);
    expect(open.payload).toMatchObject({ active: true });
    const from = obs.messages.length;
    fridge.closeDoor();
    const closed = await obs.waitFor(
      (m) => (m.payload as { code?: string; active?: boolean }).code === 'DOOR_OPEN',
      5000,
      from,
    );
    expect(closed.payload).toMatchObject({ active: false });
    const doorOf = (m: Observed) => (m.payload as { metrics: { door: string } }).metrics.door;
    // Reported at once on the change (a tick already in flight may show 'open' before it).
    await obs.waitFor((m) => isEvt('fridge-1', 'telemetry')(m) && doorOf(m) === 'closed', 5000, from);
    const before = obs.messages.slice(0, from).filter(isEvt('fridge-1', 'telemetry'));
    expect(before.length).toBeGreaterThan(0);
    expect(doorOf(before.at(-1)!)).toBe('open');
  });

  it('vending sales empty slots, raise LOW_STOCK, and a refill clears it', async () => {
    const f = fleet({
      devices: [
        {
          id: 'vend-1',
          kind: 'vending',
          intervalMs: 60_000,
          options: { slots: 3, capacity: 4, salesPerHour: 0, lowStockThreshold: 1 },
        },
      ],
    });
    await f.ready();
    const vend = f.device<SimVending>('vend-1')!;
    expect(vend.sell(0)).toBe(0);
    expect(vend.sell(0)).toBe(0);
    expect(vend.activeAlarms()).toEqual([]);
    expect(vend.sell(0)).toBe(0);
    const low = await obs.waitFor((m) => (m.payload as { code?: string }).code === 'LOW_STOCK');
    expect(checkDeviceEvent('device.alarm', low.payload).ok).toBe(true);
    expect(low.payload).toMatchObject({ active: true, message: 'slot 1 has 1 left' });
    vend.tick();
    const tele = await obs.waitFor(isEvt('vend-1', 'telemetry'));
    expect((tele.payload as { metrics: Record<string, unknown> }).metrics).toMatchObject({
      slots_total: 3,
      sold_total: 3,
      stock_min: 1,
      stock_total: 9,
    });
    const from = obs.messages.length;
    vend.refill();
    const cleared = await obs.waitFor(
      (m) => (m.payload as { code?: string }).code === 'LOW_STOCK',
      5000,
      from,
    );
    expect(cleared.payload).toMatchObject({ active: false });
    expect(vend.stockLevels()).toEqual([4, 4, 4]);
  });

  it('is deterministic for a seed and a clock', () => {
    const run = (seed: number, doorOpensPerHour?: number) => {
      let t = 1_700_000_000_000;
      const f = new SimFridge({
        id: 'fridge-1',
        brokerUrl: broker.url,
        seed,
        now: () => t,
        doorOpensPerHour,
      });
      const temps: number[] = [];
      for (let i = 0; i < 200; i++) {
        t += 15_000;
        f.tick();
        temps.push(f.temperature);
      }
      return temps;
    };
    const a = run(7);
    expect(run(7)).toEqual(a);
    expect(run(8)).not.toEqual(a);
    // With the door shut the thermostat holds it near the setpoint (4 ± 1 C plus overshoot).
    const shut = run(7, 0);
    expect(Math.max(...shut) - Math.min(...shut)).toBeGreaterThan(1.5); // it does cycle
    for (const t of shut) {
      expect(t).toBeGreaterThan(1.5);
      expect(t).toBeLessThan(6.5);
    }
  });

  it('reconnects and resubscribes after the broker restarts, then delivers what it held', async () => {
    const f = fleet({
      reconnectPeriodMs: 30,
      devices: [{ id: 'fridge-1', kind: 'fridge', intervalMs: 20 }],
    });
    await f.ready();
    const dev = f.device('fridge-1')!;
    await eventually(() => dev.stats().acked >= 2);
    const port = broker.port;
    await obs.close();
    await broker.kill();
    await eventually(() => !dev.connected, 3000, 'device offline');
    await new Promise((r) => setTimeout(r, 100));
    const heldWhileDown = dev.stats().inflight;
    expect(heldWhileDown).toBeGreaterThan(0);
    broker = await startTestBroker({ port });
    obs = await startObserver(broker.url);
    await dev.ready(5000);
    const res = await command('fridge-1', 'ping', cmd(60_000, { echo: 'back' }));
    expect(res.result?.echo).toBe('back');
    await eventually(() => dev.stats().inflight < heldWhileDown, 5000, 'held messages acked');
    expect(dev.stats().connects).toBeGreaterThanOrEqual(2);
  });

  it('keeps at most maxInflight unacknowledged publishes: telemetry is skipped, alarms are kept', async () => {
    // A broker that receives but never acknowledges (an agent whose outbox is stuck).
    const stuck = await startTestBroker({ aedes: { authorizePublish: () => undefined } });
    const f = startSimFleet({
      brokerUrl: stuck.url,
      maxInflight: 4,
      reconnectPeriodMs: 30,
      devices: [
        { id: 'vend-1', kind: 'vending', intervalMs: 10, options: { salesPerHour: 0, initialStock: 3 } },
      ],
    });
    cleanups.push(() => f.stop({ force: true }));
    await f.ready();
    const vend = f.device<SimVending>('vend-1')!;
    await eventually(() => vend.stats().dropped >= 3, 3000, 'telemetry skipped');
    expect(vend.stats().inflight).toBe(4);
    expect(vend.stats().acked).toBe(0);
    vend.sell(0);
    vend.sell(0); // stock 1: LOW_STOCK is raised even though the buffer is full
    expect(vend.stats().inflight).toBe(5);

    // The agent comes back: everything held is resent and acknowledged.
    const port = stuck.port;
    await stuck.kill();
    const back = await startTestBroker({ port });
    cleanups.push(() => back.close());
    const watcher = await startObserver(back.url);
    cleanups.push(() => watcher.close());
    await eventually(() => vend.stats().acked >= 5, 5000, 'held messages acknowledged');
    await watcher.waitFor((m) => (m.payload as { code?: string }).code === 'LOW_STOCK');
  });

  it('keeps the connection alive with PINGREQs between sparse publishes', async () => {
    const f = fleet({ keepaliveS: 1, devices: [{ id: 'fridge-1', kind: 'fridge', intervalMs: 60_000 }] });
    await f.ready();
    // aedes drops a client silent for 1.5 x keepalive; the device must still be on its first connection.
    await new Promise((r) => setTimeout(r, 1800));
    expect(f.device('fridge-1')!.stats()).toMatchObject({ connected: true, connects: 1 });
    expect(broker.disconnects).not.toContain('fridge-1');
  });

  it('stop() disconnects cleanly and publishes nothing more', async () => {
    const f = startSimFleet({
      brokerUrl: broker.url,
      devices: [{ id: 'fridge-1', kind: 'fridge', intervalMs: 10 }],
    });
    await f.ready();
    await eventually(() => obs.messages.filter(isEvt('fridge-1', 'telemetry')).length >= 2);
    await f.stop();
    expect(f.stats().connected).toBe(0);
    await eventually(() => broker.disconnects.includes('fridge-1'), 3000, 'broker saw the disconnect');
    expect(f.stats().inflight).toBe(0);
    const n = obs.messages.length;
    await new Promise((r) => setTimeout(r, 80));
    expect(obs.messages.length).toBe(n);
  });
});
