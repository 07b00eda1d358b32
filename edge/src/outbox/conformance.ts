import { type EventEnvelope, LANES, type Lane, newId, type UnsequencedEvent } from '@storelink/protocols';
import fc from 'fast-check';
import type { describe as vDescribe, expect as vExpect, test as vTest } from 'vitest';
import type { EdgeStore, OutboxOptions, StoredEvent } from './types.ts';

/**
 * Conformance suite every outbox implementation must pass (house style 1, after
 * abstract-level's `suite({ test, factory })`). Usage:
 *
 *   outboxSuite({ test, describe, expect }, { name: 'memory', open: createMemoryStore })
 *
 * Persistent implementations also give `reopen`, which adds the restart tests; that is a
 * capability, so the memory outbox has fewer tests rather than skipped ones.
 */
export interface SuiteApi {
  test: typeof vTest;
  describe: typeof vDescribe;
  expect: typeof vExpect;
}

export interface OutboxFactory {
  name: string;
  open(opts: OutboxOptions): Promise<EdgeStore>;
  /** Closes `store` and opens the same storage again with `opts`. */
  reopen?: (store: EdgeStore, opts: OutboxOptions) => Promise<EdgeStore>;
  /** Runs of the property test (default 60). */
  propertyRuns?: number;
}

export const T0 = 1_700_000_000_000;

/** A controllable clock for `opts.now` (house style 6). */
export function fakeClock(start = T0) {
  let t = start;
  return {
    now: () => t,
    advance(ms: number): void {
      t += ms;
    },
    set(ms: number): void {
      t = ms;
    },
  };
}

export function options(clock: { now: () => number }, over: Partial<OutboxOptions> = {}): OutboxOptions {
  return {
    durability: 'process',
    maxBytes: 0,
    lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: 0, ttlMs: 60_000 } },
    now: clock.now,
    expireIntervalMs: 0,
    ...over,
  };
}

let counter = 0;
/** An unsequenced event; `pad` adds payload bytes so sizes are easy to reason about. */
export function makeEvent(
  lane: Lane,
  over: Partial<UnsequencedEvent> & { pad?: number } = {},
): UnsequencedEvent {
  const { pad = 0, ...rest } = over;
  counter++;
  return {
    id: newId(),
    type: 'test.event',
    device: 'dev-1',
    gateway: 'gw-1',
    site: 'site-1',
    ts: T0,
    rts: T0,
    lane,
    payload: { n: counter, pad: 'x'.repeat(pad) },
    ...rest,
  };
}

export async function readAll(store: EdgeStore, lane: Lane): Promise<StoredEvent[]> {
  return store.outbox.read(lane, 0, 1_000_000);
}

function jsonBytes(events: StoredEvent[]): number {
  return events.reduce((n, e) => n + Buffer.byteLength(e.json), 0);
}

export function outboxSuite(api: SuiteApi, factory: OutboxFactory): void {
  const { describe } = api;
  describe(`outbox conformance: ${factory.name}`, () => {
    sequenceTests(api, factory);
    readTests(api, factory);
    ackTests(api, factory);
    budgetTests(api, factory);
    ttlTests(api, factory);
    dedupeTests(api, factory);
    statsTests(api, factory);
    kvTests(api, factory);
    propertyTest(api, factory);
    if (factory.reopen) reopenTests(api, factory, factory.reopen);
  });
}

/** Opens a store, runs `fn`, always closes. */
async function withStore(
  factory: OutboxFactory,
  opts: OutboxOptions,
  /** May resolve with a reopened store, which then is the one closed. */
  fn: (store: EdgeStore) => Promise<unknown>,
): Promise<void> {
  let store = await factory.open(opts);
  try {
    store = ((await fn(store)) as EdgeStore | undefined) ?? store;
  } finally {
    await store.close();
  }
}

