import { afterEach, describe, expect, it } from 'vitest';
import { RfidReaderSim } from '../../../firmware-sim/src/rfid/index.ts';
import { createMockLink, type MockLink } from '../vending/mock-link.ts';
import type { TagArrived, TagDeparted } from './api.ts';
import { type Framing, RfidDriver, type RfidDriverOptions } from './driver.ts';

/**
 * The real driver against the simulated reader over @serialport/binding-mock, for both
 * framings (one suite, two implementations: house style 1). Rounds are run on demand
 * (roundIntervalMs 0) and the driver's clock is a manual one, so smoothing is exact.
 */

interface Rig {
  link: MockLink;
  sim: RfidReaderSim;
  driver: RfidDriver;
  clock: { t: number };
  arrived: TagArrived[];
  departed: TagDeparted[];
  faults: Array<{ code: string; antenna?: number; active: boolean }>;
}

let n = 0;
const rigs: Rig[] = [];

async function rig(
  framing: Framing,
  o: Partial<RfidDriverOptions> = {},
  simOpts: { tagsPerFrame?: number } = {},
): Promise<Rig> {
  n++;
  const link = createMockLink(`/dev/rfid-edge-${n}`, `/dev/rfid-reader-${n}`);
  const sim = new RfidReaderSim({
    path: `/dev/rfid-reader-${n}`,
    binding: link.binding,
    framing,
    seed: n,
    reopenMs: 10,
    ...(simOpts.tagsPerFrame ? { tagsPerFrame: simOpts.tagsPerFrame } : {}),
  });
  const clock = { t: 1_000_000 };
  const driver = new RfidDriver({
    path: `/dev/rfid-edge-${n}`,
    binding: link.binding,
    framing,
    antennas: [1, 2],
    roundIntervalMs: 0,
    departRounds: 3,
    departMs: 2000,
    dedupeMs: 1000,
    // Generous: a loaded machine must not turn a slow answer into a failed antenna.
    responseTimeoutMs: 1000,
    retries: 2,
    reopenMinMs: 10,
    reopenMaxMs: 40,
    now: () => clock.t,
    ...o,
  });
  const r: Rig = { link, sim, driver, clock, arrived: [], departed: [], faults: [] };
  driver.on('tag.arrived', (e) => r.arrived.push(e));
  driver.on('tag.departed', (e) => r.departed.push(e));
  driver.on('fault', (f) => r.faults.push(f));
  await sim.start();
  await driver.start();
  rigs.push(r);
  return r;
}

afterEach(async () => {
  for (const r of rigs.splice(0)) {
    await r.driver.stop();
    await r.sim.stop();
  }
});

const EPC = (i: number) => `e2801160600002040000${i.toString(16).padStart(4, '0')}`;

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Runs rounds, advancing the manual clock by `stepMs` before each. */
async function rounds(r: Rig, count: number, stepMs = 500) {
  let last: Awaited<ReturnType<RfidDriver['inventoryNow']>> | undefined;
  for (let i = 0; i < count; i++) {
    r.clock.t += stepMs;
    last = await r.driver.inventoryNow();
  }
  return last!;
}

