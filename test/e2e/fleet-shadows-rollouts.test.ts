/**
 * Fleet shadows and staged rollouts end to end (docs/fleet-shadows-rollouts.md): the real
 * cloud (embedded broker, PGlite), two real edge agents (LevelDB) and simulated fridges
 * that fetch firmware images over HTTP — all over TCP, in this process.
 *
 * - [SHADOW-REDELIVER-1] a shadow change made while an edge is stopped reaches it (and
 *   its device) when it returns;
 * - [SHADOW-VERSION-1] a change against an old version is refused (409), and an older
 *   shadow.delta replayed to the edge is refused as stale;
 * - [ROLLOUT-HALT-1][ROLLOUT-BACK-1] a firmware rollout halts at its error threshold and
 *   rolls the changed devices back to the previous image;
 * - [ROLLOUT-WAVE-1][ROLLOUT-APPROVE-1] a config rollout waits for approval between waves.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type CloudApp, startCloud } from '@storelink/cloud';
import { type EdgeAgent, startEdge } from '@storelink/edge';
import { SimFridge } from '@storelink/firmware-sim';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait.ts';

const quiet = () => pino({ level: 'silent' }, new Writable({ write: (_c, _e, cb) => cb() }));
const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 30_000) =>
  waitFor(probe, ms, what, 50);

const GWS = [
  { id: 'gw-a', site: 'site-1', password: 'pw-gw-a', devices: ['fa-1', 'fa-2'] },
  { id: 'gw-b', site: 'site-2', password: 'pw-gw-b', devices: ['fb-1', 'fb-2'] },
] as const;
type GwId = (typeof GWS)[number]['id'];

const IMAGES = {
  '1.0.0': Buffer.alloc(4096, 0x10),
  '1.1.0': Buffer.from(Array.from({ length: 6000 }, (_, i) => (i * 7) & 0xff)),
};
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
let cloud: CloudApp;
let fwServer: Server;
let fwBase: string;
const edges = new Map<GwId, EdgeAgent>();
const ports = new Map<GwId, number>();
const sims = new Map<string, SimFridge>();

async function api<T>(
  path: string,
  init?: RequestInit & { json?: unknown },
): Promise<{ status: number; body: T }> {
  const r = await fetch(`${cloud.httpUrl}/api/v1${path}`, {
    ...init,
    ...(init?.json !== undefined ? { body: JSON.stringify(init.json) } : {}),
    headers: init?.json !== undefined ? { 'content-type': 'application/json' } : {},
  });
  return { status: r.status, body: (await r.json()) as T };
}

function startGatewayEdge(id: GwId): Promise<EdgeAgent> {
  const g = GWS.find((x) => x.id === id)!;
  return startEdge(
    {
      site: g.site,
      gateway: g.id,
      dataDir: join(dir, g.id),
      broker: { host: '127.0.0.1', port: ports.get(id)!, wsPort: null },
      http: { host: '127.0.0.1', port: 0 },
      cloud: {
        url: cloud.brokerUrl,
        username: g.id,
        password: g.password,
        publicKeyPem: cloud.publicKeyPem,
        reconnectMinMs: 100,
        reconnectMaxMs: 500,
      },
      devices: g.devices.map((d) => ({ id: d, password: `pw-${d}` })),
      commandTimeoutMs: 5000,
      log: { level: 'silent' },
    },
    { logger: quiet() },
  );
}

const metric = (registry: { getSingleMetricAsString(name: string): Promise<string> }, name: string) =>
  registry.getSingleMetricAsString(name);

/** Waits for a rollout state; on timeout the error shows the rollout and its targets. */
async function rolloutIn(id: string, state: string): Promise<Rollout> {
  try {
    return await until(`rollout ${id} ${state}`, async () => {
      const r = await api<Rollout>(`/rollouts/${id}`);
      return r.body.state === state ? r.body : undefined;
    });
  } catch (e) {
    const r = (await api<Rollout>(`/rollouts/${id}`)).body;
    const t = (await api<unknown>(`/rollouts/${id}/targets`)).body;
    throw new Error(`${(e as Error).message}; rollout ${JSON.stringify(r)}; targets ${JSON.stringify(t)}`);
  }
}

