import type { SerialPortStream } from '@serialport/stream';
import { rfid } from '@storelink/protocols';
import { SerialPortMock } from 'serialport';
import { type Framing, RfidDriver } from '../edge/src/rfid/driver.ts';
import { log, num, str, type Scenario } from './lib.ts';

type BindingInterface = ConstructorParameters<typeof SerialPortStream>[0]['binding'];
const MockBinding = SerialPortMock.binding;
const { chafon, r2000 } = rfid;

export interface RfidFramingResult {
  framing: Framing;
  tags: number;
  rounds: number;
  /** Reader frames the driver received and handled. */
  frames: number;
  bytes: number;
  /** Baseline: the same answer bytes, in the same chunks, through a bare parser. */
  raw_frames_s: number;
  /** Frames per second through the driver: parse, match to the command, merge, smooth, emit. */
  driver_frames_s: number;
  /** driver_frames_s / raw_frames_s in this run. */
  ratio: number;
  /** tag.arrived + tag.departed per second (half the population changes every round). */
  events: number;
  events_s: number;
  /** Raw tag reads per second through the driver. */
  reads_s: number;
  wall_s: number;
}

export interface RfidBenchResult {
  chafon?: RfidFramingResult;
  r2000?: RfidFramingResult;
  /** Events the driver missed: expected arrivals+departures minus those seen (must be 0). */
  lost_events: number;
}

const EPC = (i: number) => `e2003412${i.toString(16).padStart(16, '0')}`;

/** The reader's answers, precomputed per antenna and population, so the reader costs nothing. */
function answers(framing: Framing, population: string[][], tagsPerFrame: number) {
  const perAntenna = (tags: string[], antenna: number): Buffer => {
    if (framing === 'chafon') {
      const frames: Buffer[] = [];
      for (let i = 0; i === 0 || i < tags.length; i += tagsPerFrame) {
        const chunk = tags.slice(i, i + tagsPerFrame);
        const last = i + tagsPerFrame >= tags.length;
        frames.push(
          chafon.serialize({
            dir: 'reader',
            addr: 0,
            type: 'INVENTORY_REPLY',
            status: last ? chafon.STATUS.COMPLETE : chafon.STATUS.MORE_FRAMES,
            antenna,
            tags: chunk.map((epc, k) => ({ epc, rssi: 0x50 + (k % 32) })),
          }),
        );
      }
      return Buffer.concat(frames);
    }
    const cmd = r2000.CMD.REAL_TIME_INVENTORY;
    const frames = tags.map((epc, k) =>
      r2000.serialize({
        dir: 'reader',
        addr: 1,
        type: 'TAG',
        cmd,
        antenna,
        freq: k % 50,
        pc: 0x3000,
        epc,
        rssi: 0x40 + (k % 32),
      }),
    );
    frames.push(
      r2000.serialize({
        dir: 'reader',
        addr: 1,
        type: 'INVENTORY_END',
        cmd,
        antenna,
        readRate: 100,
        totalRead: tags.length,
      }),
    );
    return Buffer.concat(frames);
  };
  // population[p] = tags; antenna a gets every 4th tag.
  return population.map((tags) =>
    [1, 2, 3, 4].map((a) =>
      perAntenna(
        tags.filter((_, i) => i % 4 === a - 1),
        a,
      ),
    ),
  );
}

/** A binding-mock port that answers each command at once from the precomputed answers. */
function benchBinding(
  path: string,
  framing: Framing,
  table: Buffer[][],
  roundOf: () => number,
  sent: Buffer[],
): BindingInterface {
  MockBinding.createPort(path, { echo: false, record: false });
  const setOk = r2000.serialize({
    dir: 'reader',
    addr: 1,
    type: 'RESULT',
    cmd: r2000.CMD.SET_WORK_ANTENNA,
    code: r2000.RESULT.SUCCESS,
  });
  let workAntenna = 1;
  return {
    ...MockBinding,
    list: () => MockBinding.list(),
    async open(options: Parameters<typeof MockBinding.open>[0]) {
      const port = await MockBinding.open(options);
      const internal = port as unknown as { emitData(b: Buffer): void };
      const origWrite = port.write.bind(port);
      port.write = async (buf: Buffer) => {
        await origWrite(buf);
        let reply: Buffer;
        if (framing === 'chafon') {
          const antenna = ((buf[10] as number) & 0x03) + 1;
          reply = table[roundOf() % table.length]![antenna - 1]!;
        } else if (buf[3] === r2000.CMD.SET_WORK_ANTENNA) {
          workAntenna = (buf[4] as number) + 1;
          reply = setOk;
        } else {
          reply = table[roundOf() % table.length]![workAntenna - 1]!;
        }
        sent.push(reply);
        setImmediate(() => internal.emitData(reply));
      };
      return port;
    },
  } as unknown as BindingInterface;
}

