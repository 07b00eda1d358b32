/**
 * Unmanned cabinet end to end (issue 8): the real cloud (embedded broker, PGlite, cabinet
 * sessions, agreement charge) and the real edge agent with its cabinet (lock relay and
 * door switch on simulated GPIO lines, the session ledger in the agent's LevelDB). The
 * cabinet's content is a MemoryInventory that plays the physical cabinet (it outlives an
 * agent restart, as the goods on the shelves do). The member scans → the cloud checks
 * the agreement and sends the signed unlock → the relay opens → the door opens (with
 * bounce) → items are taken and put back → the door closes → one order, charged once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CloudApp, startCloud } from '@storelink/cloud';
import { type EdgeAgent, type StartEdgeOptions, startEdge } from '@storelink/edge';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryInventory } from '../../edge/src/cabinet/inventory.ts';
import { type BinaryValue, createSimLine, type SimLine } from '../../edge/src/gpio/line.ts';
import { SimAgreementProvider } from '../../firmware-sim/src/payment/agreement.ts';
import { waitFor } from '../helpers/wait.ts';

const SITE = 'cab-store';
const GW = 'gw-cab';
const silent = pino({ level: 'silent' });
const service = { username: 'svc', password: 'svc-secret' };

let dir: string;
let cloud: CloudApp;
let edge: EdgeAgent;
const provider = new SimAgreementProvider({ now: Date.now });
/** The physical cabinet: door position, lock relay, goods. */
const world = {
  door: 0 as BinaryValue,
  doorLine: undefined as SimLine | undefined,
  lock: [] as BinaryValue[],
};
const goods = new MemoryInventory();

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 15_000) =>
  waitFor(probe, ms, what, 20);

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const r = await fetch(`${cloud.httpUrl}/api/v1${path}`, {
    method,
    ...(body !== undefined
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
      : {}),
  });
  const text = await r.text();
  return { status: r.status, body: (text ? JSON.parse(text) : undefined) as T };
}

interface Session {
  id: string;
  state: string;
  orderId: string;
  items: Array<{ sku: string; qty: number; priceCents: number }>;
  returned: Array<{ sku: string; qty: number }>;
  totalCents: number;
  chargeTxId: string | null;
}
const session = async (id: string) => (await api<Session>('GET', `/cabinet/sessions/${id}`)).body;

/** Moves the door; with `bounce`, the reed switch chatters before it settles. */
function setDoor(v: BinaryValue, bounce = false) {
  const line = world.doorLine!;
  if (bounce) {
    for (const x of [v, (1 - v) as BinaryValue, v, (1 - v) as BinaryValue]) line.set(x);
  }
  world.door = v;
  line.set(v);
}

const edgeOptions = (): StartEdgeOptions => ({
  logger: silent,
  cabinetInventory: goods,
  openCabinetLine: async (_spec, direction) => {
    if (direction === 'out') {
      const relay = createSimLine({ direction: 'out' });
      const write = relay.write.bind(relay);
      relay.write = async (v) => {
        world.lock.push(v);
        await write(v);
      };
      return relay;
    }
    world.doorLine = createSimLine({ initial: world.door });
    return world.doorLine;
  },
});

async function startAgent(): Promise<EdgeAgent> {
  const a = await startEdge(
    {
      site: SITE,
      gateway: GW,
      dataDir: join(dir, 'edge'),
      broker: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { host: '127.0.0.1', port: 0 },
      cloud: { url: cloud.brokerUrl, username: GW, password: 'gw-secret', publicKeyPem: cloud.publicKeyPem },
      heartbeatMs: 200,
      log: { level: 'silent' },
      cabinet: {
        lockGpio: { pin: 17 },
        doorGpio: { pin: 18 },
        doorDebounceMs: 20,
        openTimeoutMs: 3_000,
        alarmAfterMs: 60_000,
      },
    },
    edgeOptions(),
  );
  await until('the edge reaches the cloud', () => a.status().uplink.connected);
  return a;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'storelink-e2e-cab-'));
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
    { logger: silent, cabinet: { payments: { wechat: provider }, sweepIntervalMs: 200 } },
  );
  edge = await startAgent();
  expect(
    (
      await api('PUT', `/cabinet/prices/${SITE}`, {
        items: [
          { sku: 'cola', priceCents: 300 },
          { sku: 'chips', priceCents: 550 },
        ],
      })
    ).status,
  ).toBe(204);
  for (const m of ['m-alice', 'm-bob']) {
    const agreementId = provider.sign(m);
    expect((await api('PUT', `/cabinet/agreements/${m}`, { provider: 'wechat', agreementId })).status).toBe(
      204,
    );
  }
  goods.put('rfid:e1', 'cola');
  goods.put('rfid:e2', 'cola');
  goods.put('rfid:e3', 'chips');
  goods.put('rfid:e4', 'chips');
}, 60_000);

