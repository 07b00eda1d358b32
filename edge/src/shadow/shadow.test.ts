import {
  type CommandEnvelope,
  type DeviceResult,
  fleet,
  newId,
  type UnsequencedEvent,
} from '@storelink/protocols';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createFakeStore } from '../test-support/fake-store.ts';
import { gatewayShadowKeys } from './wiring.ts';
import { ShadowAgent } from './index.ts';

/**
 * The edge side of shadows: version rule [SHADOW-VERSION-1], gateway keys all or nothing,
 * a device's delta as its own commands [SHADOW-DEVICE-1], deferral while the device is
 * offline [SHADOW-DEVICE-2]. The device here is a scripted responder on the agent's
 * publish seam; the real simulated devices over MQTT are in test/e2e/fleet-shadows-rollouts.
 */
const silent = pino({ level: 'silent' });

type Responder = (type: string, payload: unknown) => DeviceResult | string | undefined;

function setup(opts: { respond?: Responder; online?: Set<string>; kv?: Map<string, string> } = {}) {
  const store = createFakeStore(Date.now, opts.kv ?? new Map());
  const reports: fleet.ShadowReported[] = [];
  const badResults: Array<{ device: string; topic: string; code: string }> = [];
  const toDevice: Array<{ device: string; type: string; payload: unknown }> = [];
  const online = opts.online ?? new Set(['fr-1']);
  const logger = pino({ level: 'silent' });
  // The responder answers through the agent, once it exists.
  const agent: ShadowAgent = new ShadowAgent({
    site: 's',
    gateway: 'gw',
    now: Date.now,
    kv: store.kv,
    logger: silent,
    append: async (ev: UnsequencedEvent) => {
      reports.push(ev.payload as fleet.ShadowReported);
    },
    publishToDevice: async (topic, json) => {
      const [, device, , type] = topic.split('/');
      const cmd = JSON.parse(json) as { id: string; payload: unknown };
      toDevice.push({ device: device!, type: type!, payload: cmd.payload });
      const answer = opts.respond?.(type!, cmd.payload);
      if (answer) {
        const bytes = Buffer.from(typeof answer === 'string' ? answer : JSON.stringify(answer));
        setImmediate(() => agent.deviceResult(device!, cmd.id, bytes, () => undefined));
      }
    },
    knownDevice: (id) => id.startsWith('fr-'),
    deviceOnline: (id) => online.has(id),
    settleMs: 0,
    gatewayKeys: gatewayShadowKeys(logger),
    onBadResult: (device, topic, e) => badResults.push({ device, topic, code: e.code }),
    deviceTimeoutMs: 2000,
    firmwareTimeoutMs: 2000,
  });
  const delta = (p: fleet.ShadowDelta) =>
    agent.execute({
      v: 1,
      id: newId(),
      type: fleet.SHADOW_DELTA,
      target: {},
      issuedAt: Date.now(),
      expiresAt: Date.now() + 60_000,
      payload: p,
      sig: 'x',
    } as CommandEnvelope);
  return { agent, reports, toDevice, online, logger, delta, badResults, kv: opts.kv };
}

const image = (version: string) => ({ version, url: 'http://fw/x.bin', sha256: 'a'.repeat(64), size: 10 });

/** A fridge that takes any config and installs any image (or fails to boot it). */
function fridge(state: { config: Record<string, unknown>; fw: string; bootFails?: boolean }): Responder {
  return (type, payload) => {
    if (type === 'device.config') {
      const { config } = payload as { config: Record<string, unknown> };
      const previous = Object.fromEntries(Object.keys(config).map((k) => [k, state.config[k]]));
      Object.assign(state.config, config);
      return { status: 'ok', result: { applied: config, previous } };
    }
    if (type === 'firmware.update') {
      const { version } = payload as { version: string };
      if (state.bootFails)
        return {
          status: 'error',
          code: 'BOOT_FAILED',
          message: 'no boot',
          result: { version: state.fw, reverted: true },
        };
      const previousVersion = state.fw;
      state.fw = version;
      return { status: 'ok', result: { version, previousVersion } };
    }
    return undefined;
  };
}

