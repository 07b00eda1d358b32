import {
  type CommandEnvelope,
  generateSigningKeys,
  loadPrivateKey,
  newId,
  verifyCommand,
} from '@storelink/protocols';
import type { KeyObject } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandService } from '../commands/service.ts';
import { createCloudMetrics } from '../metrics.ts';
import { hashPassword } from '../passwords.ts';
import { openStore } from '../store/index.ts';
import type { CloudStore } from '../store/store.ts';
import { silentLogger } from '../test-support.ts';
import { batchOf, commandResultEvent, presenceEvent, telemetryRun } from '../testing.ts';
import { build } from './app.ts';

/** The API through fastify's inject(): real store, real signing; the MQTT side is a recorder. */

let app: FastifyInstance;
let store: CloudStore;
const published: { topic: string; payload: string }[] = [];
const transport = {
  connected: true,
  publish: async (topic: string, payload: string) => {
    published.push({ topic, payload });
  },
  close: async () => undefined,
};
const keys = generateSigningKeys();
let privateKey: KeyObject;
const NOW = 1_763_900_000_000;
const GW = { gateway: 'gw-h', site: 'site-h' };

beforeAll(async () => {
  store = await openStore({ kind: 'pglite' });
  privateKey = loadPrivateKey(keys.privateKeyPem);
  const metrics = createCloudMetrics();
  const commands = new CommandService(transport, {
    store,
    privateKey,
    defaultTtlMs: 60_000,
    metrics,
    logger: silentLogger(),
    now: () => NOW,
  });
  app = await build({
    context: {
      store,
      sendCommand: (c) => commands.send(c),
      metrics,
      hashPassword,
      readiness: async () => ({ broker: transport.connected }),
      now: () => NOW,
    },
  });
});

afterAll(async () => {
  await app?.close();
  await store?.close();
});

const get = (url: string) => app.inject({ method: 'GET', url });
const post = (url: string, payload: unknown) =>
  app.inject({ method: 'POST', url, payload: payload as object });