interface Shadow {
  desiredVersion: number;
  reportedVersion: number;
  status: string;
  desired: Record<string, unknown>;
  reported: Record<string, unknown>;
  error: { code: string; message: string } | null;
}
interface Rollout {
  id: string;
  state: string;
  currentWave: number;
  reason: string | null;
  counts: Record<string, number>;
  waveCounts: Array<{ total: number; counts: Record<string, number> }>;
}
interface Target {
  gateway: string;
  device: string | null;
  wave: number;
  state: string;
  previous: Record<string, unknown> | null;
  code: string | null;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'storelink-fleet-shadows-'));
  fwServer = createServer((req, res) => {
    const v = /^\/fw\/(.+)\.bin$/.exec(req.url ?? '')?.[1] as keyof typeof IMAGES | undefined;
    const img = v ? IMAGES[v] : undefined;
    if (!img) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(img);
  });
  await new Promise<void>((r) => fwServer.listen(0, '127.0.0.1', r));
  const a = fwServer.address();
  fwBase = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/fw`;

  cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
      store: { kind: 'pglite', dir: join(dir, 'cloud', 'pg') },
      signing: { privateKeyFile: join(dir, 'cloud', 'key.pem') },
      service: { username: 'svc', password: 'svc-secret' },
      gateways: GWS.map((g) => ({ id: g.id, site: g.site, password: g.password })),
      log: { level: 'silent' },
    },
    { logger: quiet() },
  );
  const [pa, pb] = await freePorts(2);
  ports.set('gw-a', pa!);
  ports.set('gw-b', pb!);
  for (const g of GWS) edges.set(g.id, await startGatewayEdge(g.id));
  for (const g of GWS) {
    for (const d of g.devices) {
      const sim = new SimFridge({
        id: d,
        password: `pw-${d}`,
        brokerUrl: `mqtt://127.0.0.1:${ports.get(g.id)}`,
        intervalMs: 60_000,
        reconnectPeriodMs: 200,
        firmwareVersion: '1.0.0',
        // fa-2 cannot boot 1.1.0: its watchdog reverts it (the rollout's failure).
        firmwareFault: d === 'fa-2' ? 'boot_failure' : null,
      }).start();
      sims.set(d, sim);
    }
  }
  await Promise.all([...sims.values()].map((s) => s.ready(15_000)));
  // The cloud knows each device once its device.online event is ingested.
  await until('every device known to the cloud', async () => {
    const known = new Set((await cloud.store.listDevices()).map((d) => d.id));
    return [...sims.keys()].every((d) => known.has(d));
  });
}, 90_000);

