import { describe, expect, it } from 'vitest';
import { debounceLine, type Timers } from '../gpio/debounce.ts';
import { type BinaryValue, createSimLine, type SimLine } from '../gpio/line.ts';
import { diffInventory, MemoryInventory, rfidInventory } from './inventory.ts';
import { CabinetBusyError, CabinetSession } from './session.ts';

function fakeClock() {
  let now = 1_000_000;
  let seq = 0;
  const pending = new Map<number, { at: number; fn: () => void }>();
  const timers: Timers = {
    setTimeout(fn, ms) {
      const id = ++seq;
      pending.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimeout(h) {
      pending.delete(h as number);
    },
  };
  const flush = async () => {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  };
  const advance = async (ms: number) => {
    const target = now + ms;
    for (;;) {
      const next = [...pending.entries()]
        .filter(([, t]) => t.at <= target)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!next) break;
      pending.delete(next[0]);
      now = next[1].at;
      next[1].fn();
      await flush();
    }
    now = target;
    await flush();
  };
  return { timers, advance, flush, now: () => now };
}

interface Rig {
  session: CabinetSession;
  lock: SimLine;
  doorRaw: SimLine;
  goods: MemoryInventory;
  events: Array<{ type: string; payload: Record<string, unknown> }>;
  kv: Map<string, string>;
  clock: ReturnType<typeof fakeClock>;
  setDoor(v: BinaryValue): Promise<void>;
}

async function rig(
  o: {
    kv?: Map<string, string>;
    goods?: MemoryInventory;
    door?: BinaryValue;
    clock?: ReturnType<typeof fakeClock>;
  } = {},
): Promise<Rig> {
  const clock = o.clock ?? fakeClock();
  const kv = o.kv ?? new Map<string, string>();
  const goods = o.goods ?? new MemoryInventory();
  const lock = createSimLine({ direction: 'out' });
  const doorRaw = createSimLine({ initial: o.door ?? 0 });
  const events: Rig['events'] = [];
  const session = new CabinetSession({
    lock,
    door: debounceLine(doorRaw, 30, clock.timers),
    doorRaw,
    inventory: goods,
    ledger: {
      get: async (k) => kv.get(k),
      put: async (k, v) => {
        kv.set(k, v);
      },
    },
    emit: async (type, payload) => {
      events.push({ type, payload: payload as Record<string, unknown> });
    },
    now: clock.now,
    timers: clock.timers,
  });
  await session.start();
  await clock.flush();
  return {
    session,
    lock,
    doorRaw,
    goods,
    events,
    kv,
    clock,
    async setDoor(v) {
      // a reed switch: bounces, then settles
      doorRaw.set(v);
      doorRaw.set((1 - v) as BinaryValue);
      doorRaw.set(v);
      await clock.advance(100);
    },
  };
}

const types = (r: Rig) => r.events.map((e) => e.type.replace('cabinet.session.', ''));

