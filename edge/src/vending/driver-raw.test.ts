import { SerialPortStream } from '@serialport/stream';
import { mdb } from '@storelink/protocols';
import { afterEach, describe, expect, it } from 'vitest';
import { VmcDriver } from './driver.ts';
import { createMockLink } from './mock-link.ts';

/** The driver against a hand-driven VMC: exact bytes in, exact answers out. */
async function rig(n: number) {
  const link = createMockLink(`/dev/rawdrv-edge-${n}`, `/dev/rawdrv-vmc-${n}`);
  const kv = new Map<string, string>();
  const driver = new VmcDriver({
    path: `/dev/rawdrv-edge-${n}`,
    binding: link.binding,
    ledger: { get: async (k) => kv.get(k), put: async (k, v) => void kv.set(k, v) },
    dropWindowMs: 100,
  });
  await driver.start();
  const vmc = new SerialPortStream({
    binding: link.binding,
    path: `/dev/rawdrv-vmc-${n}`,
    baudRate: 9600,
    autoOpen: false,
  });
  await new Promise<void>((res, rej) => vmc.open((e) => (e ? rej(e) : res())));
  const parser = new mdb.FrameParser({ accept: 'peripheral' });
  const answers: mdb.MdbMessage[] = [];
  vmc.on('data', (c: Buffer) => answers.push(...parser.push(c).frames.map((f) => f.msg)));
  const send = async (
    m: mdb.MdbMessage | Buffer,
    expectAnswer = true,
  ): Promise<mdb.MdbMessage | undefined> => {
    const before = answers.length;
    vmc.write(Buffer.isBuffer(m) ? m : mdb.serialize(m));
    if (!expectAnswer) {
      await new Promise((r) => setTimeout(r, 40));
      return answers[before];
    }
    const end = Date.now() + 1000;
    while (answers.length === before) {
      if (Date.now() > end) throw new Error('no answer');
      await new Promise((r) => setTimeout(r, 2));
    }
    return answers[before];
  };
  cleanups.push(async () => {
    await driver.stop();
    await new Promise<void>((r) => vmc.close(() => r()));
  });
  return { driver, send, answers };
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const A = 0x10 as const;
const v = (m: Record<string, unknown>) => ({ dir: 'vmc', addr: A, ...m }) as mdb.VmcMsg;

async function enable(send: Awaited<ReturnType<typeof rig>>['send']) {
  expect(await send(v({ type: 'RESET' }))).toEqual({ dir: 'peripheral', type: 'ACK' });
  expect(await send(v({ type: 'POLL' }))).toEqual({ dir: 'peripheral', type: 'JUST_RESET' });
  await send({ dir: 'vmc', type: 'ACK' }, false);
  const cfg = await send(v({ type: 'SETUP_CONFIG', featureLevel: 1, columns: 0, rows: 0, displayInfo: 0 }));
  expect(cfg?.type).toBe('READER_CONFIG');
  await send({ dir: 'vmc', type: 'ACK' }, false);
  expect((await send(v({ type: 'READER_ENABLE' })))?.type).toBe('ACK');
}

describe('VmcDriver, byte-level', () => {
  it('repeats an unconfirmed answer on RET and on the next POLL after NAK', async () => {
    const { driver, send } = await rig(1);
    await enable(send);
    const p = driver.vend({ orderId: 'r-1', slot: 3, priceCents: 120 });
    await new Promise((r) => setTimeout(r, 20));
    const begin = await send(v({ type: 'POLL' }));
    expect(begin).toEqual({ dir: 'peripheral', type: 'BEGIN_SESSION', funds: 120, item: 3 });
    expect(await send({ dir: 'vmc', type: 'RET' })).toEqual(begin);
    await send({ dir: 'vmc', type: 'NAK' }, false);
    expect(await send(v({ type: 'POLL' }))).toEqual(begin);
    expect(driver.counters.retransmitRequests).toBe(1);
    expect(driver.counters.naksReceived).toBe(1);
    await send({ dir: 'vmc', type: 'ACK' }, false);
    expect(driver.readerState).toBe('session');
    // A repeated VEND REQUEST (our answer lost) gets the same answer, approves once.
    const req = v({ type: 'VEND_REQUEST', price: 120, item: 3 });
    const approved = await send(req);
    expect(approved).toEqual({ dir: 'peripheral', type: 'VEND_APPROVED', amount: 120 });
    expect(await send(req)).toEqual(approved);
    await send({ dir: 'vmc', type: 'ACK' }, false);
    await send(v({ type: 'VEND_SUCCESS', item: 3 }));
    const o = await p; // no drop line configured: no confirmation, so never dispensed
    expect(o).toMatchObject({ outcome: 'failed', reason: 'no_drop' });
  });

  it('refuses out-of-sequence commands, ignores other addresses and garbage, and counts them', async () => {
    const { driver, send } = await rig(2);
    await enable(send);
    expect(await send(v({ type: 'VEND_REQUEST', price: 100, item: 1 }))).toEqual({
      dir: 'peripheral',
      type: 'OUT_OF_SEQUENCE',
    });
    expect(driver.counters.outOfSequence).toBe(1);
    await send({ dir: 'vmc', type: 'ACK' }, false); // data answers stay unconfirmed until ACKed
    expect(await send({ dir: 'vmc', addr: 0x60, type: 'POLL' }, false)).toBeUndefined();
    expect(await send(Buffer.from([0xff, 0x13, 0x02, 0x01, 0x12, 0x99]), false)).toBeUndefined();
    expect(driver.counters.parseErrors.PROTO_ERR_MDB_GARBAGE).toBe(2); // before the SYNC, and the rest after resync
    expect(driver.counters.parseErrors.PROTO_ERR_MDB_CHECKSUM).toBe(1);
    // The line still works.
    expect(await send(v({ type: 'POLL' }))).toEqual({ dir: 'peripheral', type: 'ACK' });
  });
});
