/**
 * On-device vision end to end (issue 9): the real cloud (embedded broker, PGlite, gallery
 * service with its own embedder), the real edge agent with the vision worker, and a
 * simulated camera publishing JPEG frames made from the sample photos shipped in
 * @vladmandic/human. Enrol from the member's own photo → sealed upsert to the gateway →
 * recognised in another photo → stranger not recognised → corrupt/wrong-size frames
 * refused while the pipeline carries on → erasure removed and confirmed (command
 * result + heartbeat gallery version) → no longer recognised. Every message the edge
 * sent upstream is recorded and checked: no image, no embedding, ever.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CloudApp, startCloud } from '@storelink/cloud';
import { type EdgeAgent, startEdge } from '@storelink/edge';
import mqtt from 'mqtt';
import { pino } from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryMembersRepo } from '../../cloud/src/members/memory-repo.ts';
import { MembersService } from '../../cloud/src/members/service.ts';
import { faceCell, SimCamera, sceneWithFaces } from '../../firmware-sim/src/camera/index.ts';
import { waitFor } from '../helpers/wait.ts';

const SITE = 'vision-store';
const GW = 'gw-vision';
const CAM = 'cam-shelf-1';
const silent = pino({ level: 'silent' });
const service = { username: 'svc', password: 'svc-secret' };

let dir: string;
let cloud: CloudApp;
let edge: EdgeAgent;
let camera: SimCamera;
let tap: mqtt.MqttClient;
const uplink: Array<{ topic: string; payload: Buffer }> = [];

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 60_000) =>
  waitFor(probe, ms, what, 50);

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const r = await fetch(`${cloud.httpUrl}/api/v1${path}`, {
    method,
    ...(body !== undefined
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
      : {}),
  });
  return { status: r.status, body: (await r.json()) as T };
}

async function recognized(): Promise<Array<{ device: string; payload: Record<string, unknown> }>> {
  const r = await api<{ items: Array<{ device: string; payload: Record<string, unknown> }> }>(
    'GET',
    `/events?gateway=${GW}&type=member.recognized&limit=500`,
  );
  return r.body.items;
}

/** Publishes `frame` until the edge has processed `n` more frames (it may drop some as stale). */
async function show(frame: Buffer, n: number): Promise<void> {
  const v = edge.vision!;
  const target = v.status().frames.processed + n;
  await until(`${n} frames processed`, async () => {
    if (v.status().frames.processed >= target) return true;
    await camera.publishFrame(frame, 1);
    await v.idle();
    return v.status().frames.processed >= target;
  });
}

/** Everything the edge stored has reached the cloud. */
const drained = () => until('outbox drained', () => edge.store.outbox.stats().depth === 0);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'storelink-e2e-vision-'));
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
  // Record every message the gateway sends upstream (batches, state, heartbeats).
  tap = await mqtt.connectAsync(cloud.brokerUrl, { ...service, clientId: 'vision-e2e-tap' });
  tap.on('message', (topic, payload) => {
    if (!topic.endsWith('/cmd') && !topic.endsWith('/ack'))
      uplink.push({ topic, payload: Buffer.from(payload) });
  });
  await tap.subscribeAsync(`sl/v1/${SITE}/${GW}/#`, { qos: 1 });

  // Provisioning: the gateway's gallery key comes from the cloud.
  const key = await api<{ galleryKey: string }>('GET', `/vision/gateways/${GW}/gallery-key`);
  edge = await startEdge(
    {
      site: SITE,
      gateway: GW,
      dataDir: join(dir, 'edge'),
      broker: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { host: '127.0.0.1', port: 0 },
      cloud: { url: cloud.brokerUrl, username: GW, password: 'gw-secret', publicKeyPem: cloud.publicKeyPem },
      heartbeatMs: 200,
      log: { level: 'silent' },
      devices: [{ id: CAM, password: 'cam-secret', kind: 'camera' }],
      vision: {
        cameras: [{ id: CAM, recognition: true, zones: [{ id: 'shelf', x: 0, y: 0, w: 1, h: 1 }] }],
        recognition: { enabled: true, threshold: 0.6, margin: 0.02, cooldownMs: 0 },
        galleryKey: key.body.galleryKey,
        backend: 'wasm',
        reembedMs: 0,
        // a face unseen for 100 ms has left: every shown frame starts a new, embedded track
        lostMs: 100,
        occupancyEveryMs: 1000,
      },
    },
    { logger: silent },
  );
  camera = new SimCamera({
    id: CAM,
    password: 'cam-secret',
    brokerUrl: `mqtt://127.0.0.1:${edge.brokerPort}`,
    frames: [],
    fps: 0,
  });
  await camera.start();
}, 180_000);

