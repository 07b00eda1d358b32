import { EventEmitter } from 'node:events';
import { SerialPortStream } from '@serialport/stream';
import { rfid, type StorelinkError } from '@storelink/protocols';
import { type EdgeErrorCode, edgeError } from '../errors.ts';
import type {
  AntennaId,
  Epc,
  InventoryRound,
  RfidDriverEvents,
  RfidInventory,
  TagPresence,
  TagRead,
} from './api.ts';

type BindingInterface = ConstructorParameters<typeof SerialPortStream>[0]['binding'];
type ChafonMsg = rfid.chafon.ChafonMsg;
type R2000Msg = rfid.r2000.R2000Msg;
const { chafon, r2000 } = rfid;

/**
 * Edge RFID driver: one UHF reader on a serial port, Chafon or R2000 framing
 * (docs/rfid.md, docs/protocol.md "RFID reader serial links"). The edge is the host; the
 * reader only answers. A round inventories every configured antenna in turn; rounds run
 * every `roundIntervalMs` and on demand (`inventoryNow`).
 *
 * Rules (docs/rfid.md):
 * - [RFID-SMOOTH-1] a tag is present from its first read; it departs only after being missed
 *   in `departRounds` consecutive rounds in which its antenna answered, *and* `departMs`
 *   after its last read. A failed antenna's round never counts as a miss.
 * - [RFID-DEDUPE-1] reads of one EPC within a round are one read (the strongest); across
 *   rounds a tag's antenna changes only to a stronger read or after `dedupeMs` without a read
 *   on its antenna, so a tag between two antennas does not flap.
 * - [RFID-RETRY-1] an antenna that times out, answers a bad frame, or reports an error is
 *   retried `retries` times in the same round; reads from failed attempts are kept (their
 *   frames passed the check). A fault is raised once when the retries run out and cleared
 *   on the antenna's next good answer.
 * - [RFID-PORT-1] the port is reopened with backoff when it closes or errors; when every
 *   antenna timed out for `linkTimeoutRounds` rounds the path is closed and reopened (a
 *   replaced pty or USB adapter can leave a dead but "open" fd).
 */

export type Framing = 'chafon' | 'r2000';

export type AntennaOutcome =
  | 'ok'
  | 'no_tag'
  | 'antenna_missing'
  | 'timeout'
  | 'corrupt'
  | 'reader_error'
  | 'link_down';

export interface RfidCounters {
  framesIn: number;
  framesOut: number;
  parseErrors: Record<string, number>;
  /** Valid frames that answered nothing pending (late answers after a timeout). */
  staleFrames: number;
  rounds: number;
  /** Antenna attempts by outcome. */
  attempts: Record<string, number>;
  retries: number;
  /** Tag reads as the reader reported them (before dedupe). */
  reads: number;
  arrivals: number;
  departures: number;
  portOpens: number;
  portLosses: number;
  linkDowns: number;
}

export function newRfidCounters(): RfidCounters {
  return {
    framesIn: 0,
    framesOut: 0,
    parseErrors: {},
    staleFrames: 0,
    rounds: 0,
    attempts: {},
    retries: 0,
    reads: 0,
    arrivals: 0,
    departures: 0,
    portOpens: 0,
    portLosses: 0,
    linkDowns: 0,
  };
}

export interface RfidDriverOptions {
  path: string;
  framing: Framing;
  /** Name used in events and logs (config `rfid.name`). */
  name?: string;
  baudRate?: number;
  /** serialport binding; default: platform binding. Unit tests pass @serialport/binding-mock. */
  binding?: BindingInterface;
  /** Reader address; default 0xFF (broadcast, both framings). */
  addr?: number;
  /** Antenna ports to inventory, 1..4 (default [1]). */
  antennas?: AntennaId[];
  /** Pause between scheduled rounds (ms); 0 = no scheduled rounds, only inventoryNow(). */
  roundIntervalMs?: number;
  departRounds?: number;
  departMs?: number;
  dedupeMs?: number;
  /** Chafon inventory time budget per antenna, in 100 ms units (the reader's scan time). */
  scanTime?: number;
  /** Time for a reader's whole answer to one command (ms). */
  responseTimeoutMs?: number;
  retries?: number;
  interByteTimeoutMs?: number;
  linkTimeoutRounds?: number;
  reopenMinMs?: number;
  reopenMaxMs?: number;
  now?: () => number;
  counters?: RfidCounters;
  log?: { warn(obj: object, msg?: string): void; info(obj: object, msg?: string): void };
}

