import type { EventEnvelope, Lane, UnsequencedEvent } from '@storelink/protocols';
import { LANES, newId } from '@storelink/protocols';
import { edgeError } from '../errors.ts';
import type { EdgeStore, KvStore, Outbox, OutboxStats, StoredEvent } from '../outbox/types.ts';

/**
 * A small controllable in-memory store for the agent's own tests (not the outbox under
 * test — that has its own conformance suite): appends can be held pending, failed, or
 * limited per lane, so PUBACK ordering and outbox-full behaviour can be observed.
 */
export interface FakeStoreControls {
  /** While set, appends wait until `release()`. */
  hold: boolean;
  release(): void;
  /** Per-lane cap on held events; beyond it append rejects with EDGE_ERR_OUTBOX_FULL. */
  capacity: Partial<Record<Lane, number>>;
  appended: EventEnvelope[];
}

export function createFakeStore(
  now: () => number = Date.now,
  kvData = new Map<string, string>(),
): EdgeStore & {
  controls: FakeStoreControls;
} {
  const lanes = Object.fromEntries(
    LANES.map((l) => [l, { next: 1, acked: 0, events: [] as StoredEvent[] }]),
  ) as Record<Lane, { next: number; acked: number; events: StoredEvent[] }>;
  const listeners = new Set<() => void>();
  let waiting: Array<() => void> = [];
  const controls: FakeStoreControls = {
    hold: false,
    release() {
      controls.hold = false;
      for (const w of waiting.splice(0)) w();
    },
    capacity: {},
    appended: [],
  };
  const epoch = newId();

  const outbox: Outbox = {
    epoch,
    async append(event: UnsequencedEvent) {
      if (controls.hold) await new Promise<void>((r) => waiting.push(r));
      const l = lanes[event.lane];
      const cap = controls.capacity[event.lane];
      if (cap !== undefined && l.events.length >= cap) {
        throw edgeError('EDGE_ERR_OUTBOX_FULL', { lane: event.lane, reason: 'lane budget reached' });
      }
      const env: EventEnvelope = { ...event, seq: l.next++ };
      l.events.push({ seq: env.seq, json: JSON.stringify(env), rts: env.rts });
      controls.appended.push(env);
      queueMicrotask(() => {
        for (const f of listeners) f();
      });
      return env;
    },
    appendWith(event, done) {
      outbox.append(event).then(
        (env) => done(null, env),
        (err: Error) => done(err),
      );
    },
    async read(lane, afterSeq, limit) {
      return lanes[lane].events.filter((e) => e.seq > afterSeq).slice(0, limit);
    },
    async ack(lane, upTo) {
      const l = lanes[lane];
      if (upTo <= l.acked) return;
      l.acked = upTo;
      l.events = l.events.filter((e) => e.seq > upTo);
    },
    floor(lane) {
      const l = lanes[lane];
      return l.events[0]?.seq ?? l.next;
    },
    acked(lane) {
      return lanes[lane].acked;
    },
    stats(): OutboxStats {
      const t = now();
      const per = Object.fromEntries(
        LANES.map((lane) => {
          const l = lanes[lane];
          return [
            lane,
            {
              depth: l.events.length,
              bytes: l.events.reduce((a, e) => a + e.json.length, 0),
              oldestAgeMs: l.events[0] ? Math.max(0, t - l.events[0].rts) : 0,
              nextSeq: l.next,
              ackedSeq: l.acked,
              dropped: 0,
              dropReasons: { ttl: 0, budget: 0, corruption: 0 },
            },
          ];
        }),
      ) as OutboxStats['lanes'];
      const all = LANES.map((l) => per[l]);
      return {
        epoch,
        depth: all.reduce((a, s) => a + s.depth, 0),
        bytes: all.reduce((a, s) => a + s.bytes, 0),
        oldestAgeMs: Math.max(...all.map((s) => s.oldestAgeMs)),
        lanes: per,
      };
    },
    onAppend(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async expire() {
      return 0;
    },
  };
  const kv: KvStore = {
    async get(key) {
      return kvData.get(key);
    },
    async put(key, value) {
      kvData.set(key, value);
    },
    async del(key) {
      kvData.delete(key);
    },
    async keys(prefix, limit = Number.POSITIVE_INFINITY) {
      return [...kvData.keys()]
        .filter((k) => k.startsWith(prefix))
        .sort()
        .slice(0, limit);
    },
  };
  return {
    outbox,
    kv,
    recovery: { repaired: false, lost: {}, lostCount: 0, message: 'fresh' },
    async close() {
      waiting = [];
    },
    controls,
  };
}
