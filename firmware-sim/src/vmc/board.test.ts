import { mdb } from '@storelink/protocols';
import { SerialPortStream } from '@serialport/stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createMockLink } from '../../../edge/src/vending/mock-link.ts';
import { VmcBoard } from './board.ts';

/** A scripted raw cashless device: records the board's frames and answers by a rule. */
async function rawPeer(n: number, answer: (m: mdb.MdbMessage) => mdb.MdbMessage | null) {
  const link = createMockLink(`/dev/raw-${n}`, `/dev/board-${n}`);
  const port = new SerialPortStream({
    binding: link.binding,
    path: `/dev/raw-${n}`,
    baudRate: 9600,
    autoOpen: false,
  });
  await new Promise<void>((res, rej) => port.open((e) => (e ? rej(e) : res())));
  const parser = new mdb.FrameParser();
  const seen: mdb.MdbMessage[] = [];
  const raw: Buffer[] = [];
  let errors = 0;
  port.on('data', (chunk: Buffer) => {
    raw.push(chunk);
    const r = parser.push(chunk);
    errors += r.errors.length;
    for (const f of r.frames) {
      seen.push(f.msg);
      const a = answer(f.msg);
      if (a) port.write(mdb.serialize(a));
    }
  });
  return { link, port, seen, raw, errors: () => errors };
}

const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

const boards: VmcBoard[] = [];
afterEach(async () => {
  for (const b of boards.splice(0)) await b.stop();
});

let n = 0;
function board(path: string, binding: ConstructorParameters<typeof VmcBoard>[0]['binding'], seed = 1) {
  const b = new VmcBoard({ path, binding, seed, pollMs: 5, responseTimeoutMs: 30, retries: 2 });
  boards.push(b);
  return b;
}

describe('VmcBoard (MDB master) against a raw scripted reader', () => {
  it('starts with RESET and repeats a command the reader does not answer', async () => {
    const peer = await rawPeer(++n, () => null); // a silent reader
    const b = board(`/dev/board-${n}`, peer.link.binding);
    await b.start();
    await until(() => peer.seen.length >= 3);
    expect(peer.seen.slice(0, 3).map((m) => m.type)).toEqual(['RESET', 'RESET', 'RESET']);
    expect(b.counters.retransmits).toBeGreaterThanOrEqual(2);
  });

  it('sets the reader up in MDB order and ACKs its data answers', async () => {
    const peer = await rawPeer(++n, (m) => {
      if (m.dir !== 'vmc' || mdb.isControl(m)) return null;
      if (m.type === 'SETUP_CONFIG') {
        return {
          dir: 'peripheral',
          type: 'READER_CONFIG',
          featureLevel: 1,
          countryCode: 0x1156,
          scaleFactor: 1,
          decimalPlaces: 2,
          maxResponseTime: 5,
          options: 0,
        };
      }
      if (m.type === 'POLL' && !justResetSent) {
        justResetSent = true;
        return { dir: 'peripheral', type: 'JUST_RESET' };
      }
      return { dir: 'peripheral', type: 'ACK' };
    });
    let justResetSent = false;
    const b = board(`/dev/board-${n}`, peer.link.binding);
    await b.start();
    await until(() => peer.seen.filter((m) => m.type === 'POLL').length >= 3);
    const types = peer.seen.map((m) => m.type);
    expect(types.slice(0, 6)).toEqual(['RESET', 'POLL', 'ACK', 'SETUP_CONFIG', 'ACK', 'SETUP_PRICES']);
    expect(types).toContain('READER_ENABLE');
  });

  it('garble fault: the next frame fails its checksum; the same seed garbles the same byte', async () => {
    const runs: string[] = [];
    for (let k = 0; k < 2; k++) {
      const peer = await rawPeer(++n, () => null);
      const b = board(`/dev/board-${n}`, peer.link.binding, 99);
      b.fault('garble');
      await b.start();
      await until(() => peer.errors() >= 1 && peer.seen.length >= 1);
      runs.push(Buffer.concat(peer.raw).subarray(0, 4).toString('hex'));
      await b.stop();
    }
    expect(runs[0]).not.toBe(mdb.serialize({ dir: 'vmc', addr: 0x10, type: 'RESET' }).toString('hex'));
    expect(runs[0]).toBe(runs[1]);
  });

  it('power loss: the board falls silent, then cold-starts with RESET', async () => {
    const peer = await rawPeer(++n, () => ({ dir: 'peripheral', type: 'ACK' }));
    const b = board(`/dev/board-${n}`, peer.link.binding);
    await b.start();
    await until(() => peer.seen.length >= 5);
    b.fault('power_loss', { ms: 200 });
    await new Promise((r) => setTimeout(r, 40));
    const during = peer.seen.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(peer.seen.length).toBe(during);
    await until(() => peer.seen.slice(during).some((m) => m.type === 'RESET'));
  });
});