interface TagState extends TagPresence {
  missed: number;
}

/** A command in flight: frames go to `onFrame` until it says done. */
interface Exchange {
  onFrame(msg: ChafonMsg | R2000Msg): AntennaOutcome | undefined;
  finish(outcome: AntennaOutcome): void;
  /** A bad frame arrived while this exchange was waiting. */
  corrupt: boolean;
  timer: NodeJS.Timeout;
}

interface AttemptResult {
  outcome: AntennaOutcome;
  reads: TagRead[];
}

const FAULT_CODE: Partial<Record<AntennaOutcome, EdgeErrorCode>> = {
  antenna_missing: 'EDGE_ERR_RFID_ANTENNA',
  timeout: 'EDGE_ERR_RFID_TIMEOUT',
  corrupt: 'EDGE_ERR_RFID_CORRUPT',
  reader_error: 'EDGE_ERR_RFID_READER',
  link_down: 'EDGE_ERR_RFID_LINK_DOWN',
};

export class RfidDriver extends EventEmitter<RfidDriverEvents> implements RfidInventory {
  readonly counters: RfidCounters;
  readonly name: string;
  private readonly o: Required<
    Omit<RfidDriverOptions, 'binding' | 'now' | 'counters' | 'log' | 'name' | 'baudRate'>
  > & { baudRate: number };
  private readonly opts: RfidDriverOptions;
  private readonly now: () => number;
  private readonly parser: rfid.chafon.ChafonParser | rfid.r2000.R2000Parser;
  private readonly tags = new Map<Epc, TagState>();
  private readonly faults = new Map<AntennaId, EdgeErrorCode>();
  private port: SerialPortStream | null = null;
  private started = false;
  private linkUp = false;
  private exchange: Exchange | null = null;
  private idleTimer: NodeJS.Timeout | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  private roundTimer: NodeJS.Timeout | undefined;
  private reopenDelay: number;
  private roundChain: Promise<unknown> = Promise.resolve();
  private silentRounds = 0;
  private lastRound: InventoryRound | null = null;

  constructor(opts: RfidDriverOptions) {
    super();
    this.opts = opts;
    this.name = opts.name ?? 'rfid';
    const antennas = opts.antennas ?? [1];
    for (const a of antennas) {
      if (!Number.isInteger(a) || a < 1 || a > 4)
        throw edgeError('EDGE_ERR_CONFIG', { errors: `/rfid/antennas: ${a} is not 1..4` });
    }
    this.o = {
      path: opts.path,
      framing: opts.framing,
      baudRate: opts.baudRate ?? (opts.framing === 'chafon' ? 57600 : 115200),
      addr: opts.addr ?? 0xff,
      antennas,
      roundIntervalMs: opts.roundIntervalMs ?? 500,
      departRounds: opts.departRounds ?? 3,
      departMs: opts.departMs ?? 2000,
      dedupeMs: opts.dedupeMs ?? 1000,
      scanTime: opts.scanTime ?? 10,
      responseTimeoutMs:
        opts.responseTimeoutMs ?? (opts.framing === 'chafon' ? (opts.scanTime ?? 10) * 100 + 1000 : 1000),
      retries: opts.retries ?? 2,
      interByteTimeoutMs: opts.interByteTimeoutMs ?? 30,
      linkTimeoutRounds: opts.linkTimeoutRounds ?? 2,
      reopenMinMs: opts.reopenMinMs ?? 50,
      reopenMaxMs: opts.reopenMaxMs ?? 2000,
    };
    this.reopenDelay = this.o.reopenMinMs;
    this.now = opts.now ?? Date.now;
    this.counters = opts.counters ?? newRfidCounters();
    this.parser =
      opts.framing === 'chafon'
        ? new chafon.ChafonParser({ from: 'reader' })
        : new r2000.R2000Parser({ from: 'reader' });
  }

