import { EventEmitter } from 'node:events';
import { mdb } from '@storelink/protocols';
import { SerialPortStream } from '@serialport/stream';
import { mulberry32, type Rng } from '../rng.ts';

type BindingInterface = ConstructorParameters<typeof SerialPortStream>[0]['binding'];
/**
 * The vending machine controller board (VMC) on the far end of a real serial link. It is
 * the MDB master [VMC-MASTER-1]: it polls the cashless device (the edge agent) at address
 * 0x10, sets it up, asks for vends, runs motors and reports the result — the same bytes a
 * real board sends (docs/protocol.md "Vending serial link"), so the real edge driver is
 * what gets tested.
 *
 * The IR drop sensor is wired to the edge's GPIO, not to the board (as with retrofit drop
 * sensors): the board drives it through `dropLine.set()` when an item falls. In tests
 * across a pty the simulator runs in the test process and drives the same sim line the
 * driver watches.
 */

/** Anything with `set(0|1)`: the edge's SimLine fits (structural, no edge import). */
export interface OutputLine {
  set(value: 0 | 1): void;
}

export interface SlotConfig {
  item: number;
  priceCents: number;
  stock: number;
}

export type FaultKind = 'nak' | 'slow' | 'garble' | 'reset_mid_vend' | 'jam' | 'power_loss' | 'vend_failure';

export interface VmcBoardOptions {
  path: string;
  baudRate?: number;
  /** serialport binding; default: the platform binding (`@serialport/bindings-cpp`). */
  binding?: BindingInterface;
  /** Cashless address the board polls (0x10 cashless #1, 0x60 cashless #2). */
  address?: mdb.CashlessAddress;
  slots?: SlotConfig[];
  dropLine?: OutputLine;
  doorLine?: OutputLine;
  /**
   * The IR beam is wired to the board: report each drop as DIAG DROP over the link (for a
   * board running in another process than the edge).
   */
  dropOverSerial?: boolean;
  seed?: number;
  /** Gap between polls (ms). Real boards poll every 25-200 ms. */
  pollMs?: number;
  /** How long the board waits for the reader's answer before retransmitting (ms). */
  responseTimeoutMs?: number;
  /** Retransmissions before the reader is considered gone and reset. */
  retries?: number;
  motorMs?: number;
  dropPulseMs?: number;
  /** Fridge temperature report period (ms); 0 = never. */
  temperatureEveryMs?: number;
  setpointDeciC?: number;
  reopenMs?: number;
}

interface Session {
  funds: number;
  item?: number;
  phase: 'begun' | 'requested' | 'approved' | 'motor' | 'report' | 'complete';
  result?: 'success' | 'failure';
  motorTimer?: NodeJS.Timeout;
}