let seq = 0;

async function runFraming(
  framing: Framing,
  nTags: number,
  rounds: number,
  tagsPerFrame: number,
): Promise<RfidFramingResult> {
  // Two populations sharing half their tags: every round, nTags/2 arrive and nTags/2 depart.
  const half = Math.floor(nTags / 2);
  const common = Array.from({ length: nTags - half }, (_, i) => EPC(i));
  const popA = [...common, ...Array.from({ length: half }, (_, i) => EPC(100_000 + i))];
  const popB = [...common, ...Array.from({ length: half }, (_, i) => EPC(200_000 + i))];
  const table = answers(framing, [popA, popB], tagsPerFrame);
  let round = 0;
  const sent: Buffer[] = [];
  const path = `/dev/bench-rfid-${framing}-${++seq}`;
  const driver = new RfidDriver({
    path,
    framing,
    binding: benchBinding(path, framing, table, () => round, sent),
    antennas: [1, 2, 3, 4],
    roundIntervalMs: 0,
    departRounds: 1,
    departMs: 0,
    responseTimeoutMs: 5000,
  });
  let events = 0;
  driver.on('tag.arrived', () => events++);
  driver.on('tag.departed', () => events++);
  await driver.start();
  // Warm-up round (JIT, first arrivals).
  await driver.inventoryNow();
  round++;
  const before = { frames: driver.counters.framesIn, reads: driver.counters.reads, events };
  sent.length = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) {
    await driver.inventoryNow();
    round++;
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const frames = driver.counters.framesIn - before.frames;
  const reads = driver.counters.reads - before.reads;
  const evs = events - before.events;
  const errors = Object.values(driver.counters.parseErrors).reduce((a, b) => a + b, 0);
  await driver.stop();
  if (errors > 0) throw new Error(`${framing}: driver saw ${errors} parse errors on clean input`);

  // Baseline: the same bytes in the same chunks through a bare parser, best of 3.
  const bytes = sent.reduce((a, b) => a + b.length, 0);
  let rawBest = Number.POSITIVE_INFINITY;
  let rawFrames = 0;
  for (let k = 0; k < 3; k++) {
    const p =
      framing === 'chafon'
        ? new chafon.ChafonParser({ from: 'reader' })
        : new r2000.R2000Parser({ from: 'reader' });
    const r0 = process.hrtime.bigint();
    let n = 0;
    for (const chunk of sent) n += p.push(chunk).frames.length;
    rawBest = Math.min(rawBest, Number(process.hrtime.bigint() - r0) / 1e9);
    rawFrames = n;
  }
  if (rawFrames !== frames)
    throw new Error(`${framing}: raw parse found ${rawFrames} frames, driver ${frames}`);
  const rawFramesS = rawFrames / rawBest;
  const driverFramesS = frames / wall;
  const res: RfidFramingResult = {
    framing,
    tags: nTags,
    rounds,
    frames,
    bytes,
    raw_frames_s: Math.round(rawFramesS),
    driver_frames_s: Math.round(driverFramesS),
    ratio: Number((driverFramesS / rawFramesS).toFixed(4)),
    events: evs,
    events_s: Math.round(evs / wall),
    reads_s: Math.round(reads / wall),
    wall_s: Number(wall.toFixed(3)),
  };
  log(framing, res);
  return res;
}

/**
 * `bench rfid`: the edge RFID driver (edge/src/rfid) over @serialport/binding-mock against a
 * reader whose answers are precomputed (so the reader costs nothing): 4 antennas, `--tags`
 * tags, two populations sharing half their tags alternating every round, departRounds 1, so
 * each round makes tags/2 arrivals and tags/2 departures. Reports frames/s and events/s
 * through the driver, and the same answer bytes through a bare parser in the same run
 * (`raw_frames_s`, best of 3) with their ratio.
 */
export const rfidBench: Scenario<RfidBenchResult> = {
  name: 'rfid',
  description: 'RFID driver: frames/s and tag events/s through the driver vs a raw parse of the same bytes',
  options: {
    framing: { type: 'string', default: 'both' },
    tags: { type: 'string', default: '400' },
    rounds: { type: 'string', default: '200' },
    'tags-per-frame': { type: 'string', default: '8' },
  },
  mustBeZero: ['lost_events'],
  async run(args) {
    const which = str(args.framing, 'both');
    const nTags = num(args.tags, 400);
    const rounds = num(args.rounds, 200);
    const perFrame = num(args['tags-per-frame'], 8);
    const out: RfidBenchResult = { lost_events: 0 };
    for (const f of ['chafon', 'r2000'] as const) {
      if (which !== 'both' && which !== f) continue;
      const r = await runFraming(f, nTags, rounds, perFrame);
      out[f] = r;
      out.lost_events += rounds * Math.floor(nTags / 2) * 2 - r.events;
    }
    return out;
  },
};