  get isLinkUp(): boolean {
    return this.linkUp;
  }

  get antennas(): readonly AntennaId[] {
    return this.o.antennas;
  }

  /** Active antenna faults (antenna → EDGE_ERR_RFID_* code). */
  get activeFaults(): ReadonlyMap<AntennaId, string> {
    return this.faults;
  }

  get lastRoundResult(): InventoryRound | null {
    return this.lastRound;
  }

  // ---- API (edge/src/rfid/api.ts) ----------------------------------------------------------

  present(): ReadonlyMap<Epc, TagPresence> {
    const out = new Map<Epc, TagPresence>();
    for (const [epc, t] of this.tags)
      out.set(epc, { antenna: t.antenna, rssi: t.rssi, lastSeen: t.lastSeen });
    return out;
  }

  /** One full round over every antenna, started after any round already running. */
  inventoryNow(): Promise<InventoryRound> {
    const r = this.roundChain.then(() => this.runRound());
    this.roundChain = r.catch(() => undefined);
    return r;
  }

  async start(): Promise<void> {
    this.started = true;
    await this.open();
    this.scheduleRound(0);
  }

  async stop(): Promise<void> {
    this.started = false;
    clearTimeout(this.reopenTimer);
    clearTimeout(this.roundTimer);
    clearTimeout(this.idleTimer);
    this.exchange?.finish('link_down');
    await this.roundChain;
    const p = this.port;
    this.port = null;
    if (p?.isOpen) await new Promise<void>((r) => p.close(() => r()));
  }

  // ---- rounds ------------------------------------------------------------------------------

  private scheduleRound(delay: number): void {
    if (!this.started || this.o.roundIntervalMs <= 0) return;
    clearTimeout(this.roundTimer);
    this.roundTimer = setTimeout(() => {
      void this.inventoryNow().finally(() => this.scheduleRound(this.o.roundIntervalMs));
    }, delay);
  }

  private async runRound(): Promise<InventoryRound> {
    const startedAt = this.now();
    const merged = new Map<Epc, TagPresence>();
    const antennasOk: AntennaId[] = [];
    const antennasFailed: InventoryRound['antennasFailed'] = [];
    let allSilent = true;
    for (const antenna of this.o.antennas) {
      const r = await this.inventoryAntenna(antenna);
      for (const read of r.reads) mergeRead(merged, read); // [RFID-DEDUPE-1] one read per EPC per round
      if (r.outcome !== 'timeout' && r.outcome !== 'link_down') allSilent = false;
      if (r.outcome === 'ok' || r.outcome === 'no_tag') {
        antennasOk.push(antenna);
        this.clearFault(antenna);
      } else {
        const code = FAULT_CODE[r.outcome] ?? 'EDGE_ERR_RFID_READER';
        antennasFailed.push({ antenna, code });
        // A lost port is one link alarm (the `link` event), not one fault per antenna.
        if (r.outcome !== 'link_down') this.raiseFault(antenna, code, r.outcome);
      }
    }
    this.counters.rounds++;
    const round: InventoryRound = {
      tags: merged,
      antennasOk,
      antennasFailed,
      startedAt,
      finishedAt: this.now(),
      complete: antennasFailed.length === 0,
    };
    this.applyRound(round);
    this.lastRound = round;
    this.emit('round', round);
    this.watchSilence(allSilent);
    return round;
  }

  /** [RFID-RETRY-1] one antenna, with retries; reads of every attempt are kept. */
  private async inventoryAntenna(antenna: AntennaId): Promise<AttemptResult> {
    const reads: TagRead[] = [];
    let outcome: AntennaOutcome = 'link_down';
    for (let attempt = 0; attempt <= this.o.retries; attempt++) {
      if (attempt > 0) this.counters.retries++;
      const r = await this.attemptAntenna(antenna);
      reads.push(...r.reads);
      outcome = r.outcome;
      this.counters.attempts[outcome] = (this.counters.attempts[outcome] ?? 0) + 1;
      if (outcome === 'ok' || outcome === 'link_down') break;
      // "No tag" is an empty antenna, not a fault; it is asked again only while the
      // presence view expects tags there (a reader that missed them gets another chance).
      if (outcome === 'no_tag' && (reads.length > 0 || !this.expectsTagsOn(antenna))) break;
    }
    return { outcome: outcome === 'no_tag' && reads.length > 0 ? 'ok' : outcome, reads };
  }

