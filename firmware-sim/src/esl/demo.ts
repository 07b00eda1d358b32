import type { esl } from '@storelink/protocols';
import { type CampaignReport, followCampaign, formatReport } from '../../../cloud/src/prices/cli.ts';
import { SimClock } from './clock.ts';
import { EslWorld } from './world.ts';

/**
 * `npm start` ESL demo: over the cloud HTTP API it sets up a small price book (SKUs,
 * label templates, tags linked to the demo gateway's access point), starts simulated
 * OEPL access points and tags against the edge broker (real time, tags waking every
 * `wakeS`), changes prices (which makes a campaign) and follows the campaign with the
 * CLI's progress bar until every tag is final, then prints the report.
 *
 * The edge agent must know the APs as devices: put `eslDemoDevices()` into its
 * `devices` (same ids and passwords as passed here in `aps`).
 */
export function eslDemoDevices(
  password: (id: string) => string,
): Array<{ id: string; password: string; kind: string }> {
  return [{ id: 'esl-ap-1', password: password('esl-ap-1'), kind: 'esl-ap' }];
}

export interface EslDemoOptions {
  /** http://host:port of the cloud API */
  cloudUrl: string;
  /** mqtt://host:port of the edge agent's broker */
  edgeBrokerUrl: string;
  site: string;
  gateway: string;
  aps: Array<{ id: string; password: string }>;
  tags?: number;
  wakeS?: number;
  /** radio payload rate (default 5 kB/s like OEPL; tests use more to stay short) */
  bytesPerS?: number;
  /** progress bar and report go here (default stderr) */
  out?: NodeJS.WritableStream & { isTTY?: boolean };
  timeoutMs?: number;
}

export interface EslDemo {
  campaignId: string;
  report: CampaignReport;
  world: EslWorld;
  stop(): Promise<void>;
}

const SKUS = [
  { sku: 'APPLE-1KG', name: 'Organic Apples 1kg', barcode: '5901234123457', price: 349 },
  { sku: 'MILK-1L', name: 'Whole Milk 1L', barcode: '4006381333931', price: 119 },
  { sku: 'BREAD-500', name: 'Sourdough Bread', barcode: '8712345678906', price: 289 },
  { sku: 'COFFEE-250', name: 'Espresso Beans 250g', barcode: '7622210449283', price: 599 },
  { sku: 'WATER-6', name: 'Sparkling Water 6x1.5L', barcode: '5449000000996', price: 399 },
  { sku: 'CHOC-100', name: 'Dark Chocolate 100g', barcode: '7610400071680', price: 229 },
];

async function call(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const r = await fetch(`${base}/api/v1${path}`, {
    method,
    ...(body !== undefined
      ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
      : {}),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

export async function startEslDemo(o: EslDemoOptions): Promise<EslDemo> {
  const out = o.out ?? process.stderr;
  const n = o.tags ?? 12;
  const sizes: esl.EslSize[] = ['1.54', '2.9', '4.2'];
  await call(o.cloudUrl, 'PUT', '/prices/templates/4.2', { code: 'qr' });
  await call(o.cloudUrl, 'PUT', '/prices/templates/2.9', { code: 'barcode' });
  await call(o.cloudUrl, 'PUT', '/prices/templates/1.54', { code: 'barcode' });
  for (const s of SKUS)
    await call(o.cloudUrl, 'PUT', `/prices/skus/${s.sku}`, { name: s.name, barcode: s.barcode });
  // Opening prices without a campaign (the tags are new), then link the tags.
  await call(o.cloudUrl, 'POST', `/prices/sites/${o.site}/prices`, {
    items: SKUS.map((s) => ({ sku: s.sku, priceCents: s.price })),
    campaign: false,
  });
  const clock = new SimClock(Date.now());
  const world = new EslWorld({
    brokerUrl: o.edgeBrokerUrl,
    aps: o.aps,
    clock,
    seed: 42,
    ...(o.bytesPerS ? { bytesPerS: o.bytesPerS } : {}),
  });
  for (let i = 0; i < n; i++) {
    const mac = `DE40000000${String(i).padStart(6, '0')}`;
    const size = sizes[i % 3]!;
    const bpp = (i % 4 === 3 ? 2 : 1) as esl.EslBpp;
    const ap = o.aps[i % o.aps.length]!.id;
    await call(o.cloudUrl, 'PUT', `/esl/tags/${mac}`, {
      site: o.site,
      gateway: o.gateway,
      ap,
      sku: SKUS[i % SKUS.length]!.sku,
      size,
      bpp,
    });
    world.addTag({ mac, ap, size, bpp, intervalS: o.wakeS ?? 10 });
  }
  await world.start();
  const runner = world.runRealtime();
  // The morning price change: four SKUs change, their tags get a campaign.
  const r = (await call(o.cloudUrl, 'POST', `/prices/sites/${o.site}/prices`, {
    items: SKUS.slice(0, 4).map((s, i) => ({ sku: s.sku, priceCents: s.price - 20 - i * 10 })),
  })) as { campaignId: string | null };
  if (!r.campaignId) throw new Error('the price change produced no campaign');
  out.write(`ESL demo: price campaign ${r.campaignId} for ${n} tags (tags wake every ${o.wakeS ?? 10} s)\n`);
  const report = await followCampaign(o.cloudUrl, r.campaignId, { out, timeoutMs: o.timeoutMs ?? 120_000 });
  out.write(`${formatReport(report)}\n`);
  return {
    campaignId: r.campaignId,
    report,
    world,
    stop: async () => {
      await runner.stop();
      await world.close();
    },
  };
}
