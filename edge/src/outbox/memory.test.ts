import { describe, expect, test } from 'vitest';
import { fakeClock, makeEvent, options, outboxSuite } from './conformance.ts';
import { openEdgeStore } from './index.ts';
import { createMemoryStore } from './memory.ts';

outboxSuite({ test, describe, expect }, { name: 'memory', open: createMemoryStore });

test('the store runs expiry on its own timer [OUTBOX-TTL-1]', async () => {
  const clock = fakeClock();
  const opts = options(clock, { expireIntervalMs: 10 });
  opts.lanes.telemetry.ttlMs = 1000;
  const store = await createMemoryStore(opts);
  await store.outbox.append(makeEvent('telemetry', { rts: clock.now() }));
  clock.advance(1000);
  await expect.poll(() => store.outbox.stats().lanes.telemetry.depth, { timeout: 2000 }).toBe(0);
  expect(store.outbox.stats().lanes.telemetry.dropReasons.ttl).toBe(1);
  await store.close();
});

test('openEdgeStore picks the implementation and refuses a level store without dir', async () => {
  const store = await openEdgeStore({ kind: 'memory', ...options(fakeClock()) });
  expect((await store.outbox.append(makeEvent('tx'))).seq).toBe(1);
  await store.close();
  await expect(openEdgeStore({ kind: 'level', ...options(fakeClock()) })).rejects.toMatchObject({
    code: 'EDGE_ERR_CONFIG',
  });
});