  private expectsTagsOn(antenna: AntennaId): boolean {
    for (const t of this.tags.values()) if (t.antenna === antenna) return true;
    return false;
  }

  private async attemptAntenna(antenna: AntennaId): Promise<AttemptResult> {
    if (!this.started || !this.port?.isOpen) return { outcome: 'link_down', reads: [] };
    return this.o.framing === 'chafon' ? this.chafonAntenna(antenna) : this.r2000Antenna(antenna);
  }

  /** [CHAFON-INV-1] TAG_INVENTORY on one antenna; frames with status 0x03 are followed by more. */
  private async chafonAntenna(antenna: AntennaId): Promise<AttemptResult> {
    const reads: TagRead[] = [];
    const cmd = chafon.serialize(
      chafon.inventoryCommand(antenna, { addr: this.o.addr, scanTime: this.o.scanTime }),
    );
    const outcome = await this.send(cmd, (m) => {
      if (m.dir !== 'reader' || !('status' in m) || (m.type !== 'INVENTORY_REPLY' && m.type !== 'REPLY'))
        return undefined;
      if (m.type === 'INVENTORY_REPLY') {
        if (m.antenna !== antenna) return undefined; // a late answer for another antenna
        const at = this.now();
        for (const t of m.tags) reads.push({ epc: t.epc, antenna, rssi: t.rssi, at });
        this.counters.reads += m.tags.length;
        if (m.status === chafon.STATUS.MORE_FRAMES) return undefined;
        return 'ok';
      }
      if (m.cmd !== chafon.CMD.INVENTORY) return undefined;
      if (m.status === chafon.STATUS.ANTENNA_ERROR) return 'antenna_missing';
      if (m.status === chafon.STATUS.NO_TAG) return 'no_tag';
      return 'reader_error';
    });
    return { outcome, reads };
  }

  /** [R2000-INV-1] SET_WORK_ANTENNA, then REAL_TIME_INVENTORY (one round) on it. */
  private async r2000Antenna(antenna: AntennaId): Promise<AttemptResult> {
    const addr = this.o.addr;
    const set = await this.send(
      r2000.serialize({ dir: 'host', addr, type: 'SET_WORK_ANTENNA', antenna }),
      (m) => {
        if (m.type !== 'RESULT' || m.cmd !== r2000.CMD.SET_WORK_ANTENNA) return undefined;
        if (m.code === r2000.RESULT.SUCCESS) return 'ok';
        return m.code === r2000.RESULT.ANTENNA_MISSING ? 'antenna_missing' : 'reader_error';
      },
    );
    if (set !== 'ok') return { outcome: set, reads: [] };
    const reads: TagRead[] = [];
    const outcome = await this.send(
      r2000.serialize({ dir: 'host', addr, type: 'REAL_TIME_INVENTORY', repeat: 1 }),
      (m) => {
        if (!('cmd' in m) || m.cmd !== r2000.CMD.REAL_TIME_INVENTORY || m.dir !== 'reader') return undefined;
        if (m.type === 'TAG') {
          if (m.antenna !== antenna) return undefined;
          reads.push({ epc: m.epc, antenna, rssi: r2000.rssiDbm(m.rssi), at: this.now() });
          this.counters.reads++;
          return undefined;
        }
        if (m.type === 'INVENTORY_END') {
          if (m.antenna !== antenna) return undefined;
          // The reader counts its reads: fewer tag frames arrived than it sent = some were lost.
          return reads.length < m.totalRead ? 'corrupt' : 'ok';
        }
        if (m.type === 'RESULT') {
          if (m.code === r2000.RESULT.ANTENNA_MISSING) return 'antenna_missing';
          if (m.code === r2000.RESULT.NO_TAG) return 'no_tag';
          return 'reader_error';
        }
        return undefined;
      },
    );
    return { outcome, reads };
  }

