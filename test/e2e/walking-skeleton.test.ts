/**
 * End to end on embedded defaults: the real cloud (embedded aedes, PGlite), the real edge
 * agent (LevelDB outbox) and simulated devices, all in this process but talking only
 * over TCP MQTT and HTTP, as the separate processes of `npm start` do.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CloudApp, startCloud } from '@storelink/cloud';
import { type EdgeAgent, startEdge } from '@storelink/edge';
import { startQos1Publishers, startSimFleet, type SimFleet } from '@storelink/firmware-sim';
import {
  type CommandEnvelope,
  gatewayTopic,
  newId,
  signCommand,
  type UnsignedCommand,
} from '@storelink/protocols';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { waitFor } from '../helpers/wait.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SITE = 'e2e-store';
const GW = 'gw-e2e';
const silent = pino({ level: 'silent' });

let dir: string;
let cloud: CloudApp;
let edge: EdgeAgent;
let fleet: SimFleet;
const service = { username: 'svc', password: 'svc-secret' };
const devices = [
  { id: 'fridge-1', kind: 'fridge' as const, password: 'pw-fridge-1', intervalMs: 50 },
  { id: 'vend-1', kind: 'vending' as const, password: 'pw-vend-1', intervalMs: 80 },
];
const loadDevice = { id: 'load-1', password: 'pw-load-1' };

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 20_000) =>
  waitFor(probe, ms, what, 50);

async function api<T>(path: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const r = await fetch(`${cloud.httpUrl}/api/v1${path}`, {
    ...init,
    headers: { 'content-type': 'application/json', ...(init?.headers ?? {}) },
  });
  return { status: r.status, body: (await r.json()) as T };
}

interface CommandRow {
  id: string;
  status: string;
  code: string | null;
  result: unknown;
  rttMs: number | null;
}
interface EventRow {
  seq: number;
  lane: string;
  type: string;
  device: string;
  mid?: string;
  epoch: string;
  payload: Record<string, unknown>;
}

async function laneEvents(lane: string): Promise<EventRow[]> {
  const out: EventRow[] = [];
  let after = 0;
  for (;;) {
    const { body } = await api<{ items: EventRow[] }>(
      `/gateways/${GW}/events?epoch=${edge.store.outbox.epoch}&lane=${lane}&after=${after}&limit=1000`,
    );
    out.push(...body.items);
    if (body.items.length < 1000) return out;
    after = body.items.at(-1)!.seq;
  }
}

async function commandResult(id: string): Promise<CommandRow> {
  return until(`result of command ${id}`, async () => {
    const { body } = await api<CommandRow>(`/commands/${id}`);
    return body.status !== 'sent' && body.status !== 'pending' ? body : undefined;
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'storelink-e2e-'));
  cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
      store: { kind: 'pglite', dir: join(dir, 'cloud', 'pg') },
      signing: { privateKeyFile: join(dir, 'cloud', 'key.pem') },
      service,
      gateways: [{ id: GW, site: SITE, password: 'gw-secret' }],
      log: { level: 'silent' },
    },
    { logger: silent },
  );
  edge = await startEdge(
    {
      site: SITE,
      gateway: GW,
      dataDir: join(dir, 'edge'),
      broker: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { host: '127.0.0.1', port: 0 },
      cloud: { url: cloud.brokerUrl, username: GW, password: 'gw-secret', publicKeyPem: cloud.publicKeyPem },
      devices: [...devices.map(({ id, password }) => ({ id, password })), loadDevice],
      heartbeatMs: 200,
      commandTimeoutMs: 2000,
      log: { level: 'silent' },
    },
    { logger: silent },
  );
  fleet = startSimFleet({ brokerUrl: `mqtt://127.0.0.1:${edge.brokerPort}`, devices });
  await fleet.ready(10_000);
}, 60_000);

afterAll(async () => {
  await fleet?.stop({ force: true });
  await edge?.close();
  await cloud?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('walking skeleton, end to end', () => {
  it('the gateway and its devices show up online in the cloud', async () => {
    await until('gateway online', async () => {
      const { body } = await api<{ presence?: { state?: string }; state?: string }>(`/gateways/${GW}`);
      return JSON.stringify(body).includes('"online"') || undefined;
    });
    const online = await until('both devices online in the cloud', async () => {
      const { body } = await api<{ items: Array<{ id: string; online: boolean }> }>(
        `/gateways/${GW}/devices`,
      );
      const ids = body.items.filter((d) => d.online).map((d) => d.id);
      return devices.every((d) => ids.includes(d.id)) ? ids : undefined;
    });
    expect(online).toEqual(expect.arrayContaining(['fridge-1', 'vend-1']));
  });

  it('every PUBACKed event reaches the cloud store exactly once, in order', async () => {
    const load = startQos1Publishers({
      brokerUrl: `mqtt://127.0.0.1:${edge.brokerPort}`,
      devices: [loadDevice],
      ratePerDevice: 'max',
      inflight: 32,
      maxPerDevice: 2000,
      keepAcked: true,
    });
    await load.done();
    const acked = load.acked();
    await load.close();
    expect(acked.length).toBe(2000);

    // Forgotten at the edge only after the cloud committed: wait until the cloud has
    // acknowledged every telemetry seq handed out so far. (Not "depth 0": the simulated
    // fridge keeps sending, so on a loaded machine a probe rarely sees an empty outbox.)
    const lastSeq = edge.store.outbox.stats().lanes.telemetry.nextSeq - 1;
    await until('outbox acked by the cloud', () =>
      edge.store.outbox.acked('telemetry') >= lastSeq ? true : undefined,
    );
    const telemetry = await laneEvents('telemetry');
    const seqs = telemetry.map((e) => e.seq);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1)); // gap-free, ordered, no duplicates

    const loadMids = telemetry.filter((e) => e.device === loadDevice.id).map((e) => e.mid);
    expect(new Set(loadMids).size).toBe(loadMids.length);
    expect(loadMids.sort()).toEqual([...acked].sort());

    // The simulated fridge and vending machine flow at the same time, each event once.
    for (const d of devices) {
      const mids = telemetry.filter((e) => e.device === d.id).map((e) => e.mid);
      expect(mids.length).toBeGreaterThan(3);
      expect(new Set(mids).size).toBe(mids.length);
    }
  });

  it('a signed command goes down to the device and its result comes back', async () => {
    const { status, body } = await api<CommandRow>(`/gateways/${GW}/commands`, {
      method: 'POST',
      body: JSON.stringify({
        type: 'device.config',
        target: { device: 'fridge-1' },
        payload: { config: { intervalMs: 75 } },
      }),
    });
    expect(status).toBe(202);
    const done = await commandResult(body.id);
    expect(done.status).toBe('ok');
    expect(done.result).toEqual({ applied: { intervalMs: 75 }, previous: { intervalMs: 50 } });
    expect(done.rttMs).toBeGreaterThanOrEqual(0);

    const ping = await api<CommandRow>(`/gateways/${GW}/commands`, {
      method: 'POST',
      body: JSON.stringify({ type: 'ping', payload: { echo: 'hello' } }),
    });
    expect((await commandResult(ping.body.id)).status).toBe('ok');
  });

  describe('commands the edge must refuse', () => {
    const topic = gatewayTopic({ site: SITE, gateway: GW }, 'cmd');
    let client: mqtt.MqttClient;
    const privateKey = () => readFileSync(join(dir, 'cloud', 'key.pem'), 'utf8');

    beforeAll(async () => {
      client = await mqtt.connectAsync(cloud.brokerUrl, {
        ...service,
        clientId: 'e2e-attacker',
        reconnectPeriod: 0,
      });
    });
    afterAll(async () => {
      await client?.endAsync();
    });

    function unsigned(over: Partial<UnsignedCommand> = {}): UnsignedCommand {
      const now = Date.now();
      return {
        v: 1,
        id: newId(),
        type: 'device.config',
        target: { device: 'fridge-1' },
        issuedAt: now,
        expiresAt: now + 30_000,
        payload: { config: { intervalMs: 10 } },
        ...over,
      };
    }

    async function resultEvent(commandId: string) {
      return until(`command.result for ${commandId}`, async () => {
        const { body } = await api<{ items: EventRow[] }>(
          `/events?gateway=${GW}&type=command.result&limit=200`,
        );
        return body.items.find((e) => e.payload.commandId === commandId);
      });
    }

    async function publish(cmd: CommandEnvelope) {
      await client.publishAsync(topic, JSON.stringify(cmd), { qos: 1 });
    }

    it('refuses an expired command and reports why', async () => {
      const now = Date.now();
      const cmd = signCommand(
        privateKey(),
        topic,
        unsigned({ issuedAt: now - 60_000, expiresAt: now - 1000 }),
      );
      await publish(cmd);
      const ev = await resultEvent(cmd.id);
      expect(ev.payload).toMatchObject({ status: 'rejected', code: 'PROTO_ERR_EXPIRED' });
    });

    it('refuses a tampered command and reports why', async () => {
      const cmd = signCommand(privateKey(), topic, unsigned());
      await publish({ ...cmd, payload: { config: { intervalMs: 1 } } });
      const ev = await resultEvent(cmd.id);
      expect(ev.payload).toMatchObject({ status: 'rejected', code: 'PROTO_ERR_BAD_SIGNATURE' });
    });

    it('runs a repeated command once and returns the first result', async () => {
      const cmd = signCommand(
        privateKey(),
        topic,
        unsigned({ type: 'ping', target: {}, payload: { echo: 'x' } }),
      );
      await publish(cmd);
      await resultEvent(cmd.id);
      await publish(cmd);
      const all = await until('the duplicate report', async () => {
        const { body } = await api<{ items: EventRow[] }>(
          `/events?gateway=${GW}&type=command.result&limit=200`,
        );
        const mine = body.items.filter((e) => e.payload.commandId === cmd.id);
        return mine.length >= 2 ? mine : undefined;
      });
      expect(all.map((e) => e.payload.duplicate ?? false).sort()).toEqual([false, true]);
      expect(all.every((e) => e.payload.status === 'ok')).toBe(true);
    });
  });
});
