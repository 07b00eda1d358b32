import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { type CloudApp, startCloud } from '../../../cloud/src/index.ts';
import { type EdgeAgent, startEdge } from '../../../edge/src/agent.ts';
import { SimClock } from './clock.ts';
import { EslWorld } from './world.ts';

/**
 * The campaign report, end to end under the fault mix: the real cloud (PGlite, price
 * book, signed commands, ingest) and the real edge agent share one simulated clock with
 * the OEPL access point and tags, so 25 minutes of wake-ups, timeouts and silence run in
 * seconds. The report must list exactly the tags that did not confirm, with the reason.
 */
const silent = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'storelink-esl-report-'));
let cloud: CloudApp | undefined;
let edge: EdgeAgent | undefined;
let world: EslWorld | undefined;

afterAll(async () => {
  await world?.close();
  await edge?.close();
  await cloud?.close();
  rmSync(dir, { recursive: true, force: true });
});

const until = async (what: string, cond: () => Promise<boolean> | boolean, ms = 15_000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

it('the campaign report is exact under the fault mix', async () => {
  const clock = new SimClock(Date.now());
  cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
      store: { kind: 'pglite' },
      signing: { privateKeyFile: join(dir, 'cloud', 'key.pem') },
      service: { username: 'svc', password: 'svc-secret' },
      gateways: [{ id: 'gw-1', site: 's1', password: 'gw-secret' }],
      log: { level: 'silent' },
    },
    { logger: silent, now: clock.now },
  );
  const aps = [{ id: 'ap-1', password: 'pw-ap-1' }];
  edge = await startEdge(
    {
      site: 's1',
      gateway: 'gw-1',
      dataDir: join(dir, 'edge'),
      broker: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { host: '127.0.0.1', port: 0 },
      cloud: {
        url: cloud.brokerUrl,
        username: 'gw-1',
        password: 'gw-secret',
        publicKeyPem: cloud.publicKeyPem,
      },
      devices: aps,
      outbox: { kind: 'memory' },
      log: { level: 'silent' },
    },
    { logger: silent, now: clock.now },
  );
  const book = cloud.prices!.book;
  const mac = (i: number) => `00000000000000${String(i).padStart(2, '0')}`;
  world = new EslWorld({ brokerUrl: `mqtt://127.0.0.1:${edge.brokerPort}`, aps, clock, seed: 3 });
  const t0 = clock.now();
  const spec = [
    { i: 1 },
    { i: 2, faults: ['lost_block_ack' as const] },
    { i: 3, faults: ['dup_complete' as const] },
    { i: 4, faults: ['never_wakes' as const] },
    { i: 5, batteryMv: 2500, dieAt: t0 + 50_000, phaseMs: 10_000 },
    { i: 6, faults: ['xfer_fail' as const] },
    { i: 7, phaseMs: 55_000 }, // wakes after the second price change: its first row is superseded
    { i: 8, size: '4.2' as const, bpp: 2 as const },
  ];
  for (const s of spec) {
    await book.upsertSku({ sku: `S${s.i}`, name: `Item ${s.i}`, barcode: '5901234123457' });
    await book.upsertTag({
      mac: mac(s.i),
      site: 's1',
      gateway: 'gw-1',
      ap: 'ap-1',
      sku: `S${s.i}`,
      size: s.size ?? '2.9',
      bpp: s.bpp ?? 1,
    });
    world.addTag({ mac: mac(s.i), ap: 'ap-1', size: s.size ?? '2.9', bpp: s.bpp ?? 1, intervalS: 40, ...s });
  }
  await book.setPrices(
    's1',
    spec.map((s) => ({ sku: `S${s.i}`, priceCents: 100 + s.i })),
    { campaign: false },
  );
  await until('edge connected to the cloud', () => edge!.status().uplink.connected);
  await world.start();
  await world.run(t0 + 60_000); // warm-up: the edge learns batteries and APs

  const { campaignId } = await book.setPrices(
    's1',
    spec.map((s) => ({ sku: `S${s.i}`, priceCents: 200 + s.i })),
  );
  await until('campaign at the edge', () => edge!.esl.stats().pending >= 8);
  await world.run(clock.now() + 30_000);
  const second = await book.setPrices('s1', [{ sku: 'S7', priceCents: 299 }]);
  await until(
    'second campaign at the edge',
    () => edge!.esl.tags.get(mac(7))?.want?.campaignId === second.campaignId,
  );
  let lastSweep = clock.now();
  await world.run(clock.now() + 1_400_000, {
    sliceMs: 2000,
    afterSlice: async () => {
      if (clock.now() - lastSweep >= 10_000) {
        lastSweep = clock.now();
        await edge!.esl.sweep();
      }
    },
  });
  await until('campaign complete in the cloud', async () => (await book.progress(campaignId!)).complete);

  const r = await fetch(`${cloud.httpUrl}/api/v1/campaigns/${campaignId}/report`);
  const report = (await r.json()) as {
    total: number;
    confirmed: number;
    notConfirmed: Array<{ tag: string; state: string; reason: string }>;
    byReason: Record<string, number>;
  };
  expect(report.total).toBe(8);
  expect(report.confirmed).toBe(4);
  expect(report.notConfirmed.map((e) => [e.tag, e.state, e.reason])).toEqual([
    [mac(4), 'failed', 'no_checkin'],
    [mac(5), 'failed', 'low_battery'],
    [mac(6), 'failed', 'transfer_failed'],
    [mac(7), 'superseded', 'superseded'],
  ]);
  // the repeated completion of tag 3 and the second campaign's confirmation of tag 7
  const p2 = await book.progress(second.campaignId!);
  expect(p2.counts.confirmed).toBe(1);
  const rows = await book.tags(campaignId!, { state: 'confirmed' });
  expect(rows.map((x) => x.tag)).toEqual([mac(1), mac(2), mac(3), mac(8)]);
}, 60_000);