interface Counters {
  framesOut: number;
  framesIn: number;
  retransmits: number;
  parseErrors: number;
  vends: number;
  drops: number;
  resets: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class VmcBoard extends EventEmitter {
  readonly counters: Counters = {
    framesOut: 0,
    framesIn: 0,
    retransmits: 0,
    parseErrors: 0,
    vends: 0,
    drops: 0,
    resets: 0,
  };
  readonly slots: Map<number, SlotConfig>;
  /** Fridge temperature in tenths of a degree. */
  temperatureDeciC: number;
  doorOpen = false;

  private readonly o: Required<
    Omit<VmcBoardOptions, 'binding' | 'dropLine' | 'doorLine' | 'slots' | 'seed' | 'dropOverSerial'>
  >;
  private readonly binding: BindingInterface | undefined;
  private readonly rng: Rng;
  private port: SerialPortStream | null = null;
  private readonly parser = new mdb.FrameParser({ accept: 'peripheral' });
  private idleTimer: NodeJS.Timeout | undefined;
  private waiter: ((f: mdb.MdbMessage | 'garbled') => void) | null = null;
  private running = false;
  private loop: Promise<void> | null = null;
  private readerReady = false;
  private session: Session | null = null;
  private readonly outQueue: mdb.VmcMsg[] = [];
  private readonly faults = new Map<FaultKind, { count: number; ms?: number }>();
  private poweredOffUntil = 0;
  private lastTempAt = 0;
  private silentPolls = 0;

  constructor(opts: VmcBoardOptions) {
    super();
    this.o = {
      path: opts.path,
      baudRate: opts.baudRate ?? 9600,
      address: opts.address ?? mdb.CASHLESS_1,
      pollMs: opts.pollMs ?? 20,
      responseTimeoutMs: opts.responseTimeoutMs ?? 100,
      retries: opts.retries ?? 5,
      motorMs: opts.motorMs ?? 40,
      dropPulseMs: opts.dropPulseMs ?? 15,
      temperatureEveryMs: opts.temperatureEveryMs ?? 0,
      setpointDeciC: opts.setpointDeciC ?? 40,
      reopenMs: opts.reopenMs ?? 50,
    };
    this.binding = opts.binding;
    this.rng = mulberry32(opts.seed ?? 1);
    this.slots = new Map(
      (opts.slots ?? [{ item: 1, priceCents: 250, stock: 5 }]).map((s) => [s.item, { ...s }]),
    );
    this.temperatureDeciC = this.o.setpointDeciC;
    this.dropLine = opts.dropLine;
    this.doorLine = opts.doorLine;
    this.dropOverSerial = opts.dropOverSerial ?? false;
  }

  private readonly dropLine: OutputLine | undefined;
  private readonly dropOverSerial: boolean;
  private readonly doorLine: OutputLine | undefined;

  /** Arms a fault for the next `count` occasions (`ms` for slow replies and power loss). */
  fault(kind: FaultKind, opts: { count?: number; ms?: number } = {}): void {
    if (kind === 'power_loss') {
      this.powerLoss(opts.ms ?? 300);
      return;
    }
    this.faults.set(kind, { count: opts.count ?? 1, ...(opts.ms !== undefined ? { ms: opts.ms } : {}) });
  }

  setDoor(open: boolean): void {
    this.doorOpen = open;
    this.doorLine?.set(open ? 1 : 0);
    this.outQueue.push({ dir: 'vmc', addr: this.o.address, type: 'DIAG_EVENT', code: 'EGS', active: open });
  }

  get linkOpen(): boolean {
    return this.port?.isOpen ?? false;
  }

  async start(): Promise<void> {
    this.running = true;
    await this.openPort();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.session?.motorTimer) clearTimeout(this.session.motorTimer);
    await this.loop;
    await this.closePort();
  }

  private takeFault(kind: FaultKind): { ms?: number } | undefined {
    const f = this.faults.get(kind);
    if (!f) return undefined;
    if (--f.count <= 0) this.faults.delete(kind);
    return f;
  }

  private powerLoss(ms: number): void {
    this.emit('power', { on: false });
    this.poweredOffUntil = Date.now() + ms;
    this.abortSession('power_loss');
    this.readerReady = false;
    this.outQueue.length = 0;
    this.outQueue.push({ dir: 'vmc', addr: this.o.address, type: 'DIAG_EVENT', code: 'EA7', active: false });
  }

  private abortSession(why: string): void {
    if (this.session?.motorTimer) clearTimeout(this.session.motorTimer);
    if (this.session) this.emit('abort', { why, session: { ...this.session, motorTimer: undefined } });
    this.session = null;
  }

  // ---- port ---------------------------------------------------------------------------

  private async openPort(): Promise<boolean> {
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
    port.on('data', (chunk: Buffer) => this.onData(chunk));
    port.on('error', () => {});
    port.on('close', () => {
      if (this.port === port) this.port = null;
      this.emit('link', { up: false });
    });
    this.parser.reset();
    this.port = port;
    this.emit('link', { up: true });
    return true;
  }

  private async closePort(): Promise<void> {
    const p = this.port;
    this.port = null;
    if (p?.isOpen) await new Promise<void>((r) => p.close(() => r()));
  }

