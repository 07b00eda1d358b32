import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { type CloudApp, startCloud } from '../../../cloud/src/index.ts';
import { type EdgeAgent, startEdge } from '../../../edge/src/agent.ts';
import { type EslDemo, eslDemoDevices, startEslDemo } from './demo.ts';

/**
 * End to end in one process, real time: cloud (PGlite, embedded broker, price book) →
 * signed `esl.campaign` → edge agent (render, hash, push) → simulated AP and tags over
 * MQTT → `esl.tag_state` through the outbox and ingest → campaign progress and report
 * over HTTP. This is what `npm start` shows (tags wake every 2 s here to keep it short).
 */
const silent = pino({ level: 'silent' });
let cloud: CloudApp | undefined;
let edge: EdgeAgent | undefined;
let demo: EslDemo | undefined;
const dir = mkdtempSync(join(tmpdir(), 'storelink-esl-'));

afterAll(async () => {
  await demo?.stop();
  await edge?.close();
  await cloud?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('npm start demo: a price change becomes a campaign every tag confirms by hash', async () => {
  cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
      store: { kind: 'pglite' },
      signing: { privateKeyFile: join(dir, 'cloud', 'key.pem') },
      service: { username: 'svc', password: 'svc-secret' },
      gateways: [{ id: 'gw-1', site: 'demo-store', password: 'gw-secret' }],
      log: { level: 'silent' },
    },
    { logger: silent },
  );
  const aps = eslDemoDevices((id) => `pw-${id}`);
  edge = await startEdge(
    {
      site: 'demo-store',
      gateway: 'gw-1',
      dataDir: join(dir, 'edge'),
      broker: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { host: '127.0.0.1', port: 0 },
      cloud: {
        url: cloud.brokerUrl,
        username: 'gw-1',
        password: 'gw-secret',
        publicKeyPem: cloud.publicKeyPem,
      },
      devices: aps,
      outbox: { kind: 'memory' },
      log: { level: 'silent' },
    },
    { logger: silent },
  );
  let text = '';
  const out = new Writable({
    write(chunk, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  demo = await startEslDemo({
    cloudUrl: cloud.httpUrl,
    edgeBrokerUrl: `mqtt://127.0.0.1:${edge.brokerPort}`,
    site: 'demo-store',
    gateway: 'gw-1',
    aps,
    tags: 6,
    wakeS: 2,
    bytesPerS: 50_000,
    out,
    timeoutMs: 20_000,
  });
  // four of six SKUs changed price: the tags showing them (one each) confirmed
  expect(demo.report.total).toBe(4);
  expect(demo.report.confirmed).toBe(4);
  expect(demo.report.notConfirmed).toEqual([]);
  expect(text).toContain('100.0% confirmed 4/4');
  const shown = [...demo.world.tags.values()].filter((t) => t.history.length > 0);
  expect(shown).toHaveLength(4);
}, 60_000);