describe('CabinetSession', () => {
  it('unlock → open → take 2, return 1 → close: taken is the one item kept [CAB-DIFF-1]', async () => {
    const r = await rig();
    r.goods.put('rfid:a', 'cola');
    r.goods.put('rfid:b', 'chips');
    expect(await r.session.unlock({ sessionId: 'S00001' })).toMatchObject({ state: 'unlocked', items: 2 });
    expect(r.lock.writes.at(-1)).toBe(1);
    await r.setDoor(1);
    expect(r.session.current?.state).toBe('open');
    r.goods.put('rfid:a', 'cola', 0);
    r.goods.put('rfid:b', 'chips', 0);
    r.goods.put('rfid:b', 'chips');
    await r.setDoor(0);
    expect(r.lock.writes.at(-1)).toBe(0);
    expect(types(r)).toEqual(['unlocked', 'opened', 'closed']);
    expect(r.events.at(-1)!.payload).toMatchObject({
      sessionId: 'S00001',
      taken: [{ sku: 'cola', qty: 1 }],
      returned: [],
    });
  });

  it('door not opened within the timeout relocks; nothing to charge [CAB-DOOR-1]', async () => {
    const r = await rig();
    await r.session.unlock({ sessionId: 'S00002' });
    await r.clock.advance(5_001);
    expect(r.lock.writes).toEqual([0, 1, 0]);
    expect(types(r)).toEqual(['unlocked', 'relocked']);
    // the door opening later (bolt failed) is a forced-open alarm, not a session
    await r.setDoor(1);
    expect(r.session.counters.forced).toBe(1);
  });

  it('a door opened just before the relock but still bouncing counts as opened [CAB-DOOR-1]', async () => {
    const r = await rig();
    await r.session.unlock({ sessionId: 'S00003' });
    await r.clock.advance(4_990);
    r.doorRaw.set(1); // debounce window not over when the relock timer fires
    await r.clock.advance(20);
    expect(r.session.current?.state).toBe('open');
    expect(r.lock.writes.at(-1)).toBe(1);
  });

  it('door held open past the limit raises an alarm, cleared at close [CAB-DOOR-2]', async () => {
    const r = await rig();
    await r.session.unlock({ sessionId: 'S00004' });
    await r.setDoor(1);
    await r.clock.advance(60_000);
    expect(r.events.filter((e) => e.type === 'cabinet.session.alarm').map((e) => e.payload.active)).toEqual([
      true,
    ]);
    await r.setDoor(0);
    expect(r.events.filter((e) => e.type === 'cabinet.session.alarm').map((e) => e.payload.active)).toEqual([
      true,
      false,
    ]);
  });

  it('run-once per session id; another session is refused while one runs [CAB-ONCE-1]', async () => {
    const r = await rig();
    await r.session.unlock({ sessionId: 'S00005' });
    expect(await r.session.unlock({ sessionId: 'S00005' })).toMatchObject({
      duplicate: true,
      state: 'unlocked',
    });
    await expect(r.session.unlock({ sessionId: 'S00006' })).rejects.toBeInstanceOf(CabinetBusyError);
    await r.setDoor(1);
    await r.setDoor(0);
    expect(await r.session.unlock({ sessionId: 'S00005' })).toMatchObject({
      duplicate: true,
      state: 'closed',
    });
    expect(r.lock.writes.filter((v) => v === 1)).toHaveLength(1);
  });

  it('restart with the door open resumes; closing after restart reports once [CAB-RESUME-1]', async () => {
    const kv = new Map<string, string>();
    const goods = new MemoryInventory();
    goods.put('rfid:a', 'cola');
    goods.put('rfid:b', 'cola');
    const r1 = await rig({ kv, goods });
    await r1.session.unlock({ sessionId: 'S00007' });
    await r1.setDoor(1);
    await r1.session.stop();
    goods.put('rfid:a', 'cola', 0);
    const r2 = await rig({ kv, goods, door: 1 });
    expect(r2.session.current?.state).toBe('open');
    await r2.setDoor(0);
    expect(types(r2)).toEqual(['closed']);
    expect(r2.events[0]!.payload).toMatchObject({ taken: [{ sku: 'cola', qty: 1 }], resumed: true });
    // a third start finds it reported: nothing again
    const r3 = await rig({ kv, goods });
    expect(r3.events).toEqual([]);
    expect(r3.lock.writes).toEqual([0]);
  });

  it('power lost after the door closed, before the count: the next start counts and reports', async () => {
    const kv = new Map<string, string>();
    const goods = new MemoryInventory();
    goods.put('rfid:a', 'cola');
    const r1 = await rig({ kv, goods });
    await r1.session.unlock({ sessionId: 'S00008' });
    await r1.setDoor(1);
    await r1.session.stop();
    goods.put('rfid:a', 'cola', 0);
    const r2 = await rig({ kv, goods, door: 0 });
    expect(types(r2)).toEqual(['closed']);
    expect(r2.lock.writes.at(-1)).toBe(0);
  });
  it('a closing count that fails (reader down) is retried; the session closes once [CAB-COUNT-1]', async () => {
    const r = await rig();
    r.goods.put('rfid:a', 'cola');
    await r.session.unlock({ sessionId: 'S00009' });
    await r.setDoor(1);
    r.goods.put('rfid:a', 'cola', 0);
    const real = r.goods.snapshot.bind(r.goods);
    let fails = 2;
    r.goods.snapshot = async () => {
      if (fails-- > 0) throw new Error('reader link down');
      return real();
    };
    await r.setDoor(0);
    expect(r.session.current?.state).toBe('counting');
    expect(r.lock.writes.at(-1)).toBe(0);
    await r.clock.advance(5_000);
    expect(r.session.current?.state).toBe('counting');
    await r.clock.advance(5_000);
    expect(r.session.current?.state).toBe('closed');
    expect(r.session.counters.countRetries).toBe(2);
    expect(r.events.filter((e) => e.type === 'cabinet.session.closed')).toHaveLength(1);
    expect(r.events.at(-1)!.payload).toMatchObject({ taken: [{ sku: 'cola', qty: 1 }] });
  });
});