describe('HTTP API', () => {
  it('registers a gateway (409 on a second time) and lists it with its presence', async () => {
    const r = await post('/api/v1/gateways', {
      id: GW.gateway,
      site: GW.site,
      name: 'Front',
      password: 'pw-1',
    });
    expect(r.statusCode).toBe(201);
    expect(r.json()).toMatchObject({ id: GW.gateway, site: GW.site, name: 'Front', hasPassword: true });
    expect(r.json()).not.toHaveProperty('password');
    const again = await post('/api/v1/gateways', { id: GW.gateway, site: GW.site, password: 'x' });
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ code: 'CLOUD_ERR_CONFLICT' });
    expect((await store.getGatewayCredentials(GW.gateway))?.passwordHash).toMatch(/^scrypt\$/);
    const list = await get('/api/v1/gateways');
    expect(list.json().items.map((g: { id: string }) => g.id)).toEqual([GW.gateway]);
    expect(list.json().items[0].presence.state).toBe('unknown');
  });

  it('answers errors as {code, message, fix} with the catalogue status', async () => {
    const missing = await get('/api/v1/gateways/nope');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toEqual({
      code: 'CLOUD_ERR_NOT_FOUND',
      message: 'gateway "nope" not found',
      fix: expect.any(String),
    });
    const bad = await post('/api/v1/gateways', { id: 'bad id', site: 's', password: 'p', colour: 'red' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('CLOUD_ERR_BAD_REQUEST');
    expect(bad.json().message).toContain('body/id must match pattern');
    expect(bad.json().message).toContain('"colour"');
    const route = await get('/api/v1/nothing-here');
    expect(route.statusCode).toBe(404);
    expect(route.json().code).toBe('CLOUD_ERR_NOT_FOUND');
    const json = await app.inject({
      method: 'POST',
      url: '/api/v1/gateways',
      payload: '{ nope',
      headers: { 'content-type': 'application/json' },
    });
    expect(json.statusCode).toBe(400);
    expect(json.json().code).toBe('CLOUD_ERR_BAD_REQUEST');
  });

  it('serves gateway detail with lanes, devices, events in seq order, counts and gaps', async () => {
    const epoch = newId();
    await store.ingestBatch(
      batchOf(GW, epoch, [presenceEvent(GW, 1, 'vend-1', true), ...telemetryRun(GW, 1, 5, 'fridge-1')], {
        tx: 1,
      }),
      NOW,
    );
    await store.ingestBatch(
      batchOf(GW, epoch, telemetryRun(GW, 9, 2, 'fridge-1'), { telemetry: 9 }),
      NOW + 1,
    );
    const detail = (await get(`/api/v1/gateways/${GW.gateway}`)).json();
    expect(detail.lanes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ lane: 'telemetry', stored: 7, acked: 10, gaps: 1, gapSeqs: 3 }),
        expect.objectContaining({ lane: 'event', stored: 1, acked: 1 }),
        expect.objectContaining({ lane: 'tx', stored: 0, acked: 0 }),
      ]),
    );
    const devs = (await get(`/api/v1/gateways/${GW.gateway}/devices`)).json().items;
    expect(devs.map((d: { id: string }) => d.id)).toEqual(['fridge-1', 'vend-1']);
    const online = (await get('/api/v1/devices?online=true')).json().items;
    expect(online.map((d: { id: string }) => d.id)).toEqual(['vend-1']);
    const lane = await get(`/api/v1/gateways/${GW.gateway}/events?lane=telemetry&after=3&limit=3`);
    expect(lane.statusCode).toBe(200);
    expect(lane.json().items.map((e: { seq: number }) => e.seq)).toEqual([4, 5, 9]);
    expect(lane.json().items[0]).toMatchObject({
      epoch,
      device: 'fridge-1',
      payload: { metrics: expect.any(Object) },
    });
    const noLane = await get(`/api/v1/gateways/${GW.gateway}/events`);
    expect(noLane.statusCode).toBe(400);
    expect(noLane.json().message).toContain("querystring must have required property 'lane'");
    const recent = (await get(`/api/v1/events?gateway=${GW.gateway}&type=device.online`)).json().items;
    expect(recent).toHaveLength(1);
    const counts = (await get(`/api/v1/gateways/${GW.gateway}/counts`)).json().items;
    expect(counts).toHaveLength(3);
    const gaps = (await get(`/api/v1/gateways/${GW.gateway}/gaps?lane=telemetry`)).json().items;
    expect(gaps).toMatchObject([{ fromSeq: 6, toSeq: 8, reason: 'dropped_at_edge' }]);
  });

  it('POST commands signs, stores and publishes; GET shows the result and round trip', async () => {
    const r = await post(`/api/v1/gateways/${GW.gateway}/commands`, {
      type: 'device.config',
      target: { device: 'fridge-1' },
      payload: { config: { intervalMs: 5000 } },
      ttlMs: 30_000,
    });
    expect(r.statusCode).toBe(202);
    const cmd = r.json();
    expect(cmd).toMatchObject({ status: 'sent', device: 'fridge-1', issuedAt: NOW, expiresAt: NOW + 30_000 });
    const sent = published.find((p) => JSON.parse(p.payload).id === cmd.id)!;
    expect(sent.topic).toBe(`sl/v1/${GW.site}/${GW.gateway}/cmd`);
    const env = JSON.parse(sent.payload) as CommandEnvelope;
    // [CMD-SIG-1] the edge's verification accepts it with the published public key
    expect(verifyCommand(keys.publicKeyPem, sent.topic, env, NOW + 1)).toEqual({ ok: true });
    expect(verifyCommand(keys.publicKeyPem, 'sl/v1/x/other/cmd', env, NOW + 1).ok).toBe(false);

    await store.ingestBatch(
      batchOf(GW, newId(), [
        commandResultEvent(GW, 1, { commandId: cmd.id, status: 'ok', result: { applied: 1 } }),
      ]),
      NOW + 120,
    );
    const done = (await get(`/api/v1/commands/${cmd.id}`)).json();
    expect(done).toMatchObject({ status: 'ok', result: { applied: 1 }, rttMs: 120 });
    const list = (await get(`/api/v1/commands?gateway=${GW.gateway}`)).json().items;
    expect(list.map((c: { id: string }) => c.id)).toContain(cmd.id);
  });

  it('refuses commands that fail the protocol checks, for unknown gateways, or without a broker', async () => {
    const schema = await post(`/api/v1/gateways/${GW.gateway}/commands`, {
      type: 'device.config',
      payload: {},
    });
    expect(schema.statusCode).toBe(400);
    expect(schema.json().code).toBe('PROTO_ERR_SCHEMA');
    const unknown = await post(`/api/v1/gateways/${GW.gateway}/commands`, { type: 'teleport', payload: {} });
    expect(unknown.json()).toMatchObject({ code: 'PROTO_ERR_UNKNOWN_TYPE' });
    const nogw = await post('/api/v1/gateways/ghost/commands', { type: 'ping', payload: {} });
    expect(nogw.statusCode).toBe(404);
    transport.connected = false;
    try {
      const down = await post(`/api/v1/gateways/${GW.gateway}/commands`, { type: 'ping', payload: {} });
      expect(down.statusCode).toBe(503);
      expect(down.json().code).toBe('CLOUD_ERR_COMMAND_PUBLISH');
      const ready = await get('/readyz');
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toEqual({ status: 'not ready', checks: { store: true, broker: false } });
    } finally {
      transport.connected = true;
    }
    expect((await get('/api/v1/commands/01JD0QB4M3Z7Y5X2W1V0T9S8R7')).statusCode).toBe(404);
  });

  it('serves health, readiness, metrics and the OpenAPI document', async () => {
    expect((await get('/healthz')).json()).toEqual({ status: 'ok' });
    expect((await get('/readyz')).json()).toEqual({ status: 'ready', checks: { store: true, broker: true } });
    const m = await get('/metrics');
    expect(m.headers['content-type']).toContain('text/plain');
    expect(m.body).toContain('storelink_cloud_commands_sent_total{type="device.config"} 1');
    const doc = (await get('/docs/json')).json();
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/api/v1/gateways', '/api/v1/gateways/{id}/events', '/api/v1/commands/{id}']),
    );
    expect((await get('/docs')).statusCode).toBeLessThan(400);
  });
});