function sequenceTests({ test, expect }: SuiteApi, factory: OutboxFactory): void {
  test('seqs start at 1 and are gap-free per lane under concurrent appends [LANE-1]', async () => {
    await withStore(factory, options(fakeClock()), async (store) => {
      const lanes: Lane[] = Array.from({ length: 300 }, (_, i) => LANES[i % 3]!);
      const envs = await Promise.all(lanes.map((l) => store.outbox.append(makeEvent(l))));
      for (const lane of LANES) {
        const seqs = envs.filter((e) => e.lane === lane).map((e) => e.seq);
        expect(seqs).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
      }
      expect(store.outbox.epoch).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    });
  });

  test('the stored JSON is the returned envelope, serialised once', async () => {
    await withStore(factory, options(fakeClock()), async (store) => {
      const env = await store.outbox.append(makeEvent('event', { mid: 'm-1' }));
      const [stored] = await readAll(store, 'event');
      expect(JSON.parse(stored!.json)).toEqual(env);
      expect(stored!.seq).toBe(env.seq);
      expect(stored!.rts).toBe(env.rts);
    });
  });

  test('onAppend listeners run after a committed batch and can unsubscribe', async () => {
    await withStore(factory, options(fakeClock()), async (store) => {
      let calls = 0;
      const off = store.outbox.onAppend(() => calls++);
      await store.outbox.append(makeEvent('tx'));
      expect(calls).toBe(1);
      off();
      await store.outbox.append(makeEvent('tx'));
      expect(calls).toBe(1);
    });
  });
}

function readTests({ test, expect }: SuiteApi, factory: OutboxFactory): void {
  test('read returns ascending seqs after afterSeq, honouring limit and maxBytes', async () => {
    await withStore(factory, options(fakeClock()), async (store) => {
      for (let i = 0; i < 10; i++) await store.outbox.append(makeEvent('event', { pad: 100 }));
      expect((await store.outbox.read('event', 0, 3)).map((e) => e.seq)).toEqual([1, 2, 3]);
      expect((await store.outbox.read('event', 7, 100)).map((e) => e.seq)).toEqual([8, 9, 10]);
      expect(await store.outbox.read('event', 10, 100)).toEqual([]);
      expect(await store.outbox.read('tx', 0, 100)).toEqual([]);
      const one = (await store.outbox.read('event', 0, 1))[0]!;
      const size = Buffer.byteLength(one.json);
      expect((await store.outbox.read('event', 0, 100, size * 3)).length).toBe(3);
      // At least one event even when it alone is larger than maxBytes.
      expect((await store.outbox.read('event', 4, 100, 1)).map((e) => e.seq)).toEqual([5]);
      expect(await store.outbox.read('event', 0, 0)).toEqual([]);
    });
  });
}

function ackTests({ test, expect }: SuiteApi, factory: OutboxFactory): void {
  test('ack forgets up to the watermark, is idempotent, ignores lower and clamps higher [OUTBOX-ACK-1]', async () => {
    await withStore(factory, options(fakeClock()), async (store) => {
      for (let i = 0; i < 5; i++) await store.outbox.append(makeEvent('tx'));
      await store.outbox.ack('tx', 2);
      expect(store.outbox.acked('tx')).toBe(2);
      expect(store.outbox.floor('tx')).toBe(3);
      expect((await readAll(store, 'tx')).map((e) => e.seq)).toEqual([3, 4, 5]);
      await store.outbox.ack('tx', 2);
      await store.outbox.ack('tx', 1);
      expect(store.outbox.acked('tx')).toBe(2);
      expect((await readAll(store, 'tx')).map((e) => e.seq)).toEqual([3, 4, 5]);
      await store.outbox.ack('tx', 1000);
      expect(store.outbox.acked('tx')).toBe(5);
      expect(store.outbox.floor('tx')).toBe(6);
      expect(await readAll(store, 'tx')).toEqual([]);
      expect((await store.outbox.append(makeEvent('tx'))).seq).toBe(6);
      expect(store.outbox.stats().lanes.tx).toMatchObject({ depth: 1, ackedSeq: 5, nextSeq: 7 });
    });
  });

  test('ack of one lane leaves the others alone; floor of an empty lane is its next seq [OUTBOX-ACK-3]', async () => {
    await withStore(factory, options(fakeClock()), async (store) => {
      expect(store.outbox.floor('event')).toBe(1);
      await store.outbox.append(makeEvent('event'));
      await store.outbox.append(makeEvent('telemetry'));
      await store.outbox.ack('event', 1);
      expect(store.outbox.floor('event')).toBe(2);
      expect(store.outbox.floor('telemetry')).toBe(1);
      expect(await store.outbox.read('telemetry', 0, 10)).toHaveLength(1);
    });
  });
}