  /**
   * Writes one command and feeds answer frames to `onFrame` until it returns an outcome; a
   * timeout is 'timeout', or 'corrupt' when a bad frame arrived meanwhile (its answer was lost).
   */
  private send(bytes: Buffer, onFrame: Exchange['onFrame']): Promise<AntennaOutcome> {
    return new Promise<AntennaOutcome>((resolve) => {
      const p = this.port;
      if (!p?.isOpen) {
        resolve('link_down');
        return;
      }
      const ex: Exchange = {
        onFrame,
        corrupt: false,
        finish: (outcome) => {
          if (this.exchange !== ex) return;
          this.exchange = null;
          clearTimeout(ex.timer);
          resolve(outcome);
        },
        timer: setTimeout(() => {
          // Flush a partial frame first: it may complete nothing, but it is counted.
          if (this.parser.pending > 0) this.handleParsed(this.parser.idle());
          ex.finish(ex.corrupt ? 'corrupt' : 'timeout');
        }, this.o.responseTimeoutMs),
      };
      this.exchange = ex;
      this.counters.framesOut++;
      p.write(bytes, (e) => {
        if (!e) return;
        ex.finish('link_down');
        if (this.port === p && p.isOpen) p.close(); // EIO on write: the port is gone [RFID-PORT-1]
      });
    });
  }

  // ---- presence [RFID-SMOOTH-1] ---------------------------------------------------------------

  private applyRound(round: InventoryRound): void {
    const now = round.finishedAt;
    for (const [epc, read] of round.tags) {
      const t = this.tags.get(epc);
      if (!t) {
        this.tags.set(epc, { ...read, missed: 0 });
        this.counters.arrivals++;
        this.emit('tag.arrived', { epc, antenna: read.antenna, rssi: read.rssi, at: read.lastSeen });
        continue;
      }
      // [RFID-DEDUPE-1] keep the antenna unless the new one is stronger or the old went quiet.
      if (read.antenna !== t.antenna && read.rssi < t.rssi && read.lastSeen - t.lastSeen < this.o.dedupeMs) {
        t.lastSeen = read.lastSeen;
      } else {
        t.antenna = read.antenna;
        t.rssi = read.rssi;
        t.lastSeen = read.lastSeen;
      }
      t.missed = 0;
    }
    const answered = new Set(round.antennasOk);
    for (const [epc, t] of this.tags) {
      if (round.tags.has(epc)) continue;
      if (!answered.has(t.antenna)) continue; // a failed antenna is no evidence of absence
      t.missed++;
      if (t.missed >= this.o.departRounds && now - t.lastSeen >= this.o.departMs) {
        this.tags.delete(epc);
        this.counters.departures++;
        this.emit('tag.departed', { epc, antenna: t.antenna, rssi: t.rssi, lastSeen: t.lastSeen, at: now });
      }
    }
  }

  // ---- faults ----------------------------------------------------------------------------------

  private raiseFault(antenna: AntennaId, code: EdgeErrorCode, outcome: AntennaOutcome): void {
    if (this.faults.get(antenna) === code) return;
    this.faults.set(antenna, code);
    const err = edgeError(code, {
      reader: this.name,
      path: this.o.path,
      antenna,
      outcome,
      retries: this.o.retries,
    });
    this.opts.log?.warn({ err }, 'rfid antenna fault');
    this.emit('fault', { code, antenna, active: true, message: err.message });
  }

  private clearFault(antenna: AntennaId): void {
    const code = this.faults.get(antenna);
    if (!code) return;
    this.faults.delete(antenna);
    this.emit('fault', { code, antenna, active: false, message: `antenna ${antenna} answers again` });
  }

  /** [RFID-PORT-1] a reader silent on every antenna for N rounds: reopen the path. */
  private watchSilence(allSilent: boolean): void {
    if (!allSilent || !this.port?.isOpen) {
      this.silentRounds = 0;
      return;
    }
    this.silentRounds++;
    if (this.silentRounds < this.o.linkTimeoutRounds) return;
    this.silentRounds = 0;
    this.setLink(false, 'reader silent');
    this.port.close();
  }