describe('gateway shadow', () => {
  it('applies the known keys, reports them with their previous values, and refuses a stale version', async () => {
    const { delta, reports, logger } = setup();
    expect(await delta({ version: 1, desired: { logLevel: 'warn', labels: { zone: 'n' } } })).toEqual({
      version: 1,
      applied: ['logLevel', 'labels'],
    });
    expect(logger.level).toBe('warn');
    expect(reports.at(-1)).toMatchObject({
      version: 1,
      status: 'applied',
      reported: { logLevel: 'warn', labels: { zone: 'n' } },
      previous: { logLevel: 'silent', labels: {} },
    });
    // [SHADOW-VERSION-1] the same version again is refused and changes nothing.
    await expect(delta({ version: 1, desired: { logLevel: 'debug' } })).rejects.toMatchObject({
      code: 'EDGE_ERR_SHADOW_STALE',
    });
    expect(logger.level).toBe('warn');
    // Only the keys that differ from reported are set.
    expect(await delta({ version: 3, desired: { logLevel: 'warn', labels: { zone: 's' } } })).toEqual({
      version: 3,
      applied: ['labels'],
    });
    // An older version arriving after a newer one (reordered redelivery) is refused too.
    await expect(delta({ version: 2, desired: { logLevel: 'debug' } })).rejects.toMatchObject({
      code: 'EDGE_ERR_SHADOW_STALE',
    });
    expect(logger.level).toBe('warn');
  });

  it('refuses the whole version when one key is unknown or invalid (nothing applied)', async () => {
    const { delta, reports, logger } = setup();
    await expect(delta({ version: 1, desired: { logLevel: 'warn', colour: 'red' } })).rejects.toMatchObject({
      code: 'EDGE_ERR_SHADOW_KEY',
    });
    await expect(delta({ version: 1, desired: { logLevel: 'loud' } })).rejects.toMatchObject({
      code: 'EDGE_ERR_SHADOW_KEY',
    });
    expect(logger.level).toBe('silent');
    expect(reports).toHaveLength(0);
    // A refused version was not applied: the same version, corrected, applies.
    await delta({ version: 1, desired: { logLevel: 'warn' } });
    expect(logger.level).toBe('warn');
  });
});