function budgetTests({ test, expect }: SuiteApi, factory: OutboxFactory): void {
  const size = (e: EventEnvelope) => Buffer.byteLength(JSON.stringify(e));

  test('telemetry over its lane budget drops the oldest telemetry, counted, floor advances [OUTBOX-BUDGET-1]', async () => {
    const clock = fakeClock();
    const probe = makeEvent('telemetry', { pad: 200 });
    const one = size({ ...probe, seq: 10 });
    const opts = options(clock, {
      lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: one * 3 + 10 } },
    });
    await withStore(factory, opts, async (store) => {
      for (let i = 0; i < 5; i++) await store.outbox.append(makeEvent('telemetry', { pad: 200 }));
      expect((await readAll(store, 'telemetry')).map((e) => e.seq)).toEqual([3, 4, 5]);
      expect(store.outbox.floor('telemetry')).toBe(3);
      const st = store.outbox.stats().lanes.telemetry;
      expect(st.dropped).toBe(2);
      expect(st.dropReasons).toEqual({ ttl: 0, budget: 2, corruption: 0 });
      expect(st.bytes).toBeLessThanOrEqual(one * 3 + 10);
    });
  });

  test('a tx append under the global budget drops telemetry, never tx; a full outbox rejects tx visibly [LANE-1]', async () => {
    const probe = size({ ...makeEvent('tx', { pad: 200 }), seq: 10 });
    const opts = options(fakeClock(), { maxBytes: probe * 4 + 20 });
    await withStore(factory, opts, async (store) => {
      await store.outbox.append(makeEvent('telemetry', { pad: 200 }));
      await store.outbox.append(makeEvent('telemetry', { pad: 200 }));
      for (let i = 0; i < 4; i++) await store.outbox.append(makeEvent('tx', { pad: 200 }));
      expect(await readAll(store, 'telemetry')).toEqual([]);
      expect(store.outbox.stats().lanes.telemetry.dropReasons.budget).toBe(2);
      await expect(store.outbox.append(makeEvent('tx', { pad: 200 }))).rejects.toMatchObject({
        code: 'EDGE_ERR_OUTBOX_FULL',
      });
      expect((await readAll(store, 'tx')).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
      expect(store.outbox.stats().lanes.tx.dropped).toBe(0);
      // The rejected append consumed no seq.
      await store.outbox.ack('tx', 1);
      expect((await store.outbox.append(makeEvent('tx', { pad: 200 }))).seq).toBe(5);
    });
  });

  test('telemetry never displaces events; events over their own budget drop the oldest event', async () => {
    const probe = size({ ...makeEvent('event', { pad: 200 }), seq: 10 });
    const opts = options(fakeClock(), {
      maxBytes: probe * 4 + 20,
      lanes: { tx: { maxBytes: 0 }, event: { maxBytes: probe * 2 + 10 }, telemetry: { maxBytes: 0 } },
    });
    await withStore(factory, opts, async (store) => {
      for (let i = 0; i < 3; i++) await store.outbox.append(makeEvent('event', { pad: 200 }));
      expect((await readAll(store, 'event')).map((e) => e.seq)).toEqual([2, 3]);
      expect(store.outbox.stats().lanes.event.dropReasons.budget).toBe(1);
      for (let i = 0; i < 2; i++) await store.outbox.append(makeEvent('tx', { pad: 200 }));
      await expect(store.outbox.append(makeEvent('telemetry', { pad: 200 }))).rejects.toMatchObject({
        code: 'EDGE_ERR_OUTBOX_FULL',
      });
      // Events are within their budget, so a tx cannot take their room either.
      await expect(store.outbox.append(makeEvent('tx', { pad: 200 }))).rejects.toMatchObject({
        code: 'EDGE_ERR_OUTBOX_FULL',
      });
      expect((await readAll(store, 'event')).map((e) => e.seq)).toEqual([2, 3]);
      expect(store.outbox.stats().lanes.telemetry.nextSeq).toBe(1);
    });
  });

  test('an event larger than a budget on its own is rejected and drops nothing', async () => {
    const opts = options(fakeClock(), {
      lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: 1000 } },
    });
    await withStore(factory, opts, async (store) => {
      await store.outbox.append(makeEvent('telemetry'));
      await expect(store.outbox.append(makeEvent('telemetry', { pad: 2000 }))).rejects.toMatchObject({
        code: 'EDGE_ERR_OUTBOX_FULL',
      });
      expect(await readAll(store, 'telemetry')).toHaveLength(1);
      expect(store.outbox.stats().lanes.telemetry.dropped).toBe(0);
    });
  });

  test('a batch of telemetry larger than the lane budget keeps the newest and counts the rest', async () => {
    const probe = size({ ...makeEvent('telemetry', { pad: 100 }), seq: 10 });
    const opts = options(fakeClock(), {
      lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: probe * 5 + 20 } },
    });
    await withStore(factory, opts, async (store) => {
      const envs = await Promise.all(
        Array.from({ length: 20 }, () => store.outbox.append(makeEvent('telemetry', { pad: 100 }))),
      );
      expect(envs.map((e) => e.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect((await readAll(store, 'telemetry')).map((e) => e.seq)).toEqual([16, 17, 18, 19, 20]);
      expect(store.outbox.floor('telemetry')).toBe(16);
      expect(store.outbox.stats().lanes.telemetry.dropReasons.budget).toBe(15);
    });
  });
}

