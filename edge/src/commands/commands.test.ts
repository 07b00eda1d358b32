import {
  type CommandResult,
  gatewayTopic,
  newId,
  signCommand,
  type UnsignedCommand,
} from '@storelink/protocols';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EdgeAgent } from '../agent.ts';
import { createFakeStore } from '../test-support/fake-store.ts';
import { device, FakeCloud, sleep, startTestEdge, until } from '../test-support/harness.ts';
import { LEDGER_MARGIN_MS } from './index.ts';

let cloud: FakeCloud;
let agent: EdgeAgent | undefined;
let kv: Map<string, string>;
const TOPIC = gatewayTopic({ site: 'store-1', gateway: 'gw-1' }, 'cmd');

beforeEach(async () => {
  cloud = new FakeCloud();
  await cloud.start();
  kv = new Map();
  agent = await startTestEdge(cloud, {}, { store: createFakeStore(Date.now, kv) });
  await until(() => agent!.status().uplink.connected, 3000, 'uplink');
});
afterEach(async () => {
  expect(cloud.invalid).toEqual([]);
  await agent?.close();
  agent = undefined;
  await cloud.close();
});

function cmd(over: Partial<UnsignedCommand> = {}): UnsignedCommand {
  const now = Date.now();
  return {
    v: 1,
    id: newId(),
    type: 'ping',
    target: {},
    issuedAt: now,
    expiresAt: now + 60_000,
    payload: { echo: 'hi' },
    ...over,
  };
}

const signed = (c: UnsignedCommand, topic = TOPIC) => signCommand(cloud.keys.privateKeyPem, topic, c);
const send = (body: unknown) => cloud.command('store-1', 'gw-1', JSON.stringify(body));
const results = (id: string) => (cloud.results as CommandResult[]).filter((r) => r.commandId === id);

async function resultOf(id: string, n = 1): Promise<CommandResult[]> {
  await until(() => results(id).length >= n, 4000, `result(s) for ${id}`);
  return results(id);
}

