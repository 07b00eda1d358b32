/**
 * The operations dashboard in a real browser (Debian's chromium, driven by playwright-core):
 * a running store — cloud and edge as separate processes, simulated fridges on the edge
 * broker, one of them warm (compressor failed) — the dashboard shows the gateway online
 * and, by its own polling (no reload), the warm-fridge alert; a registered webhook receives
 * the signed `alert.raised`. A screenshot goes to $STORELINK_SCREENSHOT_DIR (default
 * .ci/out/screenshots/).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startWebhookReceiver, type WebhookReceiver } from '../../cloud/src/fleet/webhooks-receiver.ts';
import { type SimFleet, startSimFleet } from '../../firmware-sim/src/fleet.ts';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ROOT, type Stack, startStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

const CHROMIUM = process.env.STORELINK_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = process.env.STORELINK_SCREENSHOT_DIR ?? join(ROOT, '.ci/out/screenshots');
const SECRET = 'dashboard-test-secret-0123456789';

let stack: Stack;
let sim: SimFleet | undefined;
let browser: Browser | undefined;
let receiver: WebhookReceiver;

const devices = [
  { id: 'fridge-1', password: 'pw-fridge-1' },
  { id: 'fridge-2', password: 'pw-fridge-2' },
];

beforeAll(async () => {
  receiver = await startWebhookReceiver({ secret: SECRET });
  stack = await startStack({ cloudBroker: 'embedded', devices });
  await waitFor(
    async () => {
      const r = await stack.cloudApi(`/api/v1/gateways/${stack.gateway}`);
      return r.ok && ((await r.json()) as { presence: { state: string } }).presence.state === 'online';
    },
    60_000,
    'the gateway online in the cloud',
  );
  const hook = await stack.cloudApi('/api/v1/alerts/webhooks', {
    method: 'POST',
    body: JSON.stringify({ url: receiver.url, secret: SECRET, kinds: ['temperature'] }),
  });
  expect(hook.status).toBe(201);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await sim?.stop({ force: true });
  await stack?.close();
  await receiver?.close();
});

it('shows the fleet, then the warm-fridge alert as it is raised; the webhook gets it signed', async () => {
  const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors: string[] = [];
  page.on('pageerror', (e) => consoleErrors.push(e.message));
  const outside: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(stack.cloudHttp)) outside.push(r.url());
  });
  await page.goto(`${stack.cloudHttp}/dashboard?poll=500`);

  // Fleet: the site "map" and the gateway row, online.
  await page.waitForSelector(
    `#site-map .site[data-site="${stack.site}"] .tile.online[data-gateway="${stack.gateway}"]`,
    {
      timeout: 30_000,
    },
  );
  const row = page.locator(`#gateway-rows tr[data-gateway="${stack.gateway}"]`);
  await expect.poll(() => row.locator('td').nth(2).textContent(), { timeout: 30_000 }).toBe('online');
  expect(await page.locator('#alert-count').textContent()).toBe('0');

  // Now the fridges come: fridge-1 with a failed compressor at 14 °C.
  sim = startSimFleet({
    brokerUrl: stack.edgeBrokerUrl,
    devices: [
      { ...devices[0]!, kind: 'fridge', intervalMs: 500, options: { initialTempC: 14, faults: ['warm'] } },
      { ...devices[1]!, kind: 'fridge', intervalMs: 500, options: { initialTempC: 4, doorOpensPerHour: 0 } },
    ],
  });
  await sim.ready(30_000);

  // The page polls: the badge and the gateway's detail show the alert without a reload.
  await expect.poll(() => page.locator('#alert-count').textContent(), { timeout: 60_000 }).toBe('1');
  await row.click();
  const detailAlert = page.locator('#gateway-detail tr[data-kind="temperature"]');
  await detailAlert.waitFor({ timeout: 30_000 });
  expect(await detailAlert.textContent()).toContain('fridge-1');
  await page.locator('#gateway-detail table[data-testid="devices"] td', { hasText: 'fridge-2' }).waitFor({
    timeout: 30_000,
  });
  // Presence history [PRESENCE-HIST-1]: the gateway's birth, recorded when it was applied.
  const born = page.locator('#gateway-detail table[data-testid="presence-history"] tr', { hasText: 'birth' });
  await born.first().waitFor({ timeout: 30_000 });
  expect(await born.first().locator('td').nth(1).textContent()).toBe('online');

  expect(await page.locator('#gateway-detail').textContent()).not.toContain('[object');

  mkdirSync(SHOTS, { recursive: true });
  const fleetShot = join(SHOTS, 'dashboard-fleet.png');
  await page.screenshot({ path: fleetShot, fullPage: true });

  // The alerts view with its filters.
  await page.click('a[data-view="alerts"]');
  const alertRow = page.locator('#alert-rows tr[data-kind="temperature"]');
  await alertRow.waitFor({ timeout: 30_000 });
  const text = await alertRow.textContent();
  expect(text).toContain('fridge-1');
  expect(text).toMatch(/above the 8 °C limit/);
  expect(await page.locator('#alert-rows tr[data-kind="temperature"]').count()).toBe(1); // fridge-2 is cold
  await page.screenshot({ path: join(SHOTS, 'dashboard-alerts.png'), fullPage: true });
  process.stderr.write(`dashboard screenshots: ${fleetShot}, ${join(SHOTS, 'dashboard-alerts.png')}\n`);

  // The same alert over the API, and at the webhook receiver, signed [ALERT-HOOK-2].
  const api = (await (await stack.cloudApi('/api/v1/alerts?state=active&kind=temperature')).json()) as {
    items: Array<{ id: string; subject: string; gateway: string }>;
  };
  expect(api.items.map((a) => [a.gateway, a.subject])).toEqual([[stack.gateway, 'fridge-1']]);
  await waitFor(() => receiver.received.length > 0, 30_000, 'the webhook delivery');
  expect(receiver.badSignatures).toBe(0);
  expect(receiver.received[0]).toMatchObject({
    event: 'alert.raised',
    body: { type: 'alert.raised', alert: { id: api.items[0]!.id, kind: 'temperature', subject: 'fridge-1' } },
  });

  // Everything the page loaded came from the cloud itself (no CDN) and it threw nothing.
  expect(outside).toEqual([]);
  expect(consoleErrors).toEqual([]);
}, 240_000);