describe('inventory', () => {
  it('diff: returned on another key cancels the take of the same SKU; foreign additions are returned', () => {
    const d = diffInventory(
      {
        items: [
          { key: 'w:s:A', sku: 'cola', qty: 3 },
          { key: 'w:s:B', sku: 'soda', qty: 2 },
        ],
        unresolved: [],
        sources: ['weight'],
      },
      {
        items: [
          { key: 'w:s:A', sku: 'cola', qty: 2 },
          { key: 'w:s:B', sku: 'soda', qty: 2 },
          { key: 'rfid:x', sku: 'cola', qty: 1 },
          { key: 'rfid:y', sku: 'gum', qty: 1 },
        ],
        unresolved: [{ key: 'w:s:C', reason: 'ambiguous', candidates: ['1xa', '1xb'] }],
        sources: ['weight', 'rfid'],
      },
    );
    expect(d.taken).toEqual([]);
    expect(d.returned).toEqual([{ sku: 'gum', qty: 1 }]);
    expect(d.unresolved).toEqual([{ key: 'w:s:C', reason: 'ambiguous', candidates: ['1xa', '1xb'] }]);
  });

  it('RFID: a tag missed in single rounds is not taken; extra rounds look for it [CAB-INV-2]', async () => {
    let round = 0;
    const tags = ['e1', 'e2', 'e3'];
    const reader = {
      async inventoryNow() {
        round++;
        // e3 is missed in the first four rounds
        const seen = tags.filter((t) => t !== 'e3' || round > 4);
        return {
          tags: new Map(seen.map((t) => [t, { antenna: 1, rssi: -50, lastSeen: round }])),
          antennasOk: [1],
          antennasFailed: [],
          startedAt: 0,
          finishedAt: 0,
          complete: true,
        };
      },
    };
    const inv = rfidInventory(reader, {
      skuOf: (e) => (e === 'e9' ? undefined : 'cola'),
      rounds: 2,
      extraRounds: 4,
    });
    const expect3 = {
      items: tags.map((t) => ({ key: `rfid:${t}`, sku: 'cola', qty: 1 })),
      unresolved: [],
      sources: ['rfid' as const],
    };
    const snap = await inv.snapshot({ expect: expect3 });
    expect(snap.items.map((i) => i.key).sort()).toEqual(['rfid:e1', 'rfid:e2', 'rfid:e3']);
    expect(round).toBe(5);
  });

  it("RFID: a tag only in the driver's present() view is looked for harder, never counted unread", async () => {
    let round = 0;
    const reader = {
      present: () =>
        new Map([
          ['e7', { antenna: 1, rssi: -60, lastSeen: 0 }],
          ['gone', { antenna: 1, rssi: -60, lastSeen: 0 }],
        ]),
      async inventoryNow() {
        round++;
        const seen = round > 3 ? ['e1', 'e7'] : ['e1']; // e7 (just stocked) missed in the first rounds
        return {
          tags: new Map(seen.map((t) => [t, { antenna: 1, rssi: -50, lastSeen: round }])),
          antennasOk: [1],
          antennasFailed: [],
          startedAt: 0,
          finishedAt: 0,
          complete: true,
        };
      },
    };
    const snap = await rfidInventory(reader, { skuOf: () => 'juice', rounds: 2, extraRounds: 4 }).snapshot();
    expect(snap.items.map((i) => i.key).sort()).toEqual(['rfid:e1', 'rfid:e7']);
    expect(round).toBe(6); // 'gone' (a stale entry) kept looking until the extra rounds ran out
  });

  it('RFID: an antenna failure makes missing expected tags unknown, never taken', async () => {
    const reader = {
      async inventoryNow() {
        return {
          tags: new Map([['e1', { antenna: 1, rssi: -50, lastSeen: 0 }]]),
          antennasOk: [1],
          antennasFailed: [{ antenna: 2, code: 'EDGE_ERR_RFID_ANTENNA' }],
          startedAt: 0,
          finishedAt: 0,
          complete: false,
        };
      },
    };
    const inv = rfidInventory(reader, { skuOf: () => 'cola', rounds: 1, extraRounds: 1 });
    const opening = {
      items: ['e1', 'e2'].map((t) => ({ key: `rfid:${t}`, sku: 'cola', qty: 1 })),
      unresolved: [],
      sources: ['rfid' as const],
    };
    const closing = await inv.snapshot({ expect: opening });
    expect(diffInventory(opening, closing).taken).toEqual([]);
    expect(closing.unresolved).toEqual([{ key: 'rfid:e2', reason: 'unknown' }]);
  });
});