function ttlTests({ test, expect }: SuiteApi, factory: OutboxFactory): void {
  test('expire() drops telemetry past its TTL only, counted as ttl [OUTBOX-TTL-1]', async () => {
    const clock = fakeClock();
    await withStore(factory, options(clock), async (store) => {
      await store.outbox.append(makeEvent('telemetry', { rts: clock.now() }));
      await store.outbox.append(makeEvent('tx', { rts: clock.now() }));
      await store.outbox.append(makeEvent('event', { rts: clock.now() }));
      clock.advance(30_000);
      await store.outbox.append(makeEvent('telemetry', { rts: clock.now() }));
      clock.advance(30_000);
      expect(await store.outbox.expire()).toBe(1);
      expect((await readAll(store, 'telemetry')).map((e) => e.seq)).toEqual([2]);
      expect(store.outbox.floor('telemetry')).toBe(2);
      expect(await readAll(store, 'tx')).toHaveLength(1);
      expect(await readAll(store, 'event')).toHaveLength(1);
      expect(store.outbox.stats().lanes.telemetry.dropReasons).toEqual({ ttl: 1, budget: 0, corruption: 0 });
      clock.advance(3_600_000);
      expect(await store.outbox.expire()).toBe(1);
      expect(store.outbox.stats().lanes.tx.depth).toBe(1);
    });
  });

  test('expired telemetry makes room before live telemetry is dropped', async () => {
    const clock = fakeClock();
    const probe = Buffer.byteLength(JSON.stringify({ ...makeEvent('telemetry', { pad: 100 }), seq: 10 }));
    const opts = options(clock, {
      lanes: {
        tx: { maxBytes: 0 },
        event: { maxBytes: 0 },
        telemetry: { maxBytes: probe * 2 + 10, ttlMs: 1000 },
      },
    });
    await withStore(factory, opts, async (store) => {
      await store.outbox.append(makeEvent('telemetry', { pad: 100, rts: clock.now() }));
      clock.advance(500);
      await store.outbox.append(makeEvent('telemetry', { pad: 100, rts: clock.now() }));
      clock.advance(600);
      await store.outbox.append(makeEvent('telemetry', { pad: 100, rts: clock.now() }));
      expect(store.outbox.stats().lanes.telemetry.dropReasons).toEqual({ ttl: 1, budget: 0, corruption: 0 });
    });
  });
}

