import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { parseSimConfig } from './config.ts';
import { eventually, startObserver, startTestBroker } from './test-support.ts';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'storelink-sim.js');
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tmpConfig(value: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'sim-cfg-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'sim.json');
  writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value));
  return file;
}

function run(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (out.stdout += d));
  child.stderr.on('data', (d) => (out.stderr += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  cleanups.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return { child: child as ChildProcess, out, exited };
}

describe('sim config', () => {
  const good = {
    brokerUrl: 'mqtt://127.0.0.1:1883',
    devices: [{ id: 'fridge-1', password: 'pw', kind: 'fridge', intervalMs: 1000 }],
  };

  it('accepts a valid config', () => {
    expect(parseSimConfig(good).devices[0]?.kind).toBe('fridge');
  });

  it('names the wrong field', () => {
    const bad = (v: unknown) => {
      try {
        parseSimConfig(v);
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error('accepted a bad config');
    };
    expect(bad({ ...good, devices: [{ id: 'f', kind: 'toaster' }] })).toContain('/devices/0/kind');
    expect(bad({ devices: good.devices })).toContain('brokerUrl');
    expect(bad({ ...good, brokerUrl: 'http://x' })).toContain('/brokerUrl');
    expect(bad({ ...good, devices: [{ ...good.devices[0], colour: 'red' }] })).toContain(
      '/devices/0 has unknown field "colour"',
    );
    expect(bad({ ...good, devices: [{ ...good.devices[0], intervalMs: 1 }] })).toContain(
      '/devices/0/intervalMs',
    );
    expect(bad({ ...good, devices: [good.devices[0], good.devices[0]] })).toContain('/devices/1/id');
  });
});

describe('storelink-sim process', () => {
  it('runs devices from a config, prints status, stops on SIGTERM', async () => {
    const broker = await startTestBroker({ credentials: { 'fridge-9': 'pw9', 'vend-9': 'pw8' } });
    cleanups.push(() => broker.close());
    const obs = await startObserver(broker.url);
    cleanups.push(() => obs.close());
    const file = tmpConfig({
      brokerUrl: broker.url,
      devices: [
        { id: 'fridge-9', password: 'pw9', kind: 'fridge', intervalMs: 50 },
        { id: 'vend-9', password: 'pw8', kind: 'vending', intervalMs: 50 },
      ],
    });
    const p = run(['--config', file, '--status-ms', '200']);
    await obs.waitFor((m) => m.topic === 'dev/fridge-9/evt/telemetry', 15_000);
    await obs.waitFor((m) => m.topic === 'dev/vend-9/evt/telemetry', 5000);
    await eventually(() => p.out.stdout.includes('"connected":"2/2"'), 5000, 'status line');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(p.out.stdout).toContain('"msg":"stopped"');
    await eventually(
      () => broker.disconnects.includes('fridge-9') && broker.disconnects.includes('vend-9'),
      3000,
      'disconnects',
    );
  });

  it('exits 2 naming the field of a bad config', async () => {
    const file = tmpConfig({ brokerUrl: 'mqtt://127.0.0.1:1', devices: [{ id: 'x', kind: 'oven' }] });
    const p = run(['--config', file]);
    const q = run([]);
    expect(await p.exited).toBe(2);
    expect(p.out.stderr).toContain('/devices/0/kind');
    expect(await q.exited).toBe(2);
    expect(q.out.stderr).toContain('--config is required');
  });
});
