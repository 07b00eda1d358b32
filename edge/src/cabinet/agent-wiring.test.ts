import type { CommandEnvelope, UnsequencedEvent } from '@storelink/protocols';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import { SimCabinet } from '../../../firmware-sim/src/cabinet/cabinet.ts';
import { SimWeightShelf } from '../../../firmware-sim/src/weight/shelf.ts';
import { parseConfig } from '../config.ts';
import { createSimLine, type SimLine } from '../gpio/line.ts';
import { startCabinet } from './agent-wiring.ts';

/**
 * The agent's cabinet as configured from the edge config: weight shelf readings arrive as
 * `shelf.reading` device events and become `shelf.take`; RFID goods are counted through the
 * simulated reader (same answers as the RFID driver's inventoryNow); `cabinet.unlock` runs
 * through the registered executor; the closed event carries RFID and weight items.
 */
describe('cabinet agent wiring', () => {
  it('shelf readings → shelf.take with SKU; unlock → take from RFID and weight → closed with both', async () => {
    const cfg = parseConfig({
      site: 's1',
      gateway: 'gw1',
      cloud: { url: 'mqtt://127.0.0.1:1', username: 'gw1' },
      cabinet: {
        lockGpio: { pin: 17 },
        doorGpio: { pin: 18 },
        doorDebounceMs: 0,
        weightSettleMs: 0,
        rfid: { tags: { e1: 'sandwich', e2: 'salad' }, rounds: 2, extraRounds: 3 },
        shelves: [
          {
            id: 'shelf-1',
            lanes: [
              {
                id: 'L1',
                gramsPerCount: 0.01,
                tareCounts: 8_000,
                thresholdG: 150,
                skus: [{ sku: 'cola', unitGrams: 355 }],
              },
              {
                id: 'L2',
                gramsPerCount: 0.01,
                tareCounts: 8_000,
                thresholdG: 150,
                skus: [{ sku: 'soda', unitGrams: 355 }],
              },
            ],
          },
        ],
      },
    }).cabinet!;
    let now = 1_000;
    const reader = new SimCabinet({ now: () => now, missRate: 0.2, seed: 3 });
    reader.goods.set('e1', 'sandwich');
    reader.goods.set('e2', 'salad');
    const shelfSim = new SimWeightShelf({
      seed: 4,
      gramsPerCount: 0.01,
      offsetCounts: 8_000,
      spikeRate: 0,
      lanes: [
        { id: 'L1', sku: 'cola', unitGrams: 355, count: 4 },
        { id: 'L2', sku: 'soda', unitGrams: 355, count: 4 },
      ],
    });
    const lines: Record<string, SimLine> = {};
    const events: UnsequencedEvent[] = [];
    const executors = new Map<string, (c: CommandEnvelope) => Promise<unknown>>();
    const kv = new Map<string, string>();
    const registry = new Registry();
    const cab = await startCabinet({
      config: cfg,
      site: 's1',
      gateway: 'gw1',
      now: () => now,
      logger: pino({ level: 'silent' }),
      kv: { get: async (k) => kv.get(k), put: async (k, v) => void kv.set(k, v) },
      append: async (ev) => void events.push(ev),
      commands: { registerExecutor: (t, fn) => executors.set(t, fn) },
      registry,
      rfid: reader,
      openLine: async (spec, direction) => {
        lines[spec.pin] = createSimLine({ direction });
        return lines[spec.pin]!;
      },
    });
    const feed = (n: number) => {
      for (let i = 0; i < n; i++) {
        now += 100;
        for (const lane of ['L1', 'L2'])
          cab.deviceEvent(
            'shelf-1',
            'shelf.reading',
            Buffer.from(JSON.stringify({ lane, raw: shelfSim.read(lane, now) })),
            () => {},
          );
      }
    };
    feed(12);
    const unlock = executors.get('cabinet.unlock')!;
    const r = await unlock({ payload: { sessionId: 'S-0001' } } as CommandEnvelope);
    expect(r).toMatchObject({ sessionId: 'S-0001', state: 'unlocked', items: 10 });
    expect(lines[17]!.writes.at(-1)).toBe(1);
    lines[18]!.set(1);
    await vi.waitFor(() => expect(cab.session.current?.state).toBe('open'));
    shelfSim.take('L1', 1);
    feed(12);
    reader.goods.delete('e2');
    lines[18]!.set(0);
    await vi.waitFor(() => expect(events.map((e) => e.type)).toContain('cabinet.session.closed'));
    const take = events.find((e) => e.type === 'shelf.take')!;
    expect(take.payload).toMatchObject({
      shelf: 'shelf-1',
      lane: 'L1',
      sku: 'cola',
      count: 1,
      sessionId: 'S-0001',
    });
    expect(take.lane).toBe('event');
    const closed = events.find((e) => e.type === 'cabinet.session.closed')!;
    expect(closed.lane).toBe('tx');
    expect(closed.payload).toMatchObject({
      sessionId: 'S-0001',
      taken: [
        { sku: 'cola', qty: 1 },
        { sku: 'salad', qty: 1 },
      ],
      returned: [],
    });
    expect((closed.payload as { sources: string[] }).sources.sort()).toEqual(['rfid', 'weight']);
    expect(lines[17]!.writes.at(-1)).toBe(0);

    // bad readings: counted under their code, nothing else happens
    cab.deviceEvent('shelf-1', 'shelf.reading', Buffer.from('{"lane":"L9","raw":1}'), () => {});
    cab.deviceEvent('shelf-1', 'shelf.reading', Buffer.from('{"lane":"L1","raw":"x"}'), () => {});
    cab.deviceEvent('shelf-9', 'shelf.reading', Buffer.from('{"lane":"L1","raw":1}'), () => {});
    cab.deviceEvent('shelf-1', 'shelf.reading', Buffer.from('not json'), () => {});
    const metrics = await registry.getSingleMetricAsString('storelink_edge_cabinet_refused_total');
    expect(metrics).toMatch(/code="EDGE_ERR_CAB_SHELF_READING"} 4/);
    // a second session while the first is closed works; another while it runs is refused
    await unlock({ payload: { sessionId: 'S-0002' } } as CommandEnvelope);
    await expect(unlock({ payload: { sessionId: 'S-0003' } } as CommandEnvelope)).rejects.toMatchObject({
      code: 'EDGE_ERR_CAB_BUSY',
    });
    await cab.stop();
  });
});