function dedupeTests({ test, expect }: SuiteApi, factory: OutboxFactory): void {
  test('a resend with the same (device, mid) resolves with the first envelope and stores nothing [INGEST-DEDUPE-1]', async () => {
    await withStore(factory, options(fakeClock()), async (store) => {
      const first = await store.outbox.append(makeEvent('tx', { mid: 'abc' }));
      const again = await store.outbox.append(makeEvent('tx', { mid: 'abc' }));
      expect(again).toMatchObject({ id: first.id, seq: first.seq, lane: 'tx', rts: first.rts });
      expect(await readAll(store, 'tx')).toHaveLength(1);
      // Another device may reuse the mid; events without a mid are never deduplicated.
      await store.outbox.append(makeEvent('tx', { mid: 'abc', device: 'dev-2' }));
      await store.outbox.append(makeEvent('tx'));
      await store.outbox.append(makeEvent('tx'));
      expect(await readAll(store, 'tx')).toHaveLength(4);
      // Still deduplicated after the first copy was acknowledged.
      await store.outbox.ack('tx', 4);
      expect((await store.outbox.append(makeEvent('tx', { mid: 'abc' }))).seq).toBe(1);
      expect(store.outbox.stats().lanes.tx.nextSeq).toBe(5);
    });
  });

  test('duplicates inside one group-commit batch are caught too', async () => {
    await withStore(factory, options(fakeClock()), async (store) => {
      const envs = await Promise.all(
        Array.from({ length: 6 }, (_, i) => store.outbox.append(makeEvent('event', { mid: `m-${i % 2}` }))),
      );
      expect(envs.map((e) => e.seq)).toEqual([1, 2, 1, 2, 1, 2]);
      expect(new Set(envs.map((e) => e.id)).size).toBe(2);
      expect(await readAll(store, 'event')).toHaveLength(2);
    });
  });

  test('the dedupe window is bounded per device', async () => {
    const opts = options(fakeClock(), { dedupe: { maxPerDevice: 3 } });
    await withStore(factory, opts, async (store) => {
      for (let i = 0; i < 4; i++) await store.outbox.append(makeEvent('event', { mid: `m-${i}` }));
      expect((await store.outbox.append(makeEvent('event', { mid: 'm-3' }))).seq).toBe(4);
      // m-0 fell out of the window: a resend of it is stored again.
      expect((await store.outbox.append(makeEvent('event', { mid: 'm-0' }))).seq).toBe(5);
    });
  });
}