describe('device shadow', () => {
  it('sends the config keys as device.config and the image as firmware.update, and reports both', async () => {
    const dev = { config: { intervalMs: 5000, setpointC: 4 }, fw: '1.0.0' };
    const { delta, reports, toDevice, agent } = setup({ respond: fridge(dev) });
    await delta({ device: 'fr-1', version: 1, desired: { intervalMs: 1000, firmware: image('1.1.0') } });
    expect(toDevice.map((c) => [c.type, c.payload])).toEqual([
      ['device.config', { config: { intervalMs: 1000 } }],
      ['firmware.update', image('1.1.0')],
    ]);
    expect(reports.at(-1)).toMatchObject({
      device: 'fr-1',
      version: 1,
      status: 'applied',
      reported: { intervalMs: 1000, firmware: { version: '1.1.0' } },
      previous: { intervalMs: 5000, firmware: { version: '1.0.0' } },
      applied: ['intervalMs', 'firmware'],
    });
    expect(await agent.state('fr-1')).toMatchObject({ appliedVersion: 1, seenVersion: 1 });
    // Version 2 with the same image and config: nothing to send, applied at once.
    await delta({ device: 'fr-1', version: 2, desired: { intervalMs: 1000, firmware: image('1.1.0') } });
    expect(toDevice).toHaveLength(2);
    expect(reports.at(-1)).toMatchObject({ version: 2, status: 'applied', applied: [] });
  });

  it('a boot failure fails the version, reports the reverted version, and allows a retry of it only', async () => {
    const dev = { config: {}, fw: '1.0.0', bootFails: true };
    const { delta, reports, agent } = setup({ respond: fridge(dev) });
    await expect(
      delta({ device: 'fr-1', version: 1, desired: { firmware: image('2.0.0') } }),
    ).rejects.toMatchObject({
      code: 'EDGE_ERR_SHADOW_APPLY',
      message: expect.stringContaining('BOOT_FAILED'),
    });
    expect(reports.at(-1)).toMatchObject({
      status: 'failed',
      code: 'BOOT_FAILED',
      reported: { firmware: { version: '1.0.0' } },
    });
    expect(await agent.state('fr-1')).toMatchObject({ appliedVersion: 0, seenVersion: 1 });
    dev.bootFails = false;
    await delta({ device: 'fr-1', version: 1, desired: { firmware: image('2.0.0') } });
    expect(dev.fw).toBe('2.0.0');
    await expect(
      delta({ device: 'fr-1', version: 1, desired: { firmware: image('1.0.0') } }),
    ).rejects.toMatchObject({
      code: 'EDGE_ERR_SHADOW_STALE',
    });
  });

  it('defers a version while the device is offline and applies it when the device connects', async () => {
    const dev = { config: { intervalMs: 5000 }, fw: '1.0.0' };
    const online = new Set<string>();
    const kv = new Map<string, string>();
    const { delta, reports, toDevice, agent } = setup({ respond: fridge(dev), online, kv });
    expect(await delta({ device: 'fr-2', version: 4, desired: { intervalMs: 250 } })).toEqual({
      version: 4,
      deferred: true,
    });
    expect(toDevice).toHaveLength(0);
    expect(reports).toHaveLength(0);
    // An older copy arriving meanwhile is stale: version 4 is the one waiting.
    await expect(delta({ device: 'fr-2', version: 3, desired: { intervalMs: 9 } })).rejects.toMatchObject({
      code: 'EDGE_ERR_SHADOW_STALE',
    });

    // The agent restarts (same kv) before the device comes back.
    agent.close();
    const again = setup({ respond: fridge(dev), online, kv });
    online.add('fr-2');
    again.agent.deviceOnline('fr-2');
    await waitUntil(() => again.reports.length > 0);
    expect(again.reports[0]).toMatchObject({
      device: 'fr-2',
      version: 4,
      status: 'applied',
      reported: { intervalMs: 250 },
    });
    expect(dev.config.intervalMs).toBe(250);
    expect(await again.agent.state('fr-2')).toMatchObject({ appliedVersion: 4 });
    expect((await again.agent.state('fr-2')).pending).toBeUndefined();
  });

  it('a malformed device answer fails the version, is counted and told to the device', async () => {
    const { delta, reports, badResults } = setup({ respond: () => '{"status":"maybe"}' });
    await expect(delta({ device: 'fr-1', version: 1, desired: { intervalMs: 1000 } })).rejects.toMatchObject({
      code: 'EDGE_ERR_SHADOW_APPLY',
    });
    expect(badResults).toEqual([
      { device: 'fr-1', topic: expect.stringMatching(/^dev\/fr-1\/res\//), code: 'PROTO_ERR_SCHEMA' },
    ]);
    expect(reports.at(-1)).toMatchObject({ status: 'failed', code: 'BAD_RESULT' });
  });

  it('refuses a device this gateway does not have, and a malformed image, before acting', async () => {
    const { delta, toDevice } = setup({ respond: fridge({ config: {}, fw: '1' }) });
    await expect(delta({ device: 'cam-1', version: 1, desired: { intervalMs: 1 } })).rejects.toMatchObject({
      code: 'EDGE_ERR_SHADOW_KEY',
    });
    await expect(
      delta({
        device: 'fr-1',
        version: 1,
        desired: { firmware: { version: '2', url: 'file:///etc/passwd' } },
      }),
    ).rejects.toMatchObject({ code: 'EDGE_ERR_SHADOW_KEY' });
    await expect(delta({ device: 'fr-1', version: 0, desired: {} } as never)).rejects.toMatchObject({
      code: 'PROTO_ERR_SCHEMA',
    });
    expect(toDevice).toHaveLength(0);
  });
});

async function waitUntil(fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}