  // ---- port lifecycle [RFID-PORT-1] ---------------------------------------------------------

  private async open(): Promise<void> {
    if (!this.started) return;
    const binding = this.opts.binding ?? (await defaultBinding());
    const port = new SerialPortStream({
      binding,
      path: this.o.path,
      baudRate: this.o.baudRate,
      autoOpen: false,
    });
    try {
      await new Promise<void>((res, rej) => port.open((e) => (e ? rej(e) : res())));
    } catch (e) {
      this.setLink(false, (e as Error).message);
      this.opts.log?.warn({
        err: edgeError('EDGE_ERR_RFID_PORT', { path: this.o.path, reason: (e as Error).message }),
      });
      this.scheduleReopen();
      return;
    }
    if (!this.started) {
      port.close();
      return;
    }
    this.counters.portOpens++;
    this.reopenDelay = this.o.reopenMinMs;
    this.parser.reset();
    this.port = port;
    port.on('data', (chunk: Buffer) => this.onData(chunk));
    port.on('error', (err) => {
      this.opts.log?.warn({
        err: edgeError('EDGE_ERR_RFID_PORT', { path: this.o.path, reason: err.message }),
      });
    });
    port.on('close', () => {
      if (this.port !== port) return;
      this.port = null;
      this.counters.portLosses++;
      this.exchange?.finish('link_down');
      this.setLink(false, 'port closed');
      this.scheduleReopen();
    });
  }

  private scheduleReopen(): void {
    if (!this.started) return;
    clearTimeout(this.reopenTimer);
    const d = this.reopenDelay;
    this.reopenDelay = Math.min(this.o.reopenMaxMs, this.reopenDelay * 2);
    this.reopenTimer = setTimeout(() => void this.open(), d);
  }

  private setLink(up: boolean, reason?: string): void {
    if (this.linkUp === up) return;
    this.linkUp = up;
    if (!up) this.counters.linkDowns++;
    this.emit('link', { up, ...(reason ? { reason } : {}) });
  }

  private onData(chunk: Buffer): void {
    this.handleParsed(this.parser.push(chunk));
    clearTimeout(this.idleTimer);
    if (this.parser.pending > 0) {
      this.idleTimer = setTimeout(() => this.handleParsed(this.parser.idle()), this.o.interByteTimeoutMs);
    }
  }

  private handleParsed(r: rfid.ParseResult<ChafonMsg> | rfid.ParseResult<R2000Msg>): void {
    for (const e of r.errors as StorelinkError[]) {
      this.counters.parseErrors[e.code] = (this.counters.parseErrors[e.code] ?? 0) + 1;
      // Skipped noise loses no frame; a bad check, a cut-off or malformed frame may have.
      if (this.exchange && e.code !== 'PROTO_ERR_RFID_GARBAGE') this.exchange.corrupt = true;
    }
    for (const f of r.frames) {
      this.counters.framesIn++;
      this.setLink(true);
      const ex = this.exchange;
      const outcome = ex?.onFrame(f.msg);
      if (!ex) this.counters.staleFrames++;
      if (ex && outcome) ex.finish(outcome === 'ok' && ex.corrupt ? 'corrupt' : outcome);
    }
  }
}

/** [RFID-DEDUPE-1] the strongest read of an EPC in a round wins; the latest time is kept. */
function mergeRead(merged: Map<Epc, TagPresence>, read: TagRead): void {
  const prev = merged.get(read.epc);
  if (!prev) {
    merged.set(read.epc, { antenna: read.antenna, rssi: read.rssi, lastSeen: read.at });
    return;
  }
  if (read.rssi > prev.rssi) {
    prev.antenna = read.antenna;
    prev.rssi = read.rssi;
  }
  prev.lastSeen = Math.max(prev.lastSeen, read.at);
}

async function defaultBinding(): Promise<BindingInterface> {
  const { autoDetect } = await import('@serialport/bindings-cpp');
  return autoDetect() as unknown as BindingInterface;
}