afterAll(async () => {
  await camera?.stop();
  await tap?.endAsync();
  await edge?.close();
  await cloud?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('vision end to end', () => {
  it('enrols, recognises, refuses bad frames, erases with confirmation, and never uplinks a face', async () => {
    const v = edge.vision!;
    expect(v.status().ready).toBe(true);

    // 1. Enrolment from the member's own photo, with the separate consent recorded.
    const photo = await sharp(await faceCell(0, 0, 240))
      .jpeg()
      .toBuffer();
    const noConsent = await api<{ code: string }>('POST', '/vision/members/m-alice/face', {
      photo: photo.toString('base64'),
      sites: [SITE],
      consent: { separate: false, at: 1, text: 'x' },
    });
    expect(noConsent.status).toBe(400);
    const enrol = await api<{ gateways: Array<{ gateway: string; version: number }> }>(
      'POST',
      '/vision/members/m-alice/face',
      {
        photo: photo.toString('base64'),
        sites: [SITE],
        consent: {
          separate: true,
          at: Date.now(),
          text: 'I agree to face recognition in this store for member perks.',
        },
      },
    );
    expect(enrol.status, JSON.stringify(enrol.body)).toBe(201);
    expect(enrol.body.gateways).toEqual([{ gateway: GW, version: 1 }]);
    await until('gallery on the edge', () => v.status().gallerySize === 1);

    // 2. The camera sees another photo of the same man: recognised under the camera's id.
    const alice = await sceneWithFaces(640, 480, [{ row: 0, col: 1, x: 220, y: 120, size: 180 }]);
    await show(alice, 1);
    const rec = await until('member.recognized in the cloud', async () => {
      const items = await recognized();
      return items.length >= 1 ? items : undefined;
    });
    expect(rec[0]).toMatchObject({
      device: CAM,
      payload: { memberId: 'm-alice', camera: CAM, zone: 'shelf', galleryVersion: 1 },
    });

    // 3. A stranger is not recognised; corrupt and wrong-size frames are refused; the pipeline continues.
    const stranger = await sceneWithFaces(640, 480, [{ row: 4, col: 2, x: 40, y: 200, size: 180 }], 3);
    const before = v.status().frames;
    await show(stranger, 1);
    const faulty = new SimCamera({
      id: CAM,
      password: 'cam-secret',
      brokerUrl: `mqtt://127.0.0.1:${edge.brokerPort}`,
      frames: [stranger],
      fps: 0,
      corruptEvery: 2,
      wrongSizeEvery: 3,
    });
    await faulty.prepare();
    const [ok, corrupt, wrongSize] = [faulty.nextFrame(), faulty.nextFrame(), faulty.nextFrame()];
    expect(ok!.equals(stranger)).toBe(true);
    expect(faulty.sent).toMatchObject({ corrupt: 1, wrongSize: 1 });
    for (const f of [corrupt!, wrongSize!]) await camera.publishFrame(f, 1);
    await until('bad frames refused', () => v.status().frames.refused >= before.refused + 2);
    await show(stranger, 1);
    await drained();
    expect((await recognized()).length).toBe(rec.length);

    // Another consenting member (another person): the gallery stays non-empty after
    // alice's erasure, so her later frames are still embedded and matched.
    const carolPhoto = await sharp(await faceCell(3, 4, 240))
      .jpeg()
      .toBuffer();
    const enrolCarol = await api('POST', '/vision/members/m-carol/face', {
      photo: carolPhoto.toString('base64'),
      sites: [SITE],
      consent: { separate: true, at: Date.now(), text: 'I agree to face recognition in this store.' },
    });
    expect(enrolCarol.status).toBe(201);
    await until('carol on the edge', () => v.status().gallerySize === 2);
    // 4. Erasure: removed on the edge, confirmed by the command result and the heartbeat.
    const del = await api<{ removals: Array<{ gateway: string; version: number }> }>(
      'DELETE',
      '/vision/members/m-alice/face?reason=erased',
    );
    expect(del.status).toBe(202);
    expect(del.body.removals.map((r) => r.gateway)).toEqual([GW]);
    const confirmed = await until('erasure confirmed', async () => {
      const r = await api<{
        removals: Array<{ confirmed: boolean; heartbeatConfirmed: boolean; commandStatus: string }>;
      }>('GET', '/vision/members/m-alice/face/removal');
      const x = r.body.removals[0];
      return x?.commandStatus === 'ok' && x.heartbeatConfirmed ? x : undefined;
    });
    expect(confirmed.confirmed).toBe(true);
    expect(v.status().gallerySize).toBe(1);

    // 5. After erasure the member is no longer recognised on the edge.
    const count = (await recognized()).length;
    const embeddedBefore = v.status().frames.embedded;
    await show(alice, 2);
    expect(v.status().frames.embedded).toBeGreaterThan(embeddedBefore); // matched, against carol only
    await drained();
    expect((await recognized()).length).toBe(count);

    // 5b. Erasure through the members service (issue 7): its erasure hook removes the face everywhere.
    const members = new MembersService({ repo: new MemoryMembersRepo(), now: Date.now });
    cloud.vision!.subscribeErasures(members);
    const link = await members.link(
      { type: 'phone', value: '+8613912345678' },
      { type: 'face_id', value: 'f-bob' },
      { source: 'e2e', evidence: {} },
    );
    const bob = link.memberA;
    const bobPhoto = await sharp(await faceCell(0, 2, 240))
      .jpeg()
      .toBuffer();
    const enrolBob = await api('POST', `/vision/members/${bob}/face`, {
      photo: bobPhoto.toString('base64'),
      sites: [SITE],
      consent: { separate: true, at: Date.now(), text: 'I agree to face recognition in this store.' },
    });
    expect(enrolBob.status).toBe(201);
    await until('bob on the edge', () => v.status().gallerySize === 2);
    await members.erase(bob);
    await until('bob erased on the edge', () => v.status().gallerySize === 1);
    const bobRemoval = await until('bob erasure confirmed', async () => {
      const r = await api<{ removals: Array<{ confirmed: boolean; heartbeatConfirmed: boolean }> }>(
        'GET',
        `/vision/members/${bob}/face/removal`,
      );
      return r.body.removals[0]?.confirmed && r.body.removals[0].heartbeatConfirmed
        ? r.body.removals
        : undefined;
    });
    expect(bobRemoval).toHaveLength(1);

    // 5c. Resync (a replaced gateway): every member enrolled for the site, and nobody erased.
    const resync = await api<{ members: number; versions: number[] }>(
      'POST',
      `/vision/gateways/${GW}/gallery/resync`,
    );
    expect(resync.status).toBe(202);
    expect(resync.body.members).toBe(1);
    await until('resync applied', () => v.status().galleryVersion === resync.body.versions.at(-1));
    expect(v.status().gallerySize).toBe(1);

    // 6. Burst: frames arriving faster than inference are dropped as stale, counted, never queued.
    const dropped = v.status().frames.dropped;
    await Promise.all(Array.from({ length: 20 }, () => camera.publishFrame(stranger, 1)));
    await until('burst settled', async () => {
      await v.idle();
      return v.status().frames.dropped > dropped;
    });

    // 7. Privacy over the whole run [VISION-PRIVACY-1]: nothing upstream holds an image or an embedding.
    await drained();
    expect(uplink.length).toBeGreaterThan(5);
    const occupancy = uplink.some((m) => m.payload.toString('utf8').includes('vision.occupancy'));
    expect(occupancy).toBe(true);
    for (const m of uplink) {
      const text = m.payload.toString('utf8');
      expect(m.payload.includes(Buffer.from([0xff, 0xd8, 0xff])), m.topic).toBe(false); // raw JPEG
      expect(text.includes('/9j/'), m.topic).toBe(false); // base64 JPEG
      expect(text.includes('iVBORw0KGgo'), m.topic).toBe(false); // base64 PNG
      expect(/"(sealed|embedding|descriptor|image|photo|frame)"/.test(text), m.topic).toBe(false);
      expect(/\[(\s*-?\d+(\.\d+)?(e-?\d+)?\s*,){63,}/.test(text), m.topic).toBe(false); // long number arrays
    }
  }, 240_000);
});
