import { SerialPortStream } from '@serialport/stream';
import { rfid } from '@storelink/protocols';
import { afterEach, describe, expect, it } from 'vitest';
import { createMockLink, type MockLink } from '../../../edge/src/vending/mock-link.ts';
import { RfidReaderSim } from './reader.ts';

/**
 * The simulated reader seen from a bare host: raw command bytes in, frames out, parsed
 * with the protocols codecs (no edge driver involved).
 */
const { chafon, r2000 } = rfid;
let n = 0;
const open: Array<{ sim: RfidReaderSim; host: SerialPortStream }> = [];

async function rig(
  framing: 'chafon' | 'r2000',
  o: Partial<ConstructorParameters<typeof RfidReaderSim>[0]> = {},
) {
  n++;
  const link: MockLink = createMockLink(`/dev/sim-host-${n}`, `/dev/sim-reader-${n}`);
  const sim = new RfidReaderSim({
    path: `/dev/sim-reader-${n}`,
    binding: link.binding,
    framing,
    seed: 5,
    ...o,
  });
  await sim.start();
  const host = new SerialPortStream({ binding: link.binding, path: `/dev/sim-host-${n}`, baudRate: 115200 });
  await new Promise((r) => host.once('open', r));
  const parser =
    framing === 'chafon'
      ? new chafon.ChafonParser({ from: 'reader' })
      : new r2000.R2000Parser({ from: 'reader' });
  const frames: unknown[] = [];
  const errors: string[] = [];
  host.on('data', (c: Buffer) => {
    const r = parser.push(c);
    frames.push(...r.frames.map((f) => f.msg));
    errors.push(...r.errors.map((e) => e.code));
  });
  open.push({ sim, host });
  return { sim, host, frames, errors, send: (b: Buffer) => host.write(b) };
}

afterEach(async () => {
  for (const { sim, host } of open.splice(0)) {
    await new Promise<void>((r) => host.close(() => r()));
    await sim.stop();
  }
});

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what} not met`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('RfidReaderSim', () => {
  it('chafon: a round of 5 tags in frames of 2 is 03, 03, 01; a faulty antenna answers F8', async () => {
    const r = await rig('chafon', { tagsPerFrame: 2 });
    for (let i = 0; i < 5; i++) r.sim.addTag(`aabbccdd00${i}0`, 1, 0x60 + i);
    r.send(chafon.serialize(chafon.inventoryCommand(1)));
    await until(() => r.frames.length === 3, 'three frames');
    const replies = r.frames as Array<{
      type: string;
      status: number;
      tags: Array<{ epc: string; rssi: number }>;
    }>;
    expect(replies.map((f) => f.status)).toEqual([3, 3, 1]);
    expect(replies.flatMap((f) => f.tags).map((t) => t.epc)).toEqual(
      [0, 1, 2, 3, 4].map((i) => `aabbccdd00${i}0`),
    );
    r.sim.setAntennaFault(2, true);
    r.send(chafon.serialize(chafon.inventoryCommand(2)));
    await until(() => r.frames.length === 4, 'fault answer');
    expect(r.frames[3]).toEqual({ dir: 'reader', addr: 0, type: 'REPLY', cmd: 1, status: 0xf8, data: '' });
    expect(r.errors).toEqual([]);
  });

  it('r2000: set antenna then real-time inventory answers one frame per tag and the end-of-round count', async () => {
    const r = await rig('r2000');
    r.sim.addTag('e2801160600002040000a1b2', 3, 0x4a);
    r.sim.addTag('e2801160600002040000a1b3', 3, 0x4b);
    r.sim.addTag('e2801160600002040000a1b4', 1, 0x4c);
    r.send(r2000.serialize({ dir: 'host', addr: 1, type: 'SET_WORK_ANTENNA', antenna: 3 }));
    r.send(r2000.serialize({ dir: 'host', addr: 1, type: 'REAL_TIME_INVENTORY', repeat: 1 }));
    await until(() => r.frames.length === 4, 'four frames');
    expect(r.frames[0]).toMatchObject({ type: 'RESULT', cmd: 0x74, code: 0x10 });
    expect(r.frames.slice(1, 3)).toMatchObject([
      { type: 'TAG', antenna: 3, pc: 0x3000, epc: 'e2801160600002040000a1b2', rssi: 0x4a },
      { type: 'TAG', antenna: 3, epc: 'e2801160600002040000a1b3' },
    ]);
    expect(r.frames[3]).toMatchObject({ type: 'INVENTORY_END', antenna: 3, totalRead: 2 });
    r.sim.setAntennaFault(2, true);
    r.send(r2000.serialize({ dir: 'host', addr: 1, type: 'SET_WORK_ANTENNA', antenna: 2 }));
    await until(() => r.frames.length === 5, 'antenna missing');
    expect(r.frames[4]).toMatchObject({ type: 'RESULT', cmd: 0x74, code: 0x22 });
  });

  it('faults: misses, corrupted checks and silence are seeded and counted', async () => {
    const r = await rig('r2000', { missRate: 0.5, crcErrorRate: 0.5 });
    for (let i = 0; i < 20; i++) r.sim.addTag(`00112233445566778899${i.toString(16).padStart(4, '0')}`, 1);
    r.send(r2000.serialize({ dir: 'host', addr: 1, type: 'REAL_TIME_INVENTORY', repeat: 1 }));
    await until(
      () =>
        r.sim.counters.framesOut > 0 &&
        r.frames.length + r.errors.length >= r.sim.counters.framesOut - r.sim.counters.corruptedFrames,
      'answer',
    );
    const c = r.sim.counters;
    expect(c.missedReads).toBeGreaterThan(0);
    expect(c.missedReads + c.tagReads).toBe(20);
    expect(c.corruptedFrames).toBeGreaterThan(0);
    await until(
      () => r.errors.filter((e) => e === 'PROTO_ERR_RFID_CRC').length > 0,
      'crc errors seen by the host',
    );
    r.sim.silentRate = 1;
    const before = r.frames.length;
    r.send(r2000.serialize({ dir: 'host', addr: 1, type: 'SET_WORK_ANTENNA', antenna: 1 }));
    await until(() => r.sim.counters.silentCommands === 1, 'silent command');
    expect(r.frames.length).toBe(before);
  });
});