function statsTests({ test, expect }: SuiteApi, factory: OutboxFactory): void {
  test('stats: depth, bytes (sum of JSON byte lengths), ages, seqs', async () => {
    const clock = fakeClock();
    await withStore(factory, options(clock), async (store) => {
      await store.outbox.append(makeEvent('tx', { rts: clock.now(), payload: { text: 'héllo ☕' } }));
      await store.outbox.append(makeEvent('event', { rts: clock.now() }));
      await store.outbox.append(makeEvent('event', { rts: clock.now() }));
      clock.advance(2500);
      const st = store.outbox.stats();
      const tx = await readAll(store, 'tx');
      const ev = await readAll(store, 'event');
      expect(st.depth).toBe(3);
      expect(st.bytes).toBe(jsonBytes(tx) + jsonBytes(ev));
      expect(st.lanes.tx.bytes).toBe(jsonBytes(tx));
      expect(st.oldestAgeMs).toBe(2500);
      expect(st.lanes.event).toMatchObject({
        depth: 2,
        nextSeq: 3,
        ackedSeq: 0,
        oldestAgeMs: 2500,
        dropped: 0,
      });
      expect(st.lanes.telemetry).toMatchObject({ depth: 0, bytes: 0, oldestAgeMs: 0, nextSeq: 1 });
      expect(st.epoch).toBe(store.outbox.epoch);
      await store.outbox.ack('event', 2);
      expect(store.outbox.stats().bytes).toBe(jsonBytes(tx));
    });
  });
}

function kvTests({ test, expect }: SuiteApi, factory: OutboxFactory): void {
  test('kv: get, put, del, keys by prefix ascending with limit', async () => {
    await withStore(factory, options(fakeClock()), async (store) => {
      expect(await store.kv.get('missing')).toBeUndefined();
      await store.kv.put('cmd/b', '2');
      await store.kv.put('cmd/a', '1', { sync: true });
      await store.kv.put('shadow', '{}');
      expect(await store.kv.get('cmd/a')).toBe('1');
      expect(await store.kv.keys('cmd/')).toEqual(['cmd/a', 'cmd/b']);
      expect(await store.kv.keys('cmd/', 1)).toEqual(['cmd/a']);
      expect(await store.kv.keys('')).toEqual(['cmd/a', 'cmd/b', 'shadow']);
      await store.kv.del('cmd/a');
      expect(await store.kv.get('cmd/a')).toBeUndefined();
      expect(await store.kv.keys('cmd')).toEqual(['cmd/b']);
    });
  });
}

function reopenTests(
  { test, expect }: SuiteApi,
  factory: OutboxFactory,
  reopen: NonNullable<OutboxFactory['reopen']>,
) {
  test('reopen keeps events, seqs, acks, floors, epoch, drops, dedupe and kv', async () => {
    const clock = fakeClock();
    const probe = Buffer.byteLength(JSON.stringify({ ...makeEvent('telemetry', { pad: 100 }), seq: 10 }));
    const opts = options(clock, {
      lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: probe * 2 + 10 } },
    });
    await withStore(factory, opts, async (store) => {
      for (let i = 0; i < 3; i++) await store.outbox.append(makeEvent('tx', { mid: `t-${i}` }));
      for (let i = 0; i < 4; i++) await store.outbox.append(makeEvent('telemetry', { pad: 100 }));
      await store.outbox.ack('tx', 1);
      await store.kv.put('bdSeq', '7');
      const before = {
        epoch: store.outbox.epoch,
        stats: store.outbox.stats(),
        tx: await readAll(store, 'tx'),
      };
      const after = await reopen(store, opts);
      expect(after.recovery.lostCount).toBe(0);
      expect(after.outbox.epoch).toBe(before.epoch);
      expect(after.outbox.stats()).toEqual(before.stats);
      expect(await readAll(after, 'tx')).toEqual(before.tx);
      expect(after.outbox.floor('telemetry')).toBe(3);
      expect(after.outbox.acked('tx')).toBe(1);
      expect(await after.kv.get('bdSeq')).toBe('7');
      expect((await after.outbox.append(makeEvent('tx', { mid: 't-2' }))).seq).toBe(3);
      expect((await after.outbox.append(makeEvent('tx'))).seq).toBe(4);
      return after;
    });
  });
}

type Cmd =
  | { op: 'append'; lane: Lane; pad: number; mid?: string }
  | { op: 'burst'; lane: Lane; n: number }
  | { op: 'ack'; lane: Lane; by: number }
  | { op: 'tick'; ms: number }
  | { op: 'expire' };