afterAll(async () => {
  await edge?.close();
  await cloud?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function scan(memberId: string): Promise<string> {
  const r = await api<Session>('POST', '/cabinet/sessions', { gateway: GW, memberId });
  expect(r.status).toBe(201);
  return r.body.id;
}

describe('cabinet end to end: scan → unlock → take → close → one charge', () => {
  it('take 2, return 1, close: exactly one order charged for the 1 item kept', async () => {
    const id = await scan('m-alice');
    await until(
      'lock relay opened',
      () => edge.cabinet!.session.current?.state === 'unlocked' && world.lock.at(-1) === 1,
    );
    setDoor(1, true);
    await until('door open', () => edge.cabinet!.session.current?.state === 'open');
    // takes a cola and a bag of chips, puts the chips back
    goods.put('rfid:e1', 'cola', 0);
    goods.put('rfid:e3', 'chips', 0);
    goods.put('rfid:e3', 'chips');
    setDoor(0, true);
    const s = await until('session charged', async () => {
      const x = await session(id);
      return x.state === 'charged' ? x : undefined;
    });
    expect(s.items).toEqual([{ sku: 'cola', qty: 1, priceCents: 300 }]);
    expect(s.totalCents).toBe(300);
    expect(s.chargeTxId).toMatch(/^AT/);
    expect(provider.chargesFor(s.orderId)).toBe(1);
    expect(provider.charges.find((c) => c.outTradeNo === s.orderId)?.amountCents).toBe(300);
    expect(world.lock.at(-1)).toBe(0);
    // the session events reached the cloud on the tx lane
    const ev = await api<{ items: Array<{ type: string; lane: string; payload: { sessionId?: string } }> }>(
      'GET',
      `/events?gateway=${GW}&limit=200`,
    );
    const mine = ev.body.items.filter((e) => e.payload.sessionId === id);
    expect(mine.map((e) => e.type).sort()).toEqual([
      'cabinet.session.closed',
      'cabinet.session.opened',
      'cabinet.session.unlocked',
    ]);
    expect(new Set(mine.map((e) => e.lane))).toEqual(new Set(['tx']));
    // the bouncing switch made one open and one close
    expect(edge.cabinet!.session.counters.opened).toBe(1);
  });

  it('no agreement: the scan is refused and the lock never opens', async () => {
    const before = world.lock.length;
    const r = await api<{ code: string }>('POST', '/cabinet/sessions', { gateway: GW, memberId: 'm-nobody' });
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('CLOUD_ERR_CAB_NO_AGREEMENT');
    // malformed scans and unknown sessions get their codes too
    const bad = await api<{ code: string }>('POST', '/cabinet/sessions', {
      gateway: GW,
      memberId: 'm-alice',
      extra: 1,
    });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('CLOUD_ERR_BAD_REQUEST');
    const unknown = await api<{ code: string }>('POST', '/cabinet/sessions', {
      gateway: 'gw-nowhere',
      memberId: 'm-alice',
    });
    expect(unknown.status).toBe(404);
    expect((await api<{ code: string }>('GET', '/cabinet/sessions/CSNOSUCH1')).body.code).toBe(
      'CLOUD_ERR_NOT_FOUND',
    );
    expect(world.lock.length).toBe(before);
  });

  it('door not opened in time: relocked, nothing charged', async () => {
    const id = await scan('m-bob');
    const s = await until('session relocked', async () => {
      const x = await session(id);
      return x.state === 'relocked' ? x : undefined;
    });
    expect(s.totalCents).toBe(0);
    expect(provider.chargesFor(s.orderId)).toBe(0);
    expect(world.lock.at(-1)).toBe(0);
  });

  it('agent restart mid-session (door open): resumes from its ledger and charges exactly once', async () => {
    const id = await scan('m-bob');
    await until('lock relay opened', () => edge.cabinet!.session.current?.state === 'unlocked');
    setDoor(1);
    await until('door open', () => edge.cabinet!.session.current?.state === 'open');
    goods.put('rfid:e2', 'cola', 0); // takes the last cola
    await edge.close();
    // while the agent is down the customer closes the door
    world.door = 0;
    edge = await startAgent();
    const s = await until('session charged after restart', async () => {
      const x = await session(id);
      return x.state === 'charged' ? x : undefined;
    });
    expect(s.items).toEqual([{ sku: 'cola', qty: 1, priceCents: 300 }]);
    expect(provider.chargesFor(s.orderId)).toBe(1);
    expect(edge.cabinet!.session.counters.resumed).toBe(1);
    // a second scan works normally after the resumed session
    const next = await scan('m-alice');
    await until('relay opened for the next session', () => edge.cabinet!.session.current?.id === next);
    expect(provider.chargesFor(s.orderId)).toBe(1);
  });
});
