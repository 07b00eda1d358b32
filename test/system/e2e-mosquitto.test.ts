import { execFileSync, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendCommand, waitCommandDone } from '../helpers/commands.ts';
import { type Stack, startStack, waitFor } from '../helpers/stack.ts';
import { cleanupTempDirs } from '../helpers/tmp.ts';

/**
 * Issue 2 against parts nobody here wrote: Debian Mosquitto is the cloud broker (password
 * file + pattern ACL), `mosquitto_pub` / `mosquitto_sub` are the device on the edge's
 * local broker, cloud and edge run as their real processes.
 */
describe('system: Mosquitto as cloud broker, mosquitto_pub as device', () => {
  let stack: Stack;
  const dev = { id: 'mqpub1', password: 'mqpub1-secret' };

  beforeAll(async () => {
    stack = await startStack({ cloudBroker: 'mosquitto', devices: [dev] });
  });
  afterAll(async () => {
    await stack?.close();
    cleanupTempDirs();
  });

  const pub = (topic: string, lines: string[]) =>
    execFileSync(
      'mosquitto_pub',
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(stack.edgeBrokerPort),
        '-u',
        dev.id,
        '-P',
        dev.password,
        '-i',
        dev.id,
        '-q',
        '1',
        '-t',
        topic,
        '-l',
      ],
      { input: `${lines.join('\n')}\n`, timeout: 20_000 },
    );

  it('events published by mosquitto_pub arrive exactly once in the cloud store, resends included', async () => {
    const run = Date.now().toString(36);
    const ids = Array.from({ length: 20 }, (_, i) => `mq-${run}-${i}`);
    const body = (id: string, i: number) =>
      JSON.stringify({ id, ts: Date.now(), metrics: { temp: 4 + i / 10, door: i % 2 === 0 } });
    pub(`dev/${dev.id}/evt/telemetry`, ids.map(body));
    // A device that lost its PUBACKs resends the same ids [INGEST-DEDUPE-1].
    pub(
      `dev/${dev.id}/evt/telemetry`,
      ids.slice(5, 10).map((id, i) => body(id, i + 5)),
    );

    const rows = await waitFor(
      async () => {
        const all = (await stack.cloudEvents(['telemetry'])).filter((r) =>
          ids.includes((r.payload as { id: string }).id),
        );
        return all.length >= ids.length ? all : undefined;
      },
      30_000,
      'the events in the cloud store',
    );
    await new Promise((r) => setTimeout(r, 1000)); // a late duplicate would show up by now
    const again = (await stack.cloudEvents(['telemetry'])).filter((r) =>
      ids.includes((r.payload as { id: string }).id),
    );
    expect(again.length).toBe(ids.length);
    expect(again.map((r) => (r.payload as { id: string }).id)).toEqual(ids);
    expect(rows.every((r) => r.device === dev.id)).toBe(true);
    // Seqs are gap-free within the lane.
    const seqs = again.map((r) => r.seq);
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
  });

  it('a mosquitto_pub with the wrong password is refused by the edge broker', () => {
    expect(() =>
      execFileSync(
        'mosquitto_pub',
        [
          '-h',
          '127.0.0.1',
          '-p',
          String(stack.edgeBrokerPort),
          '-u',
          dev.id,
          '-P',
          'wrong',
          '-q',
          '1',
          '-t',
          `dev/${dev.id}/evt/telemetry`,
          '-m',
          '{}',
        ],
        { timeout: 10_000, stdio: 'pipe' },
      ),
    ).toThrow();
  });

  it('a signed command goes down to the device (mosquitto_sub) and its result comes back', async () => {
    const sub = spawn('mosquitto_sub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(stack.edgeBrokerPort),
      '-u',
      dev.id,
      '-P',
      dev.password,
      '-i',
      `${dev.id}`,
      '-q',
      '1',
      '-t',
      `dev/${dev.id}/cmd/#`,
      '-v',
      '-C',
      '1',
      '-W',
      '30',
    ]);
    const exited = new Promise<void>((resolve) => sub.once('exit', () => resolve()));
    let out = '';
    sub.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await new Promise((r) => setTimeout(r, 500));
    const cmd = await sendCommand(stack, {
      type: 'device.config',
      target: { device: dev.id },
      payload: { config: { reportIntervalS: 15 } },
    });
    await exited;
    const [topic, ...rest] = out.trim().split(' ');
    expect(topic).toBe(`dev/${dev.id}/cmd/device.config`);
    const dc = JSON.parse(rest.join(' ')) as { id: string; payload: unknown; expiresAt: number };
    expect(dc.id).toBe(cmd.id);
    expect(dc.payload).toEqual({ config: { reportIntervalS: 15 } });
    pub(`dev/${dev.id}/res/${dc.id}`, [
      JSON.stringify({ status: 'ok', result: { applied: ['reportIntervalS'] } }),
    ]);
    const done = await waitCommandDone(stack, cmd.id, 30_000);
    expect(done.status).toBe('ok');
    expect(done.result).toEqual({ applied: ['reportIntervalS'] });
    // The result travelled as a tx-lane event.
    const tx = await stack.cloudEvents(['tx']);
    expect(tx.some((r) => (r.payload as { commandId?: string }).commandId === cmd.id)).toBe(true);
  });
});
