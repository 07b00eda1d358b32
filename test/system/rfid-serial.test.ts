/**
 * The real edge RFID driver against the simulated reader running as its own process
 * (firmware-sim/bin/storelink-rfid-sim.js) over a real serial link: a socat pty pair, both
 * ends opened with serialport's native binding. Both reader framings; misses, noise and CRC
 * errors on; an antenna fault; the link killed (SIGKILL socat: both ptys vanish) and back.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TagArrived, TagDeparted } from '../../edge/src/rfid/api.ts';
import { type Framing, RfidDriver } from '../../edge/src/rfid/driver.ts';
import type { RfidSimCounters } from '../../firmware-sim/src/rfid/index.ts';
import { waitFor } from '../helpers/wait.ts';

const SIM_BIN = join(import.meta.dirname, '../../firmware-sim/bin/storelink-rfid-sim.js');
const EPC = (i: number) => `e28068940000${i.toString(16).padStart(12, '0')}`;

class Link {
  readonly dir = mkdtempSync(join(tmpdir(), 'rfid-pty-'));
  readonly edge = join(this.dir, 'edge');
  readonly reader = join(this.dir, 'reader');
  private socat: ChildProcess | null = null;

  async start(): Promise<void> {
    for (const p of [this.edge, this.reader]) rmSync(p, { force: true });
    this.socat = spawn(
      '/usr/bin/socat',
      ['-d', '-d', `pty,raw,echo=0,link=${this.edge}`, `pty,raw,echo=0,link=${this.reader}`],
      { stdio: 'ignore' },
    );
    await waitFor(() => existsSync(this.edge) && existsSync(this.reader), 10_000, 'socat ptys', 20);
  }

  kill(): void {
    this.socat?.kill('SIGKILL');
    this.socat = null;
    // The device nodes are gone with the process; the links would dangle.
    for (const p of [this.edge, this.reader]) rmSync(p, { force: true });
  }

  cleanup(): void {
    this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

class SimProcess {
  private proc: ChildProcess | null = null;
  readonly lines: Array<Record<string, unknown>> = [];

  start(args: string[]): void {
    this.proc = spawn(process.execPath, [SIM_BIN, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    let buf = '';
    this.proc.stdout?.on('data', (c: Buffer) => {
      buf += c.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        this.lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        buf = buf.slice(i + 1);
      }
    });
  }

  /** Sends a control line and waits for the status it answers with. */
  async send(line: string): Promise<Record<string, unknown>> {
    const before = this.lines.length;
    this.proc?.stdin?.write(`${line}\n`);
    return waitFor(
      () => this.lines.slice(before).find((l) => l.ev === 'status'),
      10_000,
      `sim answer to ${line}`,
      20,
    );
  }

  kill(): void {
    this.proc?.kill('SIGKILL');
    this.proc = null;
  }
}

