import type { esl } from '@storelink/protocols';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../store/index.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import pricesRoutes from './routes.ts';
import { PriceBook } from './service.ts';

const T0 = Date.UTC(2026, 10, 23, 6, 0, 0);

describe('price book and campaigns (PGlite)', () => {
  let store: SqlCloudStore;
  let book: PriceBook;
  let now = T0;
  // biome-ignore lint/suspicious/noExplicitAny: test reads command payloads freely
  const sent: Array<{ gateway: string; type: string; payload: any }> = [];

  beforeAll(async () => {
    store = (await openStore({ kind: 'pglite' })) as SqlCloudStore;
    book = new PriceBook({
      sql: store.sql,
      now: () => now,
      deadlineMs: 60_000,
      sendCommand: async (c) => {
        sent.push(c as never);
      },
    });
    await book.upsertSku({ sku: 'APL', name: 'Apples', barcode: '5901234123457' });
    await book.upsertSku({ sku: 'MLK', name: 'Milk' });
    await book.upsertTemplate('4.2', 'qr');
    for (let i = 0; i < 6; i++)
      await book.upsertTag({
        mac: `00000000000000A${i}`,
        site: 's1',
        gateway: i < 4 ? 'gw-1' : 'gw-2',
        ap: 'ap-1',
        sku: i < 3 ? 'APL' : 'MLK',
        size: i === 0 ? '4.2' : '2.9',
        bpp: 1,
      });
  });
  afterAll(() => store.close());

  const apply = (p: Omit<esl.EslTagState, 'at'>) =>
    store.sql.transaction((tx) => book.applyTagState(tx, { ...p, at: now }));

  it('a price change makes a campaign for the tags showing the SKU, one command per gateway', async () => {
    const r = await book.setPrices('s1', [
      { sku: 'APL', priceCents: 349 },
      { sku: 'MLK', priceCents: 119 },
    ]);
    expect(r.changed).toBe(2);
    const p = await book.progress(r.campaignId!);
    expect(p.total).toBe(6);
    expect(p.counts.sent).toBe(6);
    expect(sent.map((c) => [c.gateway, c.type, c.payload.items.length])).toEqual([
      ['gw-1', 'esl.campaign', 4],
      ['gw-2', 'esl.campaign', 2],
    ]);
    const first = sent[0]!.payload.items[0];
    expect(first).toMatchObject({ tag: '00000000000000A0', size: '4.2', ap: 'ap-1' });
    expect(first.content).toEqual({
      sku: 'APL',
      name: 'Apples',
      priceCents: 349,
      currency: 'EUR',
      barcode: '5901234123457',
      code: 'qr',
    });
    // the same prices again: nothing changed, no campaign
    expect(await book.setPrices('s1', [{ sku: 'APL', priceCents: 349 }])).toEqual({
      campaignId: null,
      changed: 0,
    });
  });

  it('counts a confirmation once, lets a late confirmation beat a failure, reports the rest exactly', async () => {
    sent.length = 0;
    now += 1000;
    const { campaignId } = await book.setPrices('s1', [
      { sku: 'APL', priceCents: 399 },
      { sku: 'MLK', priceCents: 129 },
    ]);
    const id = campaignId!;
    const ver = '0123456789abcdef';
    for (let i = 0; i < 6; i++)
      await apply({ campaignId: id, tag: `00000000000000A${i}`, state: 'pushed', dataVer: ver });
    expect(await apply({ campaignId: id, tag: '00000000000000A0', state: 'confirmed', dataVer: ver })).toBe(
      true,
    );
    expect(await apply({ campaignId: id, tag: '00000000000000A0', state: 'confirmed', dataVer: ver })).toBe(
      false,
    );
    await apply({ campaignId: id, tag: '00000000000000A1', state: 'failed', reason: 'transfer_failed' });
    await apply({ campaignId: id, tag: '00000000000000A1', state: 'confirmed', dataVer: ver });
    await apply({ campaignId: id, tag: '00000000000000A2', state: 'failed', reason: 'low_battery' });
    await apply({ campaignId: id, tag: '00000000000000A3', state: 'failed', reason: 'transfer_failed' });
    // a confirmed tag cannot be failed afterwards
    expect(
      await apply({ campaignId: id, tag: '00000000000000A0', state: 'failed', reason: 'no_checkin' }),
    ).toBe(false);
    const p = await book.progress(id);
    expect(p.counts).toMatchObject({ confirmed: 2, failed: 2, pushed: 2 });
    expect((await book.report(id)).byReason).toEqual({ low_battery: 1, transfer_failed: 1, pending: 2 });
    expect(p.complete).toBe(false);

    // A newer price for MLK supersedes the three open MLK rows (failed ones too).
    now += 1000;
    const next = await book.setPrices('s1', [{ sku: 'MLK', priceCents: 99 }]);
    now += 60_000; // past the first campaign's deadline
    const rep = await book.report(id);
    expect(rep.confirmed).toBe(2);
    expect(rep.notConfirmed.map((e) => [e.tag, e.state, e.reason])).toEqual([
      ['00000000000000A2', 'failed', 'low_battery'],
      ['00000000000000A3', 'superseded', 'superseded'],
      ['00000000000000A4', 'superseded', 'superseded'],
      ['00000000000000A5', 'superseded', 'superseded'],
    ]);
    expect(rep.byReason).toEqual({ low_battery: 1, superseded: 3 });
    expect((await book.progress(id)).complete).toBe(true);
    // the newer campaign has no edge verdict yet and is past its deadline: tags never checked in
    now += 60_000;
    const rep2 = await book.report(next.campaignId!);
    expect(rep2.notConfirmed.map((e) => e.reason)).toEqual(['no_checkin', 'no_checkin', 'no_checkin']);
  });

  it('promotions: the start and the end each produce one campaign; cancel withdraws', async () => {
    sent.length = 0;
    await book.upsertPromotion({
      id: 'promo-1',
      site: 's1',
      sku: 'APL',
      promoCents: 299,
      startsAt: now + 10_000,
      endsAt: now + 20_000,
    });
    expect(await book.tick()).toEqual([]);
    now += 10_000;
    const [start] = await book.tick();
    expect(await book.tick()).toEqual([]);
    expect(sent[0]!.payload.items[0].content).toMatchObject({
      priceCents: 399,
      promoCents: 299,
      promoEndsAt: now + 10_000,
    });
    const cancelled = await book.cancel(start!);
    expect(cancelled.counts.cancelled).toBe(3);
    expect(sent.at(-1)).toMatchObject({ type: 'esl.cancel', payload: { campaignId: start } });
    now += 10_000;
    sent.length = 0;
    const [end] = await book.tick();
    expect(end).toBeDefined();
    expect(sent[0]!.payload.items[0].content.promoCents).toBeUndefined();
  });

  it('serves the API: progress, per-tag states, report', async () => {
    const app = Fastify();
    await app.register(pricesRoutes, { book });
    const created = await app.inject({
      method: 'POST',
      url: '/campaigns',
      payload: { site: 's1', skus: ['MLK'] },
    });
    expect(created.statusCode).toBe(201);
    const id = created.json().id;
    const tags = await app.inject({ url: `/campaigns/${id}/tags?state=sent` });
    expect(tags.json().items).toHaveLength(3);
    expect((await app.inject({ url: `/campaigns/${id}` })).json().counts.sent).toBe(3);
    expect((await app.inject({ url: `/campaigns/${id}/report` })).json().notConfirmed).toHaveLength(3);
    const prices = await app.inject({
      method: 'POST',
      url: '/prices/sites/s1/prices',
      payload: { items: [{ sku: 'MLK', priceCents: 89 }] },
    });
    expect(prices.json().changed).toBe(1);
    await app.close();
  });
});
