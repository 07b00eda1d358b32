import { realpathSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { SerialPortStream } from '@serialport/stream';
import { rfid } from '@storelink/protocols';
import { mulberry32, type Rng } from '../rng.ts';

type BindingInterface = ConstructorParameters<typeof SerialPortStream>[0]['binding'];
const { chafon, r2000 } = rfid;

/**
 * A simulated UHF RFID reader on a serial port (a socat pty in system tests,
 * @serialport/binding-mock in unit tests) speaking either reader framing
 * (docs/protocol.md "RFID reader serial links"). It is a device, not a code path: it only
 * answers the bytes the host sends.
 *
 * - Chafon: TAG_INVENTORY on an antenna answers the tags on it, `tagsPerFrame` per frame with
 *   status 0x03 (more frames) and the last with 0x01 (complete); a faulty antenna answers
 *   status 0xF8.
 * - R2000: SET_WORK_ANTENNA answers 0x10, or 0x22 antenna missing; REAL_TIME_INVENTORY answers
 *   one frame per tag read on the work antenna, then the end-of-round frame.
 * Faults (seeded, so a run replays): each tag read is missed with `missRate`; each answer frame
 * is preceded by noise bytes with `noiseRate`, has a corrupted check with `crcErrorRate`, and a
 * whole command goes unanswered with `silentRate` (the host's timeout).
 */
export type Framing = 'chafon' | 'r2000';

export interface SimTag {
  epc: string;
  antenna: number;
  /** Raw RSSI byte as the framing sends it (R2000: dBm + 129; Chafon: strength byte). */
  rssi: number;
}

export interface RfidReaderSimOptions {
  path: string;
  framing: Framing;
  binding?: BindingInterface;
  baudRate?: number;
  /** Reader address (Chafon default 0x00, R2000 default 0x01). */
  addr?: number;
  antennas?: number;
  seed?: number;
  missRate?: number;
  noiseRate?: number;
  crcErrorRate?: number;
  silentRate?: number;
  /** Chafon: tags per reply frame before a 0x03 continuation. */
  tagsPerFrame?: number;
  /**
   * Answer an inventory that read nothing with the "no tag" code (Chafon status 0xFB, R2000
   * 0x36) instead of an empty round, as some firmware does.
   */
  emptyAsNoTag?: boolean;
  /** Delay before answering a command (ms). */
  answerDelayMs?: number;
  reopenMs?: number;
}

export interface RfidSimCounters {
  commands: number;
  rounds: number;
  tagReads: number;
  missedReads: number;
  framesOut: number;
  noiseBursts: number;
  corruptedFrames: number;
  silentCommands: number;
  antennaErrors: number;
  parseErrors: number;
  portOpens: number;
}

export interface RfidReaderSimEvents {
  link: [{ up: boolean }];
  round: [{ antenna: number; reads: number; fault: boolean }];
}

export class RfidReaderSim extends EventEmitter<RfidReaderSimEvents> {
  readonly tags = new Map<string, SimTag>();
  /** A tag also heard, usually weaker, by a neighbouring antenna (overlapping fields). */
  readonly echoes = new Map<string, SimTag>();
  readonly faultyAntennas = new Set<number>();
  readonly counters: RfidSimCounters = {
    commands: 0,
    rounds: 0,
    tagReads: 0,
    missedReads: 0,
    framesOut: 0,
    noiseBursts: 0,
    corruptedFrames: 0,
    silentCommands: 0,
    antennaErrors: 0,
    parseErrors: 0,
    portOpens: 0,
  };
  missRate: number;
  noiseRate: number;
  crcErrorRate: number;
  silentRate: number;
  emptyAsNoTag: boolean;
  private readonly o: Required<
    Omit<
      RfidReaderSimOptions,
      'binding' | 'missRate' | 'noiseRate' | 'crcErrorRate' | 'silentRate' | 'seed' | 'emptyAsNoTag'
    >
  >;
  private readonly binding: BindingInterface | undefined;
  private readonly rng: Rng;
  private readonly parser: rfid.chafon.ChafonParser | rfid.r2000.R2000Parser;
  private port: SerialPortStream | null = null;
  private running = false;
  private reopenTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private workAntenna = 1;
  /** Answers are written in order, one command at a time, as a reader's MCU does. */
  private chain: Promise<void> = Promise.resolve();

  constructor(opts: RfidReaderSimOptions) {
    super();
    this.o = {
      path: opts.path,
      framing: opts.framing,
      baudRate: opts.baudRate ?? 115200,
      addr: opts.addr ?? (opts.framing === 'chafon' ? 0x00 : 0x01),
      antennas: opts.antennas ?? 4,
      tagsPerFrame: opts.tagsPerFrame ?? 4,
      answerDelayMs: opts.answerDelayMs ?? 0,
      reopenMs: opts.reopenMs ?? 50,
    };
    this.binding = opts.binding;
    this.rng = mulberry32(opts.seed ?? 1);
    this.missRate = opts.missRate ?? 0;
    this.noiseRate = opts.noiseRate ?? 0;
    this.crcErrorRate = opts.crcErrorRate ?? 0;
    this.silentRate = opts.silentRate ?? 0;
    this.emptyAsNoTag = opts.emptyAsNoTag ?? false;
    this.parser =
      opts.framing === 'chafon'
        ? new chafon.ChafonParser({ from: 'host' })
        : new r2000.R2000Parser({ from: 'host' });
  }

  get linkOpen(): boolean {
    return this.port?.isOpen ?? false;
  }

  addTag(epc: string, antenna: number, rssi?: number): void {
    this.tags.set(epc, { epc, antenna, rssi: rssi ?? (this.o.framing === 'r2000' ? 0x4a : 0x6b) });
  }

  removeTag(epc: string): boolean {
    this.echoes.delete(epc);
    return this.tags.delete(epc);
  }

  /** The tag `epc` is also read on `antenna` (e.g. weaker, through an overlapping field). */
  addEcho(epc: string, antenna: number, rssi: number): void {
    this.echoes.set(epc, { epc, antenna, rssi });
  }

  setAntennaFault(antenna: number, faulty: boolean): void {
    if (faulty) this.faultyAntennas.add(antenna);
    else this.faultyAntennas.delete(antenna);
  }

  async start(): Promise<void> {
    this.running = true;
    if (!(await this.openPort())) this.scheduleReopen();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.reopenTimer);
    clearInterval(this.pathTimer);
    clearTimeout(this.idleTimer);
    await this.chain;
    const p = this.port;
    this.port = null;
    if (p?.isOpen) await new Promise<void>((r) => p.close(() => r()));
  }

  // ---- port ------------------------------------------------------------------------------

  private async openPort(): Promise<boolean> {
    if (!this.running) return false;
    const port = new SerialPortStream({
      binding: (this.binding ?? (await defaultBinding())) as BindingInterface,
      path: this.o.path,
      baudRate: this.o.baudRate,
      autoOpen: false,
    });
    try {
      await new Promise<void>((res, rej) => port.open((e) => (e ? rej(e) : res())));
    } catch {
      return false;
    }
    if (!this.running) {
      port.close();
      return false;
    }
    port.on('data', (chunk: Buffer) => this.onData(chunk));
    port.on('error', () => {});
    port.on('close', () => {
      if (this.port !== port) return;
      this.port = null;
      this.emit('link', { up: false });
      this.scheduleReopen();
    });
    this.parser.reset();
    this.port = port;
    this.openedDevice = deviceOf(this.o.path);
    this.counters.portOpens++;
    this.emit('link', { up: true });
    this.watchPath();
    return true;
  }

  /**
   * A reader only answers, so it may never write to a pty whose other end is gone and
   * never see the EIO that would close it. When the path (a socat link) comes to name
   * another device — the link was restarted — reopen by path, as a USB reader that is
   * unplugged and plugged in again would be opened afresh.
   */
  private watchPath(): void {
    clearInterval(this.pathTimer);
    if (this.openedDevice === undefined) return;
    this.pathTimer = setInterval(() => {
      const p = this.port;
      if (!this.running || !p) return clearInterval(this.pathTimer);
      const now = deviceOf(this.o.path);
      if (now === undefined || now === this.openedDevice) return;
      clearInterval(this.pathTimer);
      if (p.isOpen) p.close();
    }, 200);
    this.pathTimer.unref();
  }
  private pathTimer: NodeJS.Timeout | undefined;
  private openedDevice: string | undefined;

  private scheduleReopen(): void {
    if (!this.running) return;
    clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(async () => {
      if (!(await this.openPort())) this.scheduleReopen();
    }, this.o.reopenMs);
  }

  private onData(chunk: Buffer): void {
    this.deliver(this.parser.push(chunk));
    clearTimeout(this.idleTimer);
    if (this.parser.pending > 0) this.idleTimer = setTimeout(() => this.deliver(this.parser.idle()), 30);
  }

  private deliver(r: {
    frames: Array<{ msg: rfid.chafon.ChafonMsg | rfid.r2000.R2000Msg }>;
    errors: Error[];
  }): void {
    this.counters.parseErrors += r.errors.length;
    for (const f of r.frames) {
      this.counters.commands++;
      const answer = this.answer(f.msg);
      if (answer.length === 0) continue;
      if (this.rng() < this.silentRate) {
        this.counters.silentCommands++;
        continue;
      }
      this.chain = this.chain.then(() => this.send(answer)).catch(() => undefined);
    }
  }

  // ---- behaviour ---------------------------------------------------------------------------

  /** The frames answering one command (one handler per command, house style 3). */
  private answer(msg: rfid.chafon.ChafonMsg | rfid.r2000.R2000Msg): Buffer[] {
    if (this.o.framing === 'chafon') {
      const m = msg as rfid.chafon.ChafonMsg;
      if (m.type === 'INVENTORY') return this.chafonInventory(m.antenna);
      if (m.dir === 'host' && m.type === 'COMMAND') {
        // Unknown commands: status 0xFE (command error), as the reader firmware does.
        return [
          chafon.serialize({
            dir: 'reader',
            addr: this.o.addr,
            type: 'REPLY',
            cmd: m.cmd,
            status: chafon.STATUS.COMMAND_ERROR,
            data: '',
          }),
        ];
      }
      return [];
    }
    const m = msg as rfid.r2000.R2000Msg;
    const addr = this.o.addr;
    switch (m.type) {
      case 'SET_WORK_ANTENNA': {
        const bad = m.antenna > this.o.antennas || this.faultyAntennas.has(m.antenna);
        if (!bad) this.workAntenna = m.antenna;
        if (bad) this.counters.antennaErrors++;
        const code = bad ? r2000.RESULT.ANTENNA_MISSING : r2000.RESULT.SUCCESS;
        return [
          r2000.serialize({ dir: 'reader', addr, type: 'RESULT', cmd: r2000.CMD.SET_WORK_ANTENNA, code }),
        ];
      }
      case 'REAL_TIME_INVENTORY':
        return this.r2000Inventory(Math.max(1, m.repeat));
      case 'COMMAND':
        return [
          r2000.serialize({ dir: 'reader', addr, type: 'RESULT', cmd: m.cmd, code: r2000.RESULT.FAIL }),
        ];
      default:
        return [];
    }
  }

  /** Tags on `antenna` that answer this round (each missed with `missRate`). */
  private readsOn(antenna: number): SimTag[] {
    const out: SimTag[] = [];
    for (const t of [...this.tags.values(), ...this.echoes.values()]) {
      if (t.antenna !== antenna) continue;
      if (this.rng() < this.missRate) {
        this.counters.missedReads++;
        continue;
      }
      out.push(t);
    }
    this.counters.tagReads += out.length;
    return out;
  }

  private chafonInventory(antenna: number): Buffer[] {
    const addr = this.o.addr;
    if (antenna > this.o.antennas || this.faultyAntennas.has(antenna)) {
      this.counters.antennaErrors++;
      this.emit('round', { antenna, reads: 0, fault: true });
      return [
        chafon.serialize({
          dir: 'reader',
          addr,
          type: 'REPLY',
          cmd: chafon.CMD.INVENTORY,
          status: chafon.STATUS.ANTENNA_ERROR,
          data: '',
        }),
      ];
    }
    this.counters.rounds++;
    const reads = this.readsOn(antenna);
    this.emit('round', { antenna, reads: reads.length, fault: false });
    if (reads.length === 0 && this.emptyAsNoTag) {
      return [
        chafon.serialize({
          dir: 'reader',
          addr,
          type: 'REPLY',
          cmd: chafon.CMD.INVENTORY,
          status: chafon.STATUS.NO_TAG,
          data: '',
        }),
      ];
    }
    const frames: Buffer[] = [];
    const per = Math.max(1, this.o.tagsPerFrame);
    let i = 0;
    do {
      const chunk = reads.slice(i, i + per);
      i += per;
      const last = i >= reads.length;
      frames.push(
        chafon.serialize({
          dir: 'reader',
          addr,
          type: 'INVENTORY_REPLY',
          // [CHAFON-INV-1] 0x03 = more frames follow; 0x01 = round complete.
          status: last ? chafon.STATUS.COMPLETE : chafon.STATUS.MORE_FRAMES,
          antenna,
          tags: chunk.map((t) => ({ epc: t.epc, rssi: t.rssi })),
        }),
      );
    } while (i < reads.length);
    return frames;
  }

  private r2000Inventory(repeat: number): Buffer[] {
    const addr = this.o.addr;
    const antenna = this.workAntenna;
    const cmd = r2000.CMD.REAL_TIME_INVENTORY;
    if (this.faultyAntennas.has(antenna)) {
      this.counters.antennaErrors++;
      this.emit('round', { antenna, reads: 0, fault: true });
      return [
        r2000.serialize({ dir: 'reader', addr, type: 'RESULT', cmd, code: r2000.RESULT.ANTENNA_MISSING }),
      ];
    }
    const frames: Buffer[] = [];
    let total = 0;
    for (let k = 0; k < repeat; k++) {
      this.counters.rounds++;
      const reads = this.readsOn(antenna);
      total += reads.length;
      this.emit('round', { antenna, reads: reads.length, fault: false });
      for (const t of reads) {
        const n = t.epc.length / 2;
        frames.push(
          r2000.serialize({
            dir: 'reader',
            addr,
            type: 'TAG',
            cmd,
            antenna,
            freq: Math.floor(this.rng() * 50),
            pc: ((n / 2) << 11) & 0xffff,
            epc: t.epc,
            rssi: t.rssi,
          }),
        );
      }
    }
    if (total === 0 && this.emptyAsNoTag) {
      return [r2000.serialize({ dir: 'reader', addr, type: 'RESULT', cmd, code: r2000.RESULT.NO_TAG })];
    }
    frames.push(
      r2000.serialize({
        dir: 'reader',
        addr,
        type: 'INVENTORY_END',
        cmd,
        antenna,
        readRate: Math.min(0xffff, total * 10),
        totalRead: total,
      }),
    );
    return frames;
  }

  private async send(frames: Buffer[]): Promise<void> {
    if (this.o.answerDelayMs > 0) await new Promise((r) => setTimeout(r, this.o.answerDelayMs));
    const parts: Buffer[] = [];
    for (const f of frames) {
      if (this.rng() < this.noiseRate) {
        this.counters.noiseBursts++;
        const n = 1 + Math.floor(this.rng() * 6);
        parts.push(Buffer.from(Array.from({ length: n }, () => Math.floor(this.rng() * 256))));
      }
      let out = f;
      if (this.rng() < this.crcErrorRate) {
        this.counters.corruptedFrames++;
        out = Buffer.from(f);
        const i = out.length - 1;
        out[i] = (out[i] as number) ^ 0x5a; // check byte flipped: a bad frame
      }
      parts.push(out);
      this.counters.framesOut++;
    }
    const p = this.port;
    if (!p?.isOpen) return;
    await new Promise<void>((res) =>
      p.write(Buffer.concat(parts), (e) => {
        if (e && this.port === p && p.isOpen) p.close(); // EIO: the link is gone; reopen by path
        res();
      }),
    );
  }
}

async function defaultBinding(): Promise<BindingInterface> {
  const { autoDetect } = await import('@serialport/bindings-cpp');
  return autoDetect() as unknown as BindingInterface;
}

/** The device a path names now (socat links are symlinks to /dev/pts/N); undefined if none. */
function deviceOf(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}