  private onData(chunk: Buffer): void {
    if (Date.now() < this.poweredOffUntil) return; // a dead board hears nothing
    const r = this.parser.push(chunk);
    this.deliver(r);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.parser.pending > 0) this.idleTimer = setTimeout(() => this.deliver(this.parser.idle()), 20);
  }

  private deliver(r: { frames: mdb.ParsedFrame[]; errors: Error[] }): void {
    this.counters.parseErrors += r.errors.length;
    if (r.errors.length > 0 && r.frames.length === 0 && this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w('garbled');
    }
    for (const f of r.frames) {
      this.counters.framesIn++;
      const w = this.waiter;
      this.waiter = null;
      w?.(f.msg); // a frame with no one waiting (late answer) is dropped, as on MDB
    }
  }

  private async send(msg: mdb.MdbMessage): Promise<void> {
    let bytes = mdb.serialize(msg);
    if (!mdb.isControl(msg) && this.takeFault('garble')) {
      bytes = Buffer.from(bytes);
      const i = 2 + Math.floor(this.rng() * (bytes.length - 3));
      bytes[i] = (bytes[i] as number) ^ 0x5a; // body byte flipped, checksum kept: a bad frame
    }
    const p = this.port;
    if (!p?.isOpen) throw new Error('port closed');
    this.counters.framesOut++;
    try {
      await new Promise<void>((res, rej) => p.write(bytes, (e) => (e ? rej(e) : res())));
    } catch (e) {
      // EIO on write: the link is gone (pty closed, adapter pulled); reopen it by path.
      if (this.port === p) {
        this.port = null;
        if (p.isOpen) p.close();
        this.emit('link', { up: false });
      }
      throw e;
    }
  }

  /**
   * One MDB transaction: send, wait for the reader's answer, retransmit the same command
   * on silence, a garbled answer or NAK [MDB-RETRY-1]. A data answer is ACKed (or NAKed
   * when that fault is armed, so the reader must repeat it on the next POLL).
   */
  private async transact(cmd: mdb.VmcMsg): Promise<mdb.MdbMessage | null> {
    for (let attempt = 0; attempt <= this.o.retries; attempt++) {
      if (!this.running || Date.now() < this.poweredOffUntil) return null;
      if (attempt > 0) this.counters.retransmits++;
      const slow = this.takeFault('slow');
      if (slow) await sleep(slow.ms ?? 500);
      const answer = new Promise<mdb.MdbMessage | 'garbled' | null>((resolve) => {
        const t = setTimeout(() => {
          if (this.waiter === w) this.waiter = null;
          resolve(null);
        }, this.o.responseTimeoutMs);
        const w = (m: mdb.MdbMessage | 'garbled'): void => {
          clearTimeout(t);
          resolve(m);
        };
        this.waiter = w;
      });
      try {
        await this.send(cmd);
      } catch {
        this.waiter = null;
        return null;
      }
      const a = await answer;
      if (a === null || a === 'garbled') continue;
      if (a.type === 'NAK') continue;
      if (a.type === 'ACK') return a;
      if (a.type === 'RET') continue;
      if (this.takeFault('nak')) {
        await this.send({ dir: 'vmc', type: 'NAK' }).catch(() => {});
        return { dir: 'peripheral', type: 'ACK' }; // command delivered; the data comes again
      }
      await this.send({ dir: 'vmc', type: 'ACK' }).catch(() => {});
      return a;
    }
    return null;
  }

  // ---- master loop ----------------------------------------------------------------------

  private async run(): Promise<void> {
    while (this.running) {
      try {
        await this.tick();
      } catch (e) {
        this.emit('error', e);
      }
    }
  }

  private async tick(): Promise<void> {
    if (Date.now() < this.poweredOffUntil) {
      await sleep(Math.min(20, this.poweredOffUntil - Date.now()));
      if (Date.now() >= this.poweredOffUntil) this.emit('power', { on: true });
      return;
    }
    if (!this.port?.isOpen) {
      if (!(await this.openPort())) await sleep(this.o.reopenMs);
      return;
    }
    if (!this.readerReady) {
      await this.setupReader();
      return;
    }
    const a = this.o.address;
    const s = this.session;
    if (this.outQueue[0]?.type === 'DIAG_DROP') {
      // The beam broke before the board reports the vend: tell the reader first.
      const r = await this.transact(this.outQueue[0]);
      if (r) {
        this.outQueue.shift();
        this.handle(r);
      }
    } else if (s?.phase === 'begun' && s.item !== undefined) {
      const slot = this.slots.get(s.item);
      // Remote selection: the board asks to vend the item chosen on the phone at its own price.
      const price = slot?.priceCents ?? s.funds;
      const r = await this.transact({ dir: 'vmc', addr: a, type: 'VEND_REQUEST', price, item: s.item });
      if (r) {
        if (s.phase === 'begun') s.phase = 'requested';
        this.handle(r);
      }
    } else if (s?.phase === 'report') {
      const item = s.item ?? 0;
      const msg: mdb.VmcMsg =
        s.result === 'success'
          ? { dir: 'vmc', addr: a, type: 'VEND_SUCCESS', item }
          : { dir: 'vmc', addr: a, type: 'VEND_FAILURE' };
      const r = await this.transact(msg);
      if (r) {
        s.phase = 'complete';
        this.handle(r);
      }
    } else if (s?.phase === 'complete') {
      const r = await this.transact({ dir: 'vmc', addr: a, type: 'SESSION_COMPLETE' });
      if (r) this.handle(r);
      if (r?.type === 'END_SESSION') this.session = null;
    } else if (this.outQueue.length > 0) {
      const r = await this.transact(this.outQueue[0] as mdb.VmcMsg);
      if (r) {
        this.outQueue.shift();
        this.handle(r);
      }
    } else {
      this.maybeTemperature();
      const r = await this.transact({ dir: 'vmc', addr: a, type: 'POLL' });
      if (r) this.handle(r);
      else if (this.port?.isOpen) {
        this.readerLost(); // a lost port is not a lost reader
        await this.noAnswer();
      }
      if (r) this.silentPolls = 0;
      await sleep(this.o.pollMs);
    }
  }

  /** A replaced pty can leave a dead fd that reads nothing and reports no error: reopen it. */
  private async noAnswer(): Promise<void> {
    if (++this.silentPolls < 3) return;
    this.silentPolls = 0;
    await this.closePort();
  }

  private readerLost(): void {
    // [MDB-RESET-1] a reader that stops answering is reset and set up again.
    this.readerReady = false;
  }

  private maybeTemperature(): void {
    if (this.o.temperatureEveryMs <= 0) return;
    const now = Date.now();
    if (now - this.lastTempAt < this.o.temperatureEveryMs) return;
    this.lastTempAt = now;
    const drift = Math.round((this.rng() - 0.5) * 4) + (this.doorOpen ? 3 : 0);
    this.temperatureDeciC = Math.max(-100, Math.min(300, this.temperatureDeciC + drift));
    this.outQueue.push({
      dir: 'vmc',
      addr: this.o.address,
      type: 'DIAG_TEMPERATURE',
      deciCelsius: this.temperatureDeciC,
    });
  }

  private async setupReader(): Promise<void> {
    const a = this.o.address;
    this.counters.resets++;
    this.emit('reader', { phase: 'reset' });
    const steps: mdb.VmcMsg[] = [
      { dir: 'vmc', addr: a, type: 'RESET' },
      { dir: 'vmc', addr: a, type: 'POLL' },
      { dir: 'vmc', addr: a, type: 'SETUP_CONFIG', featureLevel: 1, columns: 0, rows: 0, displayInfo: 0 },
      { dir: 'vmc', addr: a, type: 'SETUP_PRICES', maxPrice: 0xffff, minPrice: 0 },
      { dir: 'vmc', addr: a, type: 'READER_ENABLE' },
    ];
    for (const step of steps) {
      let r = await this.transact(step);
      // After RESET the reader answers the first POLLs with JUST RESET (maybe after an ACK).
      if (step.type === 'POLL') {
        for (let i = 0; i < 5 && r?.type === 'ACK'; i++) r = await this.transact(step);
      }
      if (!r && this.port?.isOpen) await this.noAnswer();
      if (!r || r.type === 'OUT_OF_SEQUENCE') {
        await sleep(this.o.pollMs);
        return;
      }
    }
    this.readerReady = true;
    this.silentPolls = 0;
    this.emit('reader', { phase: 'enabled' });
  }

  /** One handler per reader answer (house style 3). */
  private handle(m: mdb.MdbMessage): void {
    if (m.dir !== 'peripheral' || mdb.isControl(m)) return;
    const s = this.session;
    switch (m.type) {
      case 'BEGIN_SESSION':
        if (!s) {
          this.session = {
            funds: m.funds,
            phase: 'begun',
            ...(m.item !== undefined ? { item: m.item } : {}),
          };
          this.emit('session', { funds: m.funds, item: m.item });
        }
        return;
      case 'VEND_APPROVED':
        if (s && (s.phase === 'requested' || s.phase === 'begun')) this.startMotor(s);
        return;
      case 'VEND_DENIED':
        if (s && s.phase !== 'complete') s.phase = 'complete';
        return;
      case 'SESSION_CANCEL_REQUEST':
        if (s && (s.phase === 'begun' || s.phase === 'requested')) s.phase = 'complete';
        else if (!s) this.session = { funds: 0, phase: 'complete' };
        return;
      case 'END_SESSION':
        this.session = null;
        return;
      case 'JUST_RESET':
        // The reader restarted on its own: set it up again; any session is gone.
        this.abortSession('reader_reset');
        this.readerReady = false;
        return;
      case 'OUT_OF_SEQUENCE':
        this.abortSession('out_of_sequence');
        this.readerReady = false;
        return;
      default:
        return;
    }
  }

  private startMotor(s: Session): void {
    s.phase = 'motor';
    this.counters.vends++;
    const slot = s.item !== undefined ? this.slots.get(s.item) : undefined;
    const slow = this.takeFault('slow');
    const motorMs = this.o.motorMs + (slow?.ms ?? 0);
    this.emit('motor', { item: s.item, on: true });
    if (this.takeFault('reset_mid_vend')) {
      // [VMC-FAULT-RESET] the board reboots half way through the motor run: no drop, no report.
      s.motorTimer = setTimeout(() => {
        this.abortSession('reset_mid_vend');
        this.readerReady = false;
      }, motorMs / 2);
      return;
    }
    s.motorTimer = setTimeout(() => {
      this.emit('motor', { item: s.item, on: false });
      const failure = this.takeFault('vend_failure');
      if (!slot || slot.stock <= 0 || failure) {
        s.result = 'failure';
        s.phase = 'report';
        this.outQueue.push({
          dir: 'vmc',
          addr: this.o.address,
          type: 'DIAG_EVENT',
          code: 'ELA',
          active: true,
        });
        return;
      }
      slot.stock--;
      this.outQueue.push({
        dir: 'vmc',
        addr: this.o.address,
        type: 'DIAG_STOCK',
        item: slot.item,
        count: slot.stock,
      });
      // A jam: the motor turned (so the board reports success) but the item hung on the coil.
      if (!this.takeFault('jam')) {
        this.counters.drops++;
        this.dropLine?.set(1);
        setTimeout(() => this.dropLine?.set(0), this.o.dropPulseMs);
        if (this.dropOverSerial) {
          this.outQueue.unshift({ dir: 'vmc', addr: this.o.address, type: 'DIAG_DROP', item: slot.item });
        }
      }
      s.result = 'success';
      s.phase = 'report';
    }, motorMs);
  }
}

async function defaultBinding(): Promise<BindingInterface> {
  const { autoDetect } = await import('@serialport/bindings-cpp');
  return autoDetect() as unknown as BindingInterface;
}
