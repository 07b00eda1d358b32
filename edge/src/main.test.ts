import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeCloud, until } from './test-support/harness.ts';

const BIN = new URL('../bin/storelink-edge.js', import.meta.url).pathname;
let dir: string;
let cloud: FakeCloud;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'edge-main-'));
  cloud = new FakeCloud();
  await cloud.start();
});
afterEach(async () => {
  await cloud.close();
  rmSync(dir, { recursive: true, force: true });
});

function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: 'pipe' });
  let out = '';
  let err = '';
  child.stdout.on('data', (b) => {
    out += b;
  });
  child.stderr.on('data', (b) => {
    err += b;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, out: () => out, err: () => err };
}

describe('storelink-edge process', () => {
  it('exits 2 naming the wrong field when the config is invalid', async () => {
    const path = join(dir, 'edge.json');
    writeFileSync(
      path,
      JSON.stringify({ site: 's', gateway: 'g', cloud: { url: cloud.url, username: 'g' } }),
    );
    const p = run(['--config', path], { STORELINK_EDGE_BROKER_PORT: '70000' });
    expect(await p.exited).toBe(2);
    expect(p.err()).toContain('EDGE_ERR_CONFIG');
    expect(p.err()).toContain('/broker/port must be <= 65535');
  });

  it('starts from a config file, serves HTTP, and stops cleanly on SIGTERM', async () => {
    const path = join(dir, 'edge.json');
    writeFileSync(
      path,
      JSON.stringify({
        site: 's',
        gateway: 'g',
        dataDir: join(dir, 'data'),
        broker: { host: '127.0.0.1', port: 0 },
        http: { host: '127.0.0.1', port: 0 },
        cloud: { url: 'mqtt://127.0.0.1:1', username: 'g' },
        devices: [{ id: 'd1', password: 'p' }],
      }),
    );
    const p = run(['--config', path], { STORELINK_EDGE_CLOUD_URL: cloud.url });
    await until(() => p.out().includes('edge agent started'), 15_000, 'started log');
    const line = p
      .out()
      .split('\n')
      .find((l) => l.includes('edge agent started'))!;
    const { http } = JSON.parse(line) as { http: string };
    expect((await fetch(`${http}/healthz`)).status).toBe(200);
    // The env override pointed the uplink at the fake cloud.
    await until(() => cloud.states.some((s) => s.payload.state === 'online'), 10_000, 'birth');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(cloud.states.at(-1)!.payload.state).toBe('offline');
  });
});
