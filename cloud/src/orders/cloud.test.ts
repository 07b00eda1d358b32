import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CommandEnvelope, gatewayTopic, newId, verifyCommand } from '@storelink/protocols';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpNotify, httpOrderApi, SimBuyer } from '../../../firmware-sim/src/payment/buyer.ts';
import { SimPaymentProvider } from '../../../firmware-sim/src/payment/provider.ts';
import { type CloudApp, startCloud } from '../index.ts';
import { silentLogger, waitFor } from '../test-support.ts';
import { batchOf, laneEvent } from '../testing.ts';

const GW = { gateway: 'vm-1', site: 'mall-1' };
const SECRET = 'cloud-test-hmac-secret';

describe('vending through a running cloud (HTTP + embedded broker + ingest)', () => {
  let dir: string;
  let cloud: CloudApp;
  let gw: mqtt.MqttClient;
  const received: CommandEnvelope[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'storelink-vending-'));
    cloud = await startCloud(
      {
        dataDir: dir,
        http: { host: '127.0.0.1', port: 0 },
        broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
        gateways: [{ id: GW.gateway, site: GW.site, password: 'gw-secret' }],
        log: { level: 'silent' },
        payments: {
          providers: { wechat: { algorithm: 'hmac-sha256', key: SECRET } },
          sweepIntervalMs: 0,
        },
      },
      { logger: silentLogger() },
    );
    gw = await mqtt.connectAsync(cloud.brokerUrl, {
      clientId: GW.gateway,
      username: GW.gateway,
      password: 'gw-secret',
      protocolVersion: 4,
    });
    gw.on('message', (_t, p) => received.push(JSON.parse(p.toString()) as CommandEnvelope));
    await gw.subscribeAsync(gatewayTopic(GW, 'cmd'), { qos: 1 });
  });

  afterAll(async () => {
    await gw?.endAsync();
    await cloud?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('buyer creates and pays; the signed notification yields one vend.dispense on MQTT; vend.result settles it', async () => {
    const provider = new SimPaymentProvider({
      algorithm: 'hmac-sha256',
      key: SECRET,
      now: Date.now,
      deliver: httpNotify(cloud.httpUrl),
      faults: { duplicate: 1 },
    });
    const buyer = new SimBuyer(httpOrderApi(cloud.httpUrl), provider);
    const { order, payment } = await buyer.buy({ gateway: GW.gateway, slot: 7, amountCents: 450 });
    expect(payment?.ok).toBe(true);
    await provider.tick(Date.now());
    await provider.tick(Date.now() + 10_000); // the duplicate copy
    expect(provider.trades.get(order.id)!.acknowledged).toBe(true);
    await waitFor(() => received.length > 0, 'the vend.dispense command');
    expect(received).toHaveLength(1);
    const cmd = received[0]!;
    expect(cmd).toMatchObject({
      type: 'vend.dispense',
      payload: { orderId: order.id, slot: 7, priceCents: 450 },
    });
    expect(verifyCommand(cloud.publicKeyPem, gatewayTopic(GW, 'cmd'), cmd, Date.now()).ok).toBe(true);

    const ev = laneEvent(
      GW,
      'tx',
      1,
      'vend.result',
      { orderId: order.id, outcome: 'dispensed', slot: 7 },
      {
        device: GW.gateway,
        at: Date.now(),
      },
    );
    await gw.publishAsync(
      gatewayTopic(GW, 'up'),
      JSON.stringify(batchOf(GW, newId(), [ev], {}, Date.now())),
      { qos: 1 },
    );
    const get = async () =>
      (await (await fetch(`${cloud.httpUrl}/api/v1/orders/${order.id}`)).json()) as { state: string };
    await waitFor(async () => (await get()).state === 'dispensed', 'order dispensed');
    const metrics = await (await fetch(`${cloud.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(
      /storelink_cloud_payment_notifications_total\{provider="wechat",outcome="paid"\} 1/,
    );
  });
});
