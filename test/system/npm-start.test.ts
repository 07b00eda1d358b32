/**
 * `npm start` as a new user runs it: three real processes (cloud, edge, simulator) from
 * the generated configs, the live summary, and a clean stop. Run twice on the same data
 * directory, because the second start must continue from the first one's data.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const dataDir = mkdtempSync(join(tmpdir(), 'storelink-start-'));

afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function runStart(seconds: number): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    const child = spawn(
      'npm',
      ['start', '--', '--duration', String(seconds), '--plain', '--data-dir', dataDir],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => res({ code, out }));
  });
}

it('starts cloud, edge and devices, shows events flowing and a command round trip, stops cleanly', async () => {
  const first = await runStart(50);
  expect(first.code, first.out).toBe(0);
  expect(first.out).toMatch(/devices online\s+5\/5\s+fridge-1 fridge-2 vend-1 vend-2 esl-ap-1/);
  expect(first.out).toMatch(/uplink\s+connected/);
  expect(first.out).toMatch(/ping → fridge-1: ok in \d+ ms/);
  const stored = [...first.out.matchAll(/stored (\d+)/g)].map((m) => Number(m[1]));
  expect(Math.max(...stored)).toBeGreaterThan(10);
  expect(first.out).toContain('/docs');
  // The vending machine over a socat pty pair (socat is installed by .ci/run) sells an item.
  expect(first.out).toMatch(/last purchase\s+order \S+ slot \d+ ¥[\d.]+ paid → dispensed in \d+ ms/);
  // The demo store's price campaign ends with every tag confirming the content hash.
  expect(first.out).toMatch(/price campaign\s+(\d+)\/\1 tags confirmed by hash/);

  // Logs of a clean run carry no error-level lines.
  for (const name of ['cloud', 'edge', 'sim', 'board']) {
    const log = readFileSync(join(dataDir, 'logs', `${name}.log`), 'utf8');
    expect(
      log.split('\n').filter((l) => /"level":(50|60)/.test(l)),
      name,
    ).toEqual([]);
  }

  const second = await runStart(12);
  expect(second.code, second.out).toBe(0);
  const again = [...second.out.matchAll(/stored (\d+)/g)].map((m) => Number(m[1]));
  // The cloud store kept the first run's events; the counter continues from there.
  expect(Math.min(...again)).toBeGreaterThanOrEqual(Math.max(...stored));
}, 180_000);
