import { createHash } from 'node:crypto';
import { deviceCommandTopic, esl } from '@storelink/protocols';
import { afterEach, describe, expect, it } from 'vitest';
import { startObserver, startTestBroker, type TestBroker } from '../test-support.ts';
import { SimClock } from './clock.ts';
import { EslWorld } from './world.ts';

let broker: TestBroker | undefined;
let world: EslWorld | undefined;
afterEach(async () => {
  await world?.close();
  await broker?.close();
  world = broker = undefined;
});

const mac = (i: number) => `00000000000${String(i).padStart(5, '0')}`;
const image = (n: number, seed: number) => Buffer.alloc(n, seed);
const ver = (b: Buffer) => createHash('md5').update(b).digest('hex').slice(0, 16);

async function setup(tags: number) {
  broker = await startTestBroker();
  world = new EslWorld({
    brokerUrl: broker.url,
    aps: [{ id: 'ap-1', password: 'x' }],
    clock: new SimClock(0),
  });
  for (let i = 0; i < tags; i++)
    world.addTag({ mac: mac(i), ap: 'ap-1', size: '2.9', bpp: 1, intervalS: 40 });
  await world.start();
  const edge = await startObserver(broker.url, 'dev/ap-1/evt/#');
  const push = async (items: Array<{ mac: string; data: Buffer; attempts?: number }>) => {
    await edge.publish(deviceCommandTopic('ap-1', esl.AP_PUSH), {
      id: '01ARZ3NDEKTSV4RRFFQ69G5FAV',
      expiresAt: 1e13,
      payload: {
        items: items.map((i) => ({
          mac: i.mac,
          dataVer: ver(i.data),
          dataType: 0x20,
          data: i.data.toString('base64'),
          attempts: i.attempts ?? 15,
        })),
      },
    });
    await world!.sync();
  };
  return { w: world, edge, push };
}

describe('simulated OEPL access point and tags', () => {
  it('holds at most 250 pending items, refuses more (NOQ) and times items out after attemptsLeft minutes', async () => {
    const { w, edge, push } = await setup(0);
    await push(Array.from({ length: 260 }, (_, i) => ({ mac: mac(i), data: image(100, i), attempts: 3 })));
    const ap = w.aps.get('ap-1')!;
    expect(ap.pending.size).toBe(250);
    expect(ap.stats.queueFull).toBe(10);
    // replacing an item for a MAC already pending takes no new slot (latest wins)
    await push([{ mac: mac(0), data: image(100, 99) }]);
    expect(ap.pending.get(mac(0))!.dataVer).toBe(ver(image(100, 99)));
    await w.run(4 * 60_000);
    expect(ap.stats.timeouts).toBe(249); // mac(0) got 15 minutes with its new item
    const nack = edge.messages.find((m) => m.topic.endsWith('/esl.push_nack'))!;
    expect((nack.payload as { items: unknown[] }).items).toHaveLength(10);
    await edge.close();
  });

  it('tags download their pending image, verify it and confirm by hash', async () => {
    const { w, edge, push } = await setup(6);
    await push(Array.from({ length: 6 }, (_, i) => ({ mac: mac(i), data: image(15000, i) })));
    await w.run(120_000);
    for (let i = 0; i < 6; i++) expect(w.tags.get(mac(i))!.shown).toBe(ver(image(15000, i)));
    expect(w.aps.get('ap-1')!.stats.transfers).toBe(6);
    const completes = edge.messages
      .filter((m) => m.topic.endsWith('/esl.xfer_complete'))
      .flatMap((m) => (m.payload as { items: Array<{ mac: string }> }).items.map((x) => x.mac));
    expect(completes.sort()).toEqual(Array.from({ length: 6 }, (_, i) => mac(i)));
    await edge.close();
  });

  it('tags back off from 40 s towards 600 s while their AP is off, and come back to 40 s', async () => {
    const { w, edge } = await setup(1);
    const t = w.tags.get(mac(0))!;
    await w.run(60_000);
    const ap = w.aps.get('ap-1')!;
    ap.online = false;
    await w.run(3 * 3600_000);
    expect(t.sleepAvgS).toBeGreaterThan(500);
    expect(t.attempts).toBe(14);
    const offWakes = t.wakes;
    ap.online = true;
    await w.run(3 * 3600_000 + 3600_000);
    expect(t.sleepAvgS).toBe(40);
    // first the backed-off sleep (< 600 s), then a 40 s rhythm
    expect(t.wakes - offWakes).toBeGreaterThan(70);
    await edge.close();
  });
});