for (const framing of ['r2000', 'chafon'] as const satisfies Framing[]) {
  describe(`RFID reader process (${framing}) over a socat pty pair`, () => {
    const link = new Link();
    const sim = new SimProcess();
    let driver: RfidDriver;
    const arrived: TagArrived[] = [];
    const departed: TagDeparted[] = [];
    const faults: Array<{ code: string; antenna?: number; active: boolean }> = [];
    const links: boolean[] = [];

    beforeAll(async () => {
      await link.start();
      sim.start([
        '--path',
        link.reader,
        '--framing',
        framing,
        '--seed',
        '11',
        '--tags',
        [1, 2, 3, 4].map((i) => `${EPC(i)}:${1 + (i % 2)}`).join(','),
        // Real-line faults: missed reads, noise before answers, corrupted checks.
        '--miss-rate',
        '0.1',
        '--noise-rate',
        '0.05',
        '--crc-error-rate',
        '0.03',
        '--tags-per-frame',
        '2',
      ]);
      await waitFor(() => sim.lines.some((l) => l.ev === 'started'), 30_000, 'sim process started', 50);
      driver = new RfidDriver({
        path: link.edge,
        framing,
        antennas: [1, 2],
        roundIntervalMs: 30,
        // 5 consecutive missed rounds at a 10% miss rate: 1e-5 per tag and window.
        departRounds: 5,
        departMs: 300,
        responseTimeoutMs: 400,
        retries: 3,
        linkTimeoutRounds: 2,
        reopenMinMs: 50,
        reopenMaxMs: 400,
      });
      driver.on('tag.arrived', (a) => arrived.push(a));
      driver.on('tag.departed', (d) => departed.push(d));
      driver.on('fault', (f) => faults.push(f));
      driver.on('link', (l) => links.push(l.up));
      await driver.start();
    }, 60_000);

    afterAll(async () => {
      await driver?.stop();
      sim.kill();
      link.cleanup();
    });

    it('reports every tag once on its antenna, and keeps them through misses, noise and CRC errors', async () => {
      await waitFor(() => driver.present().size === 4, 20_000, 'four tags present', 20);
      expect(arrived.map((a) => a.epc).sort()).toEqual([1, 2, 3, 4].map(EPC).sort());
      expect(driver.present().get(EPC(1))?.antenna).toBe(2);
      expect(driver.present().get(EPC(2))?.antenna).toBe(1);
      const rounds = driver.counters.rounds;
      await waitFor(() => driver.counters.rounds >= rounds + 40, 60_000, '40 more rounds', 50);
      expect(departed).toEqual([]);
      expect(arrived).toHaveLength(4);
      const status = await sim.send('status');
      const c = status.counters as unknown as RfidSimCounters;
      expect(c.missedReads).toBeGreaterThan(0);
      expect(c.noiseBursts + c.corruptedFrames).toBeGreaterThan(0);
      expect(Object.values(driver.counters.parseErrors).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    });

    it('a tag placed and taken away: arrival, then departure after the smoothing window', async () => {
      await sim.send(`add ${EPC(9)} 2 90`);
      await waitFor(() => arrived.some((a) => a.epc === EPC(9)), 10_000, 'arrival of tag 9', 20);
      expect(arrived.find((a) => a.epc === EPC(9))?.antenna).toBe(2);
      await sim.send(`remove ${EPC(9)}`);
      const d = await waitFor(() => departed.find((x) => x.epc === EPC(9)), 20_000, 'departure of tag 9', 20);
      expect(d.at - d.lastSeen).toBeGreaterThanOrEqual(300);
      expect(departed).toHaveLength(1);
    });

    it('inventoryNow gives the closed-door view', async () => {
      await sim.send(`remove ${EPC(4)}`);
      await sim.send('miss 0');
      const round = await driver.inventoryNow();
      expect([...round.tags.keys()].sort()).toEqual([1, 2, 3].map(EPC).sort());
      await sim.send(`add ${EPC(4)} 1`);
      const again = await driver.inventoryNow();
      expect(again.tags.has(EPC(4))).toBe(true);
      await sim.send('miss 0.1');
    });

    it('an antenna fault is raised, its tags are kept, and it clears when the antenna answers', async () => {
      await sim.send('antenna 2 fault');
      await waitFor(
        () => faults.find((f) => f.code === 'EDGE_ERR_RFID_ANTENNA' && f.antenna === 2 && f.active),
        20_000,
        'antenna 2 fault',
        20,
      );
      const r = await driver.inventoryNow();
      expect(r.complete).toBe(false);
      expect(driver.present().has(EPC(1))).toBe(true); // on the failed antenna, kept
      await sim.send('antenna 2 ok');
      await waitFor(() => faults.some((f) => f.antenna === 2 && !f.active), 20_000, 'fault cleared', 20);
      expect(departed.filter((d) => d.epc !== EPC(9))).toEqual([]);
    });

    it('serial link killed (SIGKILL socat) and restored: reopened, no tag reported gone', async () => {
      const losses = driver.counters.portLosses;
      link.kill();
      await waitFor(() => !driver.isLinkUp, 20_000, 'link down', 20);
      await new Promise((r) => setTimeout(r, 300)); // a few rounds run with the port gone
      await link.start();
      await waitFor(
        () => driver.isLinkUp && driver.lastRoundResult?.complete,
        30_000,
        'link back and a complete round',
        50,
      );
      expect(driver.counters.portLosses + driver.counters.linkDowns).toBeGreaterThan(losses);
      expect(links.at(-1)).toBe(true);
      expect([...driver.present().keys()].sort()).toEqual([1, 2, 3, 4].map(EPC).sort());
      expect(departed.filter((d) => d.epc !== EPC(9))).toEqual([]);
    });
  });
}
