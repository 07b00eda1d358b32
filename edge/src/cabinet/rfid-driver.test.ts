import { afterEach, describe, expect, it } from 'vitest';
import { RfidReaderSim } from '../../../firmware-sim/src/rfid/index.ts';
import { RfidDriver } from '../rfid/driver.ts';
import { createMockLink } from '../vending/mock-link.ts';
import { diffInventory, rfidInventory } from './inventory.ts';

/**
 * The cabinet's RFID inventory adapter over the real RFID driver (edge/src/rfid) talking
 * to the simulated reader over @serialport/binding-mock (Chafon framing), with a reader
 * that misses 30 % of reads per round [CAB-INV-1][CAB-INV-2].
 */
const EPC = (i: number) => `e2801160600002040000${i.toString(16).padStart(4, '0')}`;
const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

async function rig(missRate: number) {
  const link = createMockLink('/dev/cab-rfid-edge', '/dev/cab-rfid-reader');
  const sim = new RfidReaderSim({
    path: '/dev/cab-rfid-reader',
    binding: link.binding,
    framing: 'chafon',
    seed: 11,
    reopenMs: 10,
    missRate,
  });
  const driver = new RfidDriver({
    path: '/dev/cab-rfid-edge',
    binding: link.binding,
    framing: 'chafon',
    antennas: [1, 2],
    roundIntervalMs: 0,
    departRounds: 3,
    departMs: 2000,
    dedupeMs: 1000,
    responseTimeoutMs: 1000,
    retries: 2,
    reopenMinMs: 10,
    reopenMaxMs: 40,
  });
  await sim.start();
  await driver.start();
  stops.push(async () => {
    await driver.stop();
    await sim.stop();
  });
  return { sim, driver };
}

describe('cabinet RFID inventory over the real driver and the simulated reader', () => {
  it('a 30 % miss rate: nothing is taken that is still inside; a removed tag is taken', async () => {
    const { sim, driver } = await rig(0.3);
    const skus = new Map<string, string>();
    for (let i = 1; i <= 12; i++) {
      sim.addTag(EPC(i), 1 + (i % 2));
      skus.set(EPC(i), i % 3 === 0 ? 'juice' : 'sandwich');
    }
    const inv = rfidInventory(driver, { skuOf: (e) => skus.get(e), rounds: 3, extraRounds: 8 });
    // the opening count expects what the last closing count saw (here: the stock list)
    const lastClosing = {
      items: [...skus].map(([epc, sku]) => ({ key: `rfid:${epc}`, sku, qty: 1 })),
      unresolved: [],
      sources: ['rfid' as const],
    };
    const opening = await inv.snapshot({ expect: lastClosing });
    expect(opening.items).toHaveLength(12);
    sim.removeTag(EPC(3)); // juice
    const closing = await inv.snapshot({ expect: opening });
    expect(diffInventory(opening, closing)).toEqual({
      taken: [{ sku: 'juice', qty: 1 }],
      returned: [],
      unresolved: [],
    });
  }, 30_000);

  it('an antenna that fails: its expected tags are unknown, never charged', async () => {
    const { sim, driver } = await rig(0);
    sim.addTag(EPC(1), 1);
    sim.addTag(EPC(2), 2);
    const inv = rfidInventory(driver, { skuOf: () => 'sandwich', rounds: 2, extraRounds: 2 });
    const opening = await inv.snapshot();
    expect(opening.items).toHaveLength(2);
    sim.setAntennaFault(2, true);
    const closing = await inv.snapshot({ expect: opening });
    const d = diffInventory(opening, closing);
    expect(d.taken).toEqual([]);
    expect(d.unresolved).toEqual([{ key: `rfid:${EPC(2)}`, reason: 'unknown' }]);
  }, 30_000);
});