const laneArb = fc.constantFrom<Lane>(...LANES);
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({
    op: fc.constant('append' as const),
    lane: laneArb,
    pad: fc.integer({ min: 0, max: 400 }),
    mid: fc.option(fc.constantFrom('a', 'b', 'c', 'd'), { nil: undefined }),
  }),
  fc.record({ op: fc.constant('burst' as const), lane: laneArb, n: fc.integer({ min: 1, max: 12 }) }),
  fc.record({ op: fc.constant('ack' as const), lane: laneArb, by: fc.integer({ min: -2, max: 8 }) }),
  fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 40_000 }) }),
  fc.record({ op: fc.constant('expire' as const) }),
);

/** Model-free invariants checked after every command of a random run. */
async function checkInvariants(store: EdgeStore, expect: SuiteApi['expect'], issued: Record<Lane, number>) {
  const st = store.outbox.stats();
  let total = 0;
  for (const lane of LANES) {
    const held = await readAll(store, lane);
    const seqs = held.map((e) => e.seq);
    const ls = st.lanes[lane];
    // Gap-free assignment: every seq ever handed out is held, acknowledged or dropped.
    expect(ls.nextSeq - 1).toBe(issued[lane]);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    if (lane === 'tx') expect(ls.dropped).toBe(0);
    expect(held.length).toBe(ls.depth);
    expect(ls.bytes).toBe(jsonBytes(held));
    expect(store.outbox.floor(lane)).toBe(seqs[0] ?? ls.nextSeq);
    // Held seqs are exactly the contiguous range above everything removed.
    const firstHeld = seqs[0] ?? ls.nextSeq;
    expect(seqs).toEqual(Array.from({ length: ls.nextSeq - firstHeld }, (_, i) => firstHeld + i));
    expect(ls.ackedSeq).toBeLessThan(firstHeld);
    total += ls.bytes;
  }
  expect(st.bytes).toBe(total);
}

function propertyTest({ test, expect }: SuiteApi, factory: OutboxFactory): void {
  test('property: random appends, acks, drops and expiry keep seqs gap-free and accounting exact', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 25 }), async (cmds) => {
        const clock = fakeClock();
        const opts = options(clock, {
          maxBytes: 6000,
          lanes: {
            tx: { maxBytes: 0 },
            event: { maxBytes: 2500 },
            telemetry: { maxBytes: 2500, ttlMs: 60_000 },
          },
        });
        const issued: Record<Lane, number> = { tx: 0, event: 0, telemetry: 0 };
        const highest = (envs: EventEnvelope[], lane: Lane) => {
          for (const e of envs) if (e.lane === lane) issued[lane] = Math.max(issued[lane], e.seq);
        };
        await withStore(factory, opts, async (store) => {
          for (const c of cmds) {
            if (c.op === 'append') {
              const env = await store.outbox
                .append(makeEvent(c.lane, { pad: c.pad, mid: c.mid, rts: clock.now() }))
                .catch((err: { code?: string }) => {
                  expect(err.code).toBe('EDGE_ERR_OUTBOX_FULL');
                  return undefined;
                });
              if (env) highest([env], c.lane);
            } else if (c.op === 'burst') {
              const results = await Promise.allSettled(
                Array.from({ length: c.n }, () =>
                  store.outbox.append(makeEvent(c.lane, { pad: 50, rts: clock.now() })),
                ),
              );
              highest(
                results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])),
                c.lane,
              );
            } else if (c.op === 'ack') {
              await store.outbox.ack(c.lane, store.outbox.floor(c.lane) - 1 + c.by);
            } else if (c.op === 'tick') {
              clock.advance(c.ms);
            } else {
              await store.outbox.expire();
            }
            await checkInvariants(store, expect, issued);
          }
        });
      }),
      { numRuns: factory.propertyRuns ?? 60 },
    );
  });
}