afterAll(async () => {
  await Promise.all([...sims.values()].map((s) => s.stop({ force: true })));
  for (const e of edges.values()) await e.close();
  await cloud?.close();
  await new Promise((r) => fwServer?.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe('shadows', () => {
  it('a change made while the edge is stopped reaches the gateway and its device when it returns', async () => {
    await edges.get('gw-b')!.close();
    edges.delete('gw-b');
    await until('gw-b offline in the cloud', async () =>
      (await cloud.store.getGateway('gw-b'))?.presence.state === 'offline' ? true : undefined,
    );

    const gw = await api<Shadow>('/shadows/gw-b', {
      method: 'PATCH',
      json: { desired: { labels: { zone: 'north' }, logLevel: 'fatal' }, version: 0 },
    });
    expect(gw.status).toBe(200);
    expect(gw.body).toMatchObject({ desiredVersion: 1, reportedVersion: 0, status: 'pending' });
    const dev = await api<Shadow>('/shadows/gw-b/devices/fb-1', {
      method: 'PATCH',
      json: { desired: { intervalMs: 30_000, setpointC: 3 }, version: 0 },
    });
    expect(dev.status).toBe(200);
    expect(dev.body.status).toBe('pending');
    expect(sims.get('fb-1')!.config()).toMatchObject({ intervalMs: 60_000 });

    edges.set('gw-b', await startGatewayEdge('gw-b'));

    const gwDone = await until('gw-b shadow in sync', async () => {
      const r = await api<Shadow>('/shadows/gw-b');
      return r.body.status === 'in_sync' ? r.body : undefined;
    });
    expect(gwDone).toMatchObject({
      desiredVersion: 1,
      reportedVersion: 1,
      reported: { labels: { zone: 'north' }, logLevel: 'fatal' },
    });
    const devDone = await until('fb-1 shadow in sync', async () => {
      const r = await api<Shadow>('/shadows/gw-b/devices/fb-1');
      return r.body.status === 'in_sync' ? r.body : undefined;
    });
    expect(devDone.reported).toMatchObject({ intervalMs: 30_000, setpointC: 3 });
    // The device itself runs the desired configuration.
    expect(sims.get('fb-1')!.config()).toMatchObject({ intervalMs: 30_000, setpointC: 3 });
  }, 90_000);

  it('refuses a change made against an old version, and the edge refuses an older delta as stale', async () => {
    const stale = await api<{ code: string; message: string }>('/shadows/gw-b', {
      method: 'PATCH',
      json: { desired: { logLevel: 'error' }, version: 0 },
    });
    expect(stale.status).toBe(409);
    expect(stale.body.code).toBe('CLOUD_ERR_SHADOW_VERSION');
    expect(await metric(cloud.metrics.registry, 'storelink_cloud_shadow_refused_total')).toMatch(
      /\{code="CLOUD_ERR_SHADOW_VERSION"\} 1\b/,
    );
    expect((await api<Shadow>('/shadows/gw-b')).body.desiredVersion).toBe(1);
    // Malformed changes are refused with a code and spend no version.
    for (const json of [
      { desired: { '9lives': 1 }, version: 1 },
      { desired: { logLevel: 'warn' } },
      { desired: { logLevel: 'warn' }, version: 1, extra: true },
    ]) {
      const bad = await api<{ code: string }>('/shadows/gw-b', { method: 'PATCH', json });
      expect(bad.status, JSON.stringify(json)).toBe(400);
      expect(bad.body.code).toBe('CLOUD_ERR_BAD_REQUEST');
    }
    expect((await api<Shadow>('/shadows/gw-b')).body.desiredVersion).toBe(1);

    // A copy of version 1 (as a late redelivery would be) after version 2 applied.
    const v2 = await api<Shadow>('/shadows/gw-b', {
      method: 'PATCH',
      json: { desired: { labels: { zone: 'south' } }, version: 1 },
    });
    expect(v2.body.desiredVersion).toBe(2);
    await until('gw-b at version 2', async () => {
      const r = await api<Shadow>('/shadows/gw-b');
      return r.body.reportedVersion === 2 ? true : undefined;
    });
    const replay = await cloud.sendCommand({
      gateway: 'gw-b',
      type: 'shadow.delta',
      payload: { version: 1, desired: { labels: { zone: 'north' }, logLevel: 'fatal' } },
    });
    const res = await until('the stale delta result', async () => {
      const c = await cloud.store.getCommand(replay.id);
      return c && c.status !== 'sent' && c.status !== 'pending' ? c : undefined;
    });
    expect(res.status).toBe('rejected');
    expect(res.code).toBe('EDGE_ERR_SHADOW_STALE');
    expect(await metric(edges.get('gw-b')!.metrics.registry, 'storelink_edge_shadow_applies_total')).toMatch(
      /\{target="gateway",status="stale"\} 1\b/,
    );
    const after = (await api<Shadow>('/shadows/gw-b')).body;
    expect(after).toMatchObject({
      status: 'in_sync',
      reportedVersion: 2,
      reported: { labels: { zone: 'south' } },
    });
  }, 60_000);
});

describe('rollouts', () => {
  it('a firmware rollout halts at its error threshold and rolls the changed devices back', async () => {
    for (const [v, img] of Object.entries(IMAGES)) {
      const r = await api(`/rollouts/firmware/${v}`, {
        method: 'PUT',
        json: { url: `${fwBase}/${v}.bin`, sha256: sha(img), size: img.length },
      });
      expect(r.status).toBe(200);
    }
    const created = await api<Rollout>('/rollouts', {
      method: 'POST',
      json: {
        name: 'fridge firmware 1.1.0',
        kind: 'firmware',
        firmware: { version: '1.1.0' },
        devices: ['fa-1', 'fa-2', 'fb-1', 'fb-2'],
        waves: [{ gateways: ['gw-a'] }, { gateways: ['gw-b'] }],
        errorThreshold: 0.5,
      },
    });
    expect(created.status).toBe(201);
    expect(created.body.waveCounts.map((w) => w.total)).toEqual([2, 2]);
    const unknownFw = await api<{ code: string }>('/rollouts', {
      method: 'POST',
      json: { kind: 'firmware', firmware: { version: '7.7.7' }, waves: [{}] },
    });
    expect([unknownFw.status, unknownFw.body.code]).toEqual([404, 'CLOUD_ERR_NOT_FOUND']);
    const noRollout = await api<{ code: string }>('/rollouts/01ARZ3NDEKTSV4RRFFQ69G5FAV');
    expect([noRollout.status, noRollout.body.code]).toEqual([404, 'CLOUD_ERR_NOT_FOUND']);

    const done = await rolloutIn(created.body.id, 'rolled_back');
    expect(done.reason).toMatch(/halted: wave 0: 1 of 2 target\(s\) failed/);
    expect(await metric(cloud.metrics.registry, 'storelink_cloud_rollouts_halted_total')).toMatch(/ 1\b/);
    const targets = (await api<Target[]>(`/rollouts/${created.body.id}/targets`)).body;
    const byDevice = Object.fromEntries(targets.map((t) => [t.device, t]));
    // fa-1 had installed 1.1.0 and went back to 1.0.0; fa-2 never left 1.0.0; wave 1 never started.
    expect(byDevice['fa-1']).toMatchObject({
      state: 'rolled_back',
      previous: { firmware: { version: '1.0.0' } },
    });
    expect(byDevice['fa-2']).toMatchObject({ state: 'rolled_back', code: 'BOOT_FAILED' });
    expect(byDevice['fb-1']!.state).toBe('cancelled');
    expect(byDevice['fb-2']!.state).toBe('cancelled');

    const fa1 = sims.get('fa-1')!.firmware;
    expect(fa1.version).toBe('1.0.0');
    expect(fa1.counts).toEqual({ attempted: 2, installed: 2, failed: 0 });
    const fa2 = sims.get('fa-2')!.firmware;
    expect(fa2.version).toBe('1.0.0');
    expect(fa2.counts).toEqual({ attempted: 1, installed: 0, failed: 1 });
    expect(sims.get('fb-1')!.firmware.counts.attempted).toBe(0);
    expect(sims.get('fb-2')!.firmware.counts.attempted).toBe(0);
    const shadowFa1 = (await api<Shadow>('/shadows/gw-a/devices/fa-1')).body;
    expect(shadowFa1).toMatchObject({ status: 'in_sync', reported: { firmware: { version: '1.0.0' } } });
  }, 90_000);

  it('a bad image is refused by the device and counts as a failure', async () => {
    const img = IMAGES['1.1.0'];
    // The catalogue entry's hash does not match what the server sends.
    await api('/rollouts/firmware/1.1.1', {
      method: 'PUT',
      json: { url: `${fwBase}/1.1.0.bin`, sha256: sha(Buffer.from('other')), size: img.length },
    });
    const created = await api<Rollout>('/rollouts', {
      method: 'POST',
      json: {
        kind: 'firmware',
        firmware: { version: '1.1.1' },
        devices: ['fb-2'],
        waves: [{}],
        errorThreshold: 0,
      },
    });
    const done = await rolloutIn(created.body.id, 'rolled_back');
    expect(done.counts.rolled_back).toBe(1);
    const [t] = (await api<Target[]>(`/rollouts/${created.body.id}/targets`)).body;
    expect(t!.code).toBe('BAD_IMAGE');
    expect(sims.get('fb-2')!.firmware.version).toBe('1.0.0');
    expect(sims.get('fb-2')!.firmware.counts).toEqual({ attempted: 1, installed: 0, failed: 1 });
  }, 60_000);

  it('a config rollout completes wave by wave and waits for approval before the second', async () => {
    const created = await api<Rollout>('/rollouts', {
      method: 'POST',
      json: {
        kind: 'config',
        scope: 'device',
        config: { tempHighC: 9 },
        devices: ['fa-1', 'fb-1'],
        waves: [{ sites: ['site-1'] }, { sites: ['site-2'], approval: true }],
      },
    });
    expect(created.status).toBe(201);
    const waiting = await rolloutIn(created.body.id, 'awaiting_approval');
    expect(waiting.currentWave).toBe(1);
    expect(waiting.waveCounts[0]!.counts.succeeded).toBe(1);
    expect(sims.get('fa-1')!.config()).toMatchObject({ tempHighC: 9 });
    expect(sims.get('fb-1')!.config()).not.toMatchObject({ tempHighC: 9 });

    const approved = await api<Rollout>(`/rollouts/${created.body.id}/approve`, { method: 'POST' });
    expect(approved.status).toBe(200);
    // Approving twice is refused: the rollout is no longer waiting.
    const again = await api<{ code: string }>(`/rollouts/${created.body.id}/approve`, { method: 'POST' });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('CLOUD_ERR_ROLLOUT_STATE');
    await rolloutIn(created.body.id, 'completed');
    expect(sims.get('fb-1')!.config()).toMatchObject({ tempHighC: 9 });
    // The device shadow still carries the earlier manual keys alongside the rollout's.
    expect((await api<Shadow>('/shadows/gw-b/devices/fb-1')).body.desired).toMatchObject({
      intervalMs: 30_000,
      setpointC: 3,
      tempHighC: 9,
    });
  }, 60_000);

  it('a gateway that is offline during a rollout gets it when it returns', async () => {
    await edges.get('gw-b')!.close();
    edges.delete('gw-b');
    await until('gw-b offline in the cloud', async () =>
      (await cloud.store.getGateway('gw-b'))?.presence.state === 'offline' ? true : undefined,
    );
    const created = await api<Rollout>('/rollouts', {
      method: 'POST',
      json: { kind: 'config', config: { labels: { ring: 'all' } }, waves: [{}], successThreshold: 0.5 },
    });
    expect(created.status).toBe(201);
    // Half of the wave is enough to complete; gw-b's target stays sent.
    await rolloutIn(created.body.id, 'completed');
    const state = async (gw: string) =>
      (await api<Target[]>(`/rollouts/${created.body.id}/targets`)).body.find((t) => t.gateway === gw)!.state;
    expect(await state('gw-a')).toBe('succeeded');
    expect(await state('gw-b')).toBe('sent');

    edges.set('gw-b', await startGatewayEdge('gw-b'));
    await until('gw-b target succeeded', async () =>
      (await state('gw-b')) === 'succeeded' ? true : undefined,
    );
    expect((await api<Shadow>('/shadows/gw-b')).body).toMatchObject({
      status: 'in_sync',
      reported: { labels: { ring: 'all' } },
    });
  }, 90_000);
});