describe('commands', () => {
  it('executes a gateway ping once; a repeat returns the first result with duplicate:true [CMD-ONCE-1]', async () => {
    const c = signed(cmd());
    await send(c);
    const [first] = await resultOf(c.id);
    expect(first).toMatchObject({
      commandId: c.id,
      type: 'ping',
      status: 'ok',
      result: { echo: 'hi', gateway: 'gw-1' },
    });
    expect(first!.duplicate).toBeUndefined();
    await send(c);
    const both = await resultOf(c.id, 2);
    expect(both[1]).toEqual({ ...first, duplicate: true });
    // The result travelled in the tx lane.
    expect(cloud.events('tx').some((e) => e.type === 'command.result')).toBe(true);

    // Across a restart too: the ledger is durable.
    await agent!.close();
    agent = await startTestEdge(cloud, {}, { store: createFakeStore(Date.now, kv) });
    await until(() => agent!.status().uplink.connected, 3000, 'uplink again');
    await send(c);
    const [, , third] = await resultOf(c.id, 3);
    expect(third).toEqual({ ...first, duplicate: true });
  });

  it('refuses expired, tampered, unknown-type and unknown-device commands, each with its code', async () => {
    const expired = signed(cmd({ issuedAt: Date.now() - 120_000, expiresAt: Date.now() - 60_000 }));
    const tampered = { ...signed(cmd()), payload: { echo: 'changed' } };
    const otherGateway = signed(cmd(), gatewayTopic({ site: 'store-1', gateway: 'gw-2' }, 'cmd'));
    const unknownType = signed(cmd({ type: 'launch.rocket' }));
    const unknownDevice = signed(cmd({ target: { device: 'ghost' } }));
    const badSchema = signed(cmd({ payload: { echo: 42 } }));
    for (const c of [expired, tampered, otherGateway, unknownType, unknownDevice, badSchema]) await send(c);
    const code = async (id: string) => (await resultOf(id))[0]!;
    expect(await code(expired.id)).toMatchObject({ status: 'rejected', code: 'PROTO_ERR_EXPIRED' });
    expect(await code(tampered.id)).toMatchObject({ status: 'rejected', code: 'PROTO_ERR_BAD_SIGNATURE' });
    expect(await code(otherGateway.id)).toMatchObject({
      status: 'rejected',
      code: 'PROTO_ERR_BAD_SIGNATURE',
    });
    expect(await code(unknownType.id)).toMatchObject({ status: 'rejected', code: 'PROTO_ERR_UNKNOWN_TYPE' });
    expect(await code(unknownDevice.id)).toMatchObject({
      status: 'rejected',
      code: 'EDGE_ERR_CMD_UNKNOWN_DEVICE',
    });
    expect(await code(badSchema.id)).toMatchObject({ status: 'rejected', code: 'PROTO_ERR_SCHEMA' });
    // A forged copy never blocks the genuine command with the same id.
    const genuine = signed(cmd({ id: tampered.id }));
    await send(genuine);
    const r = await resultOf(genuine.id, 2);
    expect(r[1]).toMatchObject({ status: 'ok' });
  });

  it('routes a device command without its signature and reports the device answer once', async () => {
    const d = await device(agent!, 'fridge-1');
    const received: Array<{ topic: string; body: Record<string, unknown> }> = [];
    d.on('message', (topic, payload) => {
      const body = JSON.parse(payload.toString());
      received.push({ topic, body });
      void d.publishAsync(
        `dev/fridge-1/res/${body.id}`,
        JSON.stringify({ status: 'ok', result: { applied: body.payload.config } }),
        { qos: 1 },
      );
    });
    await d.subscribeAsync('dev/fridge-1/cmd/#', { qos: 1 });
    const c = signed(
      cmd({
        type: 'device.config',
        target: { device: 'fridge-1' },
        payload: { config: { intervalMs: 5000 } },
      }),
    );
    await send(c);
    const [r] = await resultOf(c.id);
    expect(r).toMatchObject({
      status: 'ok',
      type: 'device.config',
      result: { applied: { intervalMs: 5000 } },
    });
    expect(received).toHaveLength(1);
    expect(received[0]!.topic).toBe('dev/fridge-1/cmd/device.config');
    expect(received[0]!.body).toEqual({
      id: c.id,
      expiresAt: c.expiresAt,
      payload: { config: { intervalMs: 5000 } },
    });
    // The result event names the device.
    expect(cloud.events('tx').find((e) => (e.payload as CommandResult).commandId === c.id)!.device).toBe(
      'fridge-1',
    );
    await send(c);
    await resultOf(c.id, 2);
    await sleep(50);
    expect(received).toHaveLength(1); // never acted twice
    await d.endAsync();
  });

  it('runs a command once when two copies arrive together', async () => {
    const d = await device(agent!, 'fridge-1');
    let received = 0;
    d.on('message', (_t, payload) => {
      received++;
      const body = JSON.parse(payload.toString());
      setTimeout(() => {
        void d.publishAsync(`dev/fridge-1/res/${body.id}`, JSON.stringify({ status: 'ok' }), { qos: 1 });
      }, 100);
    });
    await d.subscribeAsync('dev/fridge-1/cmd/#', { qos: 1 });
    const c = signed(cmd({ target: { device: 'fridge-1' } }));
    await Promise.all([send(c), send(c)]);
    const r = await resultOf(c.id, 2);
    expect(received).toBe(1);
    expect(r.map((x) => Boolean(x.duplicate)).sort()).toEqual([false, true]);
    expect(r.every((x) => x.status === 'ok')).toBe(true);
    await d.endAsync();
  });

  it('reports a device that does not answer as timeout', async () => {
    const c = signed(
      cmd({ type: 'device.config', target: { device: 'fridge-2' }, payload: { config: { a: 1 } } }),
    );
    await send(c);
    const [r] = await resultOf(c.id);
    expect(r).toMatchObject({ status: 'timeout', code: 'EDGE_ERR_CMD_TIMEOUT' });
    expect(r!.completedAt - r!.receivedAt).toBeGreaterThanOrEqual(450);
  });

  it('reports a command started before a restart as interrupted, and prunes expired ledger entries', async () => {
    await agent!.close();
    const id = newId();
    kv.set(
      `cmd!${id}`,
      JSON.stringify({ state: 'started', expiresAt: Date.now() + 60_000, type: 'device.config' }),
    );
    const old = newId();
    const oldExp = Date.now() - LEDGER_MARGIN_MS - 1000;
    kv.set(`cmd!${old}`, JSON.stringify({ state: 'done', expiresAt: oldExp, type: 'ping', result: {} }));
    kv.set(`cmdexp!${String(oldExp).padStart(15, '0')}!${old}`, '');
    agent = await startTestEdge(cloud, {}, { store: createFakeStore(Date.now, kv) });
    const [r] = await resultOf(id);
    expect(r).toMatchObject({ status: 'error', code: 'EDGE_ERR_CMD_INTERRUPTED' });
    expect(kv.has(`cmd!${old}`)).toBe(false);
    expect(kv.has(`cmd!${id}`)).toBe(true);
  });

  it('ignores garbage on the command topic without crashing', async () => {
    await cloud.command('store-1', 'gw-1', '{nope');
    await send({ id: 'abc', type: 'ping' });
    const [r] = await resultOf('abc');
    expect(r).toMatchObject({ status: 'rejected', code: 'EDGE_ERR_CMD_MALFORMED' });
    const c = signed(cmd());
    await send(c);
    expect((await resultOf(c.id))[0]!.status).toBe('ok');
  });
});