for (const framing of ['chafon', 'r2000'] as const) {
  describe(`RFID driver over binding-mock (${framing})`, () => {
    it('reports every tag on every antenna with antenna and RSSI, including multi-frame rounds', async () => {
      const r = await rig(framing, {}, { tagsPerFrame: 2 });
      for (let i = 0; i < 5; i++) r.sim.addTag(EPC(i), 1, 0x50 + i);
      r.sim.addTag(EPC(9), 2, 0x40);
      const round = await rounds(r, 1);
      expect(round.complete).toBe(true);
      expect(round.antennasOk).toEqual([1, 2]);
      expect([...round.tags.keys()].sort()).toEqual([0, 1, 2, 3, 4, 9].map(EPC).sort());
      expect(r.arrived).toHaveLength(6);
      const p = r.driver.present();
      expect(p.get(EPC(9))?.antenna).toBe(2);
      // R2000 RSSI is converted to dBm (raw − 129); Chafon's strength byte is passed as is.
      expect(p.get(EPC(3))?.rssi).toBe(framing === 'r2000' ? 0x53 - 129 : 0x53);
      expect(p.get(EPC(3))?.lastSeen).toBe(r.clock.t);
      // A second round of the same tags reports nothing new.
      await rounds(r, 1);
      expect(r.arrived).toHaveLength(6);
      expect(r.departed).toHaveLength(0);
    });

    it('[RFID-SMOOTH-1] a tag missed in one round is not gone; it departs after N missed rounds and T ms', async () => {
      const r = await rig(framing);
      r.sim.addTag(EPC(1), 1);
      r.sim.addTag(EPC(2), 1);
      await rounds(r, 1);
      expect(r.driver.present().size).toBe(2);
      // One round where every read is missed (collision, interference): nothing departs.
      r.sim.missRate = 1;
      await rounds(r, 1);
      r.sim.missRate = 0;
      await rounds(r, 1);
      expect(r.departed).toEqual([]);
      expect(r.driver.present().size).toBe(2);
      // The tag really leaves: missed rounds 1, 2 (not yet), 3 with 1500 ms since last read (not yet: 2000 ms).
      r.sim.removeTag(EPC(2));
      const lastSeen = r.clock.t;
      await rounds(r, 3, 500);
      expect(r.departed).toEqual([]);
      expect(r.driver.present().has(EPC(2))).toBe(true);
      await rounds(r, 1, 500);
      expect(r.departed).toEqual([
        { epc: EPC(2), antenna: 1, rssi: expect.any(Number), lastSeen, at: lastSeen + 2000 },
      ]);
      expect(r.driver.present().has(EPC(2))).toBe(false);
      expect(r.driver.present().has(EPC(1))).toBe(true);
      // And comes back: one arrival.
      r.sim.addTag(EPC(2), 1);
      await rounds(r, 1);
      expect(r.arrived.filter((a) => a.epc === EPC(2))).toHaveLength(2);
    });

    it('[RFID-SMOOTH-1] a time window alone does not depart a tag missed in fewer rounds', async () => {
      const r = await rig(framing, { departRounds: 3, departMs: 100 });
      r.sim.addTag(EPC(1), 2);
      await rounds(r, 1);
      r.sim.missRate = 1;
      await rounds(r, 2, 10_000);
      expect(r.departed).toEqual([]);
      await rounds(r, 1, 10_000);
      expect(r.departed.map((d) => d.epc)).toEqual([EPC(1)]);
    });

    it('[RFID-DEDUPE-1] a tag read weaker on a neighbour antenna keeps its antenna within the window', async () => {
      const r = await rig(framing, { dedupeMs: 1000 });
      r.sim.addTag(EPC(1), 1, 0x60);
      await rounds(r, 1);
      r.sim.addTag(EPC(1), 2, 0x30); // now heard (weaker) on antenna 2 only
      await rounds(r, 1, 400);
      expect(r.driver.present().get(EPC(1))?.antenna).toBe(1);
      await rounds(r, 1, 1200);
      expect(r.driver.present().get(EPC(1))?.antenna).toBe(2);
      r.sim.addTag(EPC(1), 1, 0x70); // stronger on antenna 1: switches at once
      await rounds(r, 1, 100);
      expect(r.driver.present().get(EPC(1))?.antenna).toBe(1);
      expect(r.arrived).toHaveLength(1);
      expect(r.departed).toHaveLength(0);
    });

    it('[RFID-DEDUPE-1] a tag read by two antennas in one round is one tag, on the stronger antenna', async () => {
      const r = await rig(framing);
      r.sim.addTag(EPC(1), 2, 0x60);
      r.sim.addEcho(EPC(1), 1, 0x30);
      const round = await rounds(r, 1);
      expect(r.driver.counters.reads).toBe(2);
      expect([...round.tags.keys()]).toEqual([EPC(1)]);
      expect(round.tags.get(EPC(1))?.antenna).toBe(2);
      expect(r.arrived).toEqual([
        { epc: EPC(1), antenna: 2, rssi: framing === 'r2000' ? 0x60 - 129 : 0x60, at: r.clock.t },
      ]);
    });

    it('[RFID-RETRY-1] "no tag" answers: asked again while tags are expected there, never a fault', async () => {
      const r = await rig(framing, { departRounds: 2, departMs: 0 });
      r.sim.emptyAsNoTag = true;
      r.sim.addTag(EPC(1), 1);
      const first = await rounds(r, 1); // antenna 2 answers "no tag" once: nothing expected there
      expect(first.complete).toBe(true);
      expect(r.driver.counters.attempts.no_tag).toBe(1);
      r.sim.missRate = 1; // antenna 1 now answers "no tag" although its tag is there
      const missed = await rounds(r, 1);
      expect(missed.complete).toBe(true);
      expect(r.driver.counters.attempts.no_tag).toBe(1 + 3 + 1); // antenna 1: 1 + 2 retries; antenna 2: 1
      expect(r.driver.present().has(EPC(1))).toBe(true); // one missed round (departRounds 2)
      r.sim.removeTag(EPC(1));
      await rounds(r, 1);
      // Really gone: "no tag" is an answering antenna, so its rounds count as misses.
      expect(r.departed.map((d) => d.epc)).toEqual([EPC(1)]);
      expect(r.faults).toEqual([]);
    });

    it('[RFID-RETRY-1] antenna missing: retried, raised once, tags on it kept, cleared when it answers', async () => {
      const r = await rig(framing, { departRounds: 1, departMs: 0 });
      r.sim.addTag(EPC(1), 1);
      r.sim.addTag(EPC(2), 2);
      await rounds(r, 1);
      r.sim.setAntennaFault(2, true);
      const bad = await rounds(r, 3);
      expect(bad.complete).toBe(false);
      expect(bad.antennasFailed).toEqual([{ antenna: 2, code: 'EDGE_ERR_RFID_ANTENNA' }]);
      expect(r.faults).toEqual([
        {
          code: 'EDGE_ERR_RFID_ANTENNA',
          antenna: 2,
          active: true,
          message: expect.stringContaining('antenna 2'),
        },
      ]);
      expect(r.driver.counters.attempts.antenna_missing).toBe(9); // 3 rounds x (1 + 2 retries)
      expect(r.driver.counters.retries).toBeGreaterThanOrEqual(6);
      // A failed antenna is no evidence of absence: its tag stays.
      expect(r.driver.present().has(EPC(2))).toBe(true);
      expect(r.departed).toEqual([]);
      r.sim.setAntennaFault(2, false);
      const good = await rounds(r, 1);
      expect(good.complete).toBe(true);
      expect(r.faults.at(-1)).toMatchObject({ code: 'EDGE_ERR_RFID_ANTENNA', antenna: 2, active: false });
    });

    it('CRC failures are counted and retried until every tag is read', async () => {
      const r = await rig(framing, { retries: 6 });
      for (let i = 0; i < 6; i++) r.sim.addTag(EPC(i), 1 + (i % 2));
      r.sim.crcErrorRate = 0.3;
      const round = await rounds(r, 1);
      expect(r.driver.counters.parseErrors.PROTO_ERR_RFID_CRC).toBeGreaterThan(0);
      expect(r.driver.counters.retries).toBeGreaterThan(0);
      expect(round.tags.size).toBe(6);
      expect(round.complete).toBe(true);
    });

    it('persistent CRC failures raise EDGE_ERR_RFID_CORRUPT and keep the tags', async () => {
      const r = await rig(framing, { retries: 1, responseTimeoutMs: 150, departRounds: 1, departMs: 0 });
      for (let i = 0; i < 4; i++) r.sim.addTag(EPC(i), 1 + (i % 2));
      await rounds(r, 1);
      r.sim.crcErrorRate = 1;
      const bad = await rounds(r, 1);
      expect(bad.antennasFailed).toEqual([
        { antenna: 1, code: 'EDGE_ERR_RFID_CORRUPT' },
        { antenna: 2, code: 'EDGE_ERR_RFID_CORRUPT' },
      ]);
      expect(r.driver.counters.attempts.corrupt).toBe(4);
      expect(r.driver.present().size).toBe(4);
      expect(r.departed).toEqual([]);
    });

    it('noise bytes before answers lose no tag', async () => {
      const r = await rig(framing, { interByteTimeoutMs: 10 });
      for (let i = 0; i < 8; i++) r.sim.addTag(EPC(i), 1);
      r.sim.noiseRate = 0.5;
      for (let k = 0; k < 5; k++) {
        const round = await rounds(r, 1);
        expect(round.tags.size).toBe(8);
      }
      expect(r.sim.counters.noiseBursts).toBeGreaterThan(0);
      expect(Object.values(r.driver.counters.parseErrors).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
      expect(r.departed).toEqual([]);
    });

    it('a silent reader times out (EDGE_ERR_RFID_TIMEOUT), the port is reopened, and rounds resume', async () => {
      const r = await rig(framing, {
        retries: 1,
        linkTimeoutRounds: 2,
        departRounds: 1,
        departMs: 0,
        responseTimeoutMs: 200,
      });
      r.sim.addTag(EPC(1), 1);
      await rounds(r, 1);
      const opens = r.driver.counters.portOpens;
      r.sim.silentRate = 1;
      const bad = await rounds(r, 2);
      expect(bad.antennasFailed.map((a) => a.code)).toContain('EDGE_ERR_RFID_TIMEOUT');
      expect(r.faults.some((f) => f.code === 'EDGE_ERR_RFID_TIMEOUT' && f.active)).toBe(true);
      expect(r.driver.present().has(EPC(1))).toBe(true); // silence is no evidence of absence
      await until(() => r.driver.counters.portOpens > opens, 'port reopened after silence');
      r.sim.silentRate = 0;
      const good = await rounds(r, 1);
      expect(good.complete).toBe(true);
      expect(r.driver.isLinkUp).toBe(true);
    });

    it('port unplugged and plugged back: link_down rounds, reopen, no tag reported gone', async () => {
      const r = await rig(framing, { departRounds: 1, departMs: 0 });
      const links: boolean[] = [];
      r.driver.on('link', (l) => links.push(l.up));
      r.sim.addTag(EPC(1), 1);
      await rounds(r, 1);
      r.link.unplug();
      await until(() => !r.driver.isLinkUp, 'link down');
      const down = await rounds(r, 1);
      expect(down.antennasFailed.map((a) => a.code)).toEqual([
        'EDGE_ERR_RFID_LINK_DOWN',
        'EDGE_ERR_RFID_LINK_DOWN',
      ]);
      expect(r.departed).toEqual([]);
      r.link.plug();
      await until(() => r.sim.linkOpen && r.driver.counters.portOpens >= 2, 'both sides reopened');
      const up = await rounds(r, 1);
      expect(up.complete).toBe(true);
      expect(up.tags.has(EPC(1))).toBe(true);
      expect(links).toEqual([true, false, true]);
      expect(r.driver.counters.portLosses).toBeGreaterThanOrEqual(1);
    });

    it('inventoryNow while scheduled rounds run returns a round that started after the call', async () => {
      const r = await rig(framing, { roundIntervalMs: 5, now: Date.now });
      r.sim.addTag(EPC(1), 1);
      await until(() => r.driver.counters.rounds >= 2, 'scheduled rounds');
      const calledAt = Date.now();
      const round = await r.driver.inventoryNow();
      expect(round.startedAt).toBeGreaterThanOrEqual(calledAt);
      expect(round.tags.has(EPC(1))).toBe(true);
    });
  });
}
