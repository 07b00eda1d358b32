import { EventEmitter } from 'node:events';
import { SerialPortStream } from '@serialport/stream';
import { mdb, type StorelinkError } from '@storelink/protocols';
import { type EdgeErrorCode, edgeError } from '../errors.ts';
import type { Line } from '../gpio/line.ts';
import type { KvStore } from '../outbox/types.ts';

type BindingInterface = ConstructorParameters<typeof SerialPortStream>[0]['binding'];
/**
 * Edge VMC driver: the edge agent is the machine's cashless device (a mobile-payment
 * reader at MDB address 0x10) and the vending machine controller is the MDB master that
 * polls it [VMC-MASTER-1]. A paid order becomes BEGIN SESSION (with the remote selection),
 * the controller asks VEND REQUEST, the driver answers VEND APPROVED, the controller runs
 * the motor and reports VEND SUCCESS/FAILURE. See docs/protocol.md "Vending serial link".
 *
 * Business rules:
 * - [VEND-ONCE-1] at most one motor run per orderId: a ledger entry is written (fsync)
 *   before the session starts; a repeat returns the first outcome, an interrupted one is
 *   never re-run.
 * - [VEND-DROP-1] `dispensed` only when the controller said VEND SUCCESS *and* the drop
 *   sensor line fired between approval and `dropWindowMs` after the success.
 */

export type VendFailReason =
  | 'no_drop'
  | 'vend_failed'
  | 'vmc_reset'
  | 'denied'
  | 'cancelled'
  | 'timeout'
  | 'interrupted'
  | 'expired'
  | 'stopped';

export interface VendRequest {
  orderId: string;
  slot: number;
  priceCents: number;
  /** Time budget in ms from the call (default 30 s). */
  deadlineMs?: number;
  /** Absolute expiry (epoch ms, the command's `expiresAt`): refused without a session once passed. */
  expiresAt?: number;
}

export interface VendOutcome {
  orderId: string;
  outcome: 'dispensed' | 'failed';
  reason?: VendFailReason;
  /** Catalogue code of the failure (EDGE_ERR_VMC_*). */
  code?: EdgeErrorCode;
  slot: number;
  durationMs: number;
  /** ms from the call to VEND APPROVED written on the line (undefined if never approved). */
  approvedAfterMs?: number;
  /** True when the drop sensor fired during the vend (also on failures: ops review). */
  dropSeen?: boolean;
}

export type VmcTelemetry =
  | { kind: 'temperature'; deciCelsius: number }
  | { kind: 'stock'; slot: number; count: number }
  | { kind: 'door'; open: boolean }
  /** EVA-DTS style event codes: EJL failed to drop, ELA failed vend, EGS door open, EA7 power outage. */
  | { kind: 'event'; code: string; active: boolean; orderId?: string };

export interface VmcCounters {
  framesIn: number;
  framesOut: number;
  parseErrors: Record<string, number>;
  naksReceived: number;
  retransmitRequests: number;
  repeatedResponses: number;
  outOfSequence: number;
  portOpens: number;
  portLosses: number;
  linkDowns: number;
  vmcResets: number;
  vendsDispensed: number;
  vendsFailed: Record<string, number>;
  vendReplays: number;
  unexpectedDrops: number;
}

export interface VmcDriverOptions {
  path: string;
  baudRate?: number;
  /** serialport binding; default: platform binding. Unit tests pass @serialport/binding-mock. */
  binding?: BindingInterface;
  address?: mdb.CashlessAddress;
  /** Drop sensor (IR beam), 1 = beam broken by a falling item. */
  dropLine?: Line;
  /**
   * Also accept DIAG DROP from the board as drop confirmation (IR beam wired to the board).
   * Default false: only the edge's own GPIO line confirms a dispense.
   */
  dropOverSerial?: boolean;
  doorLine?: Line;
  lockLine?: Line;
  ledger: Pick<KvStore, 'get' | 'put'>;
  now?: () => number;
  /** Drop must arrive no later than this after VEND SUCCESS (ms). */
  dropWindowMs?: number;
  /** No POLL for this long = link down event (ms); slow boards may pause ~1 s. */
  linkTimeoutMs?: number;
  /**
   * After VEND APPROVED the order's deadline no longer applies (failing it while the motor
   * runs would refund an item that then drops); the VMC's result must come within this (ms).
   */
  vendResultTimeoutMs?: number;
  /** Inter-byte idle that truncates a partial frame (ms). */
  interByteTimeoutMs?: number;
  reopenMinMs?: number;
  reopenMaxMs?: number;
  countryCode?: number;
  counters?: VmcCounters;
  log?: { warn(obj: object, msg?: string): void; info(obj: object, msg?: string): void };
}

type ReaderState = 'inactive' | 'disabled' | 'enabled' | 'session' | 'vend';

interface ActiveVend {
  req: VendRequest & { deadlineMs: number };
  startedAt: number;
  deadlineAt: number;
  phase: 'waiting' | 'session' | 'requested' | 'approved' | 'reported' | 'done';
  approvedAt?: number;
  successAt?: number;
  dropAt?: number;
  resolve: (o: VendOutcome) => void;
  timer?: NodeJS.Timeout;
}

export function newVmcCounters(): VmcCounters {
  return {
    framesIn: 0,
    framesOut: 0,
    parseErrors: {},
    naksReceived: 0,
    retransmitRequests: 0,
    repeatedResponses: 0,
    outOfSequence: 0,
    portOpens: 0,
    portLosses: 0,
    linkDowns: 0,
    vmcResets: 0,
    vendsDispensed: 0,
    vendsFailed: {},
    vendReplays: 0,
    unexpectedDrops: 0,
  };
}

const LEDGER_PREFIX = 'vmc/vend/';

export interface VmcDriverEvents {
  telemetry: [VmcTelemetry];
  link: [{ up: boolean; reason?: string }];
  state: [{ from: ReaderState; to: ReaderState }];
  approved: [{ orderId: string; afterMs: number }];
  outcome: [VendOutcome];
  protocolError: [StorelinkError];
}

export class VmcDriver extends EventEmitter<VmcDriverEvents> {
  readonly counters: VmcCounters;
  private readonly o: {
    path: string;
    baudRate: number;
    address: mdb.CashlessAddress;
    dropWindowMs: number;
    vendResultTimeoutMs: number;
    linkTimeoutMs: number;
    interByteTimeoutMs: number;
    reopenMinMs: number;
    reopenMaxMs: number;
    countryCode: number;
  };
  private readonly now: () => number;
  private readonly opts: VmcDriverOptions;
  private port: SerialPortStream | null = null;
  private readonly parser = new mdb.FrameParser({ accept: 'vmc' });
  private idleTimer: NodeJS.Timeout | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  private reopenDelay: number;
  private linkTimer: NodeJS.Timeout | undefined;
  private linkUp = false;
  private started = false;
  private state: ReaderState = 'inactive';
  /** The data answer not yet ACKed by the controller; repeated on POLL/RET/NAK [MDB-RETRY-2]. */
  private unconfirmed: mdb.PeripheralMsg | null = null;
  /** Next data answer to give on POLL. */
  private readonly toSay: mdb.PeripheralMsg[] = [];
  private justReset = true;
  private active: ActiveVend | null = null;
  /** A vend whose VEND SUCCESS came and whose drop is still awaited after its session ended. */
  private dropWait: ActiveVend | null = null;
  private readonly queue: ActiveVend[] = [];
  private readonly inflight = new Map<string, Promise<VendOutcome>>();
  private lastCommand: { raw: string; reply: mdb.MdbMessage } | null = null;
  private readonly onDrop = (err: Error | null | undefined, v: 0 | 1): void => {
    if (err || v !== 1) return;
    for (const a of [this.active, this.dropWait]) {
      if (a && (a.phase === 'approved' || a.phase === 'reported') && a.dropAt === undefined) {
        a.dropAt = this.now();
        if (a.phase === 'reported') this.finish(a, 'dispensed');
        return;
      }
    }
    this.counters.unexpectedDrops++;
  };
  private readonly onDoor = (err: Error | null | undefined, v: 0 | 1): void => {
    if (err) return;
    this.emit('telemetry', { kind: 'door', open: v === 1 });
    this.emit('telemetry', { kind: 'event', code: 'EGS', active: v === 1 });
  };

  constructor(opts: VmcDriverOptions) {
    super();
    this.opts = opts;
    this.o = {
      path: opts.path,
      baudRate: opts.baudRate ?? 9600,
      address: opts.address ?? mdb.CASHLESS_1,
      dropWindowMs: opts.dropWindowMs ?? 1500,
      vendResultTimeoutMs: opts.vendResultTimeoutMs ?? 60_000,
      linkTimeoutMs: opts.linkTimeoutMs ?? 2500,
      interByteTimeoutMs: opts.interByteTimeoutMs ?? 20,
      reopenMinMs: opts.reopenMinMs ?? 50,
      reopenMaxMs: opts.reopenMaxMs ?? 2000,
      countryCode: opts.countryCode ?? 0x1156,
    };
    this.reopenDelay = this.o.reopenMinMs;
    this.now = opts.now ?? Date.now;
    this.counters = opts.counters ?? newVmcCounters();
  }

  get readerState(): ReaderState {
    return this.state;
  }
  get isLinkUp(): boolean {
    return this.linkUp;
  }

  async start(): Promise<void> {
    this.started = true;
    this.opts.dropLine?.watch(this.onDrop);
    this.opts.doorLine?.watch(this.onDoor);
    await this.open();
  }

  async stop(): Promise<void> {
    this.started = false;
    clearTimeout(this.reopenTimer);
    clearTimeout(this.linkTimer);
    clearTimeout(this.idleTimer);
    this.opts.dropLine?.unwatch(this.onDrop);
    this.opts.doorLine?.unwatch(this.onDoor);
    for (const v of [this.active, ...this.queue]) if (v) this.fail(v, 'stopped');
    const p = this.port;
    this.port = null;
    if (p?.isOpen) await new Promise<void>((r) => p.close(() => r()));
  }

  /** Lock relay: 1 = locked. */
  async setLock(locked: boolean): Promise<void> {
    await this.opts.lockLine?.write(locked ? 1 : 0);
  }

  /**
   * Vends one paid order. Idempotent per orderId [VEND-ONCE-1]: concurrent and later calls
   * return the first outcome; the motor never runs twice for one payment.
   */
  vend(req: VendRequest): Promise<VendOutcome> {
    const existing = this.inflight.get(req.orderId);
    if (existing) {
      this.replayed(req.orderId);
      return existing;
    }
    const p = this.vendOnce(req).finally(() => this.inflight.delete(req.orderId));
    this.inflight.set(req.orderId, p);
    return p;
  }

  private async vendOnce(req: VendRequest): Promise<VendOutcome> {
    const key = LEDGER_PREFIX + req.orderId;
    const prior = await this.opts.ledger.get(key);
    if (prior) {
      this.replayed(req.orderId);
      const entry = JSON.parse(prior) as { status: 'started' | 'done'; outcome?: VendOutcome; slot: number };
      if (entry.status === 'done' && entry.outcome) return entry.outcome;
      // Started before a restart: unknown whether the motor ran; never run it again.
      const o: VendOutcome = {
        orderId: req.orderId,
        outcome: 'failed',
        reason: 'interrupted',
        code: 'EDGE_ERR_VMC_INTERRUPTED',
        slot: entry.slot,
        durationMs: 0,
      };
      await this.opts.ledger.put(key, JSON.stringify({ status: 'done', slot: entry.slot, outcome: o }), {
        sync: true,
      });
      return o;
    }
    if (req.expiresAt !== undefined && this.now() >= req.expiresAt) {
      // [VEND-EXPIRY-1] an expired order never opens a session; recorded so a replay gets the same answer.
      const o: VendOutcome = {
        orderId: req.orderId,
        outcome: 'failed',
        reason: 'expired',
        code: 'EDGE_ERR_VMC_EXPIRED',
        slot: req.slot,
        durationMs: 0,
      };
      this.counters.vendsFailed.expired = (this.counters.vendsFailed.expired ?? 0) + 1;
      this.opts.log?.warn({
        err: edgeError('EDGE_ERR_VMC_EXPIRED', {
          orderId: req.orderId,
          expiresAt: req.expiresAt,
          now: this.now(),
        }),
      });
      await this.opts.ledger.put(key, JSON.stringify({ status: 'done', slot: req.slot, outcome: o }), {
        sync: true,
      });
      return o;
    }
    await this.opts.ledger.put(key, JSON.stringify({ status: 'started', slot: req.slot, at: this.now() }), {
      sync: true,
    });
    const startedAt = this.now();
    const full: VendRequest & { deadlineMs: number } = { deadlineMs: 30_000, ...req };
    const outcome = await new Promise<VendOutcome>((resolve) => {
      const v: ActiveVend = {
        req: full,
        startedAt,
        deadlineAt: startedAt + full.deadlineMs,
        phase: 'waiting',
        resolve,
      };
      v.timer = setTimeout(() => this.onDeadline(v), full.deadlineMs);
      this.queue.push(v);
      this.pump();
    });
    await this.opts.ledger.put(key, JSON.stringify({ status: 'done', slot: req.slot, outcome }), {
      sync: true,
    });
    return outcome;
  }

  private replayed(orderId: string): void {
    this.counters.vendReplays++;
    this.opts.log?.warn({ err: edgeError('EDGE_ERR_VMC_REPLAY', { orderId }) }, 'vend replay refused');
  }

  /** Starts the next queued vend when the reader is idle and enabled. */
  private pump(): void {
    if (this.active || this.state !== 'enabled') return;
    const next = this.queue.shift();
    if (!next) return;
    this.active = next;
    next.phase = 'session';
    // Remote selection: the storelink 5-byte BEGIN SESSION names the paid slot.
    this.toSay.push({
      dir: 'peripheral',
      type: 'BEGIN_SESSION',
      funds: next.req.priceCents,
      item: next.req.slot,
    });
  }

  private onDeadline(v: ActiveVend): void {
    if (v.phase === 'done') return;
    const idx = this.queue.indexOf(v);
    if (idx >= 0) this.queue.splice(idx, 1);
    if (v === this.active && v.phase === 'session' && this.state === 'session') {
      // Not approved yet: nothing can have dispensed; ask the controller to end the session.
      this.toSay.push({ dir: 'peripheral', type: 'SESSION_CANCEL_REQUEST' });
    }
    this.fail(v, 'timeout');
  }

  private fail(v: ActiveVend, reason: VendFailReason): void {
    this.finish(v, 'failed', reason);
  }

  private finish(v: ActiveVend, outcome: 'dispensed' | 'failed', reason?: VendFailReason): void {
    if (v.phase === 'done') return;
    const phaseBefore = v.phase;
    v.phase = 'done';
    clearTimeout(v.timer);
    const code: Record<VendFailReason, EdgeErrorCode> = {
      no_drop: 'EDGE_ERR_VMC_NO_DROP',
      vend_failed: 'EDGE_ERR_VMC_VEND_FAILED',
      vmc_reset: 'EDGE_ERR_VMC_RESET_MID_VEND',
      denied: 'EDGE_ERR_VMC_DENIED',
      cancelled: 'EDGE_ERR_VMC_VEND_FAILED',
      timeout: 'EDGE_ERR_VMC_TIMEOUT',
      interrupted: 'EDGE_ERR_VMC_INTERRUPTED',
      expired: 'EDGE_ERR_VMC_EXPIRED',
      stopped: 'EDGE_ERR_VMC_TIMEOUT',
    };
    const o: VendOutcome = {
      orderId: v.req.orderId,
      outcome,
      slot: v.req.slot,
      durationMs: this.now() - v.startedAt,
      dropSeen: v.dropAt !== undefined,
      ...(v.approvedAt !== undefined ? { approvedAfterMs: v.approvedAt - v.startedAt } : {}),
      ...(reason ? { reason, code: code[reason] } : {}),
    };
    if (outcome === 'dispensed') this.counters.vendsDispensed++;
    else
      this.counters.vendsFailed[reason ?? 'unknown'] =
        (this.counters.vendsFailed[reason ?? 'unknown'] ?? 0) + 1;
    if (reason === 'no_drop') {
      this.emit('telemetry', { kind: 'event', code: 'EJL', active: true, orderId: v.req.orderId });
    }
    if (reason === 'vend_failed' || reason === 'vmc_reset') {
      this.emit('telemetry', { kind: 'event', code: 'ELA', active: true, orderId: v.req.orderId });
    }
    if (reason) {
      this.opts.log?.warn(
        {
          err: edgeError(code[reason], {
            orderId: v.req.orderId,
            slot: v.req.slot,
            reason,
            deadlineMs: v.req.deadlineMs,
            phase: phaseBefore,
          }),
        },
        'vend failed',
      );
    }
    this.emit('outcome', o);
    v.resolve(o);
    // The session itself is closed by the controller (SESSION COMPLETE); a finished
    // waiting/queued vend never owned it.
    if (this.active === v && (phaseBefore === 'waiting' || phaseBefore === 'session')) {
      const begin = this.toSay.findIndex((m) => m.type === 'BEGIN_SESSION');
      if (begin >= 0 && this.state === 'enabled') {
        this.toSay.splice(begin, 1);
        this.active = null;
        this.pump();
      }
    }
  }

  // ---- port lifecycle [VMC-PORT-1] ------------------------------------------------------

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
      this.emit('link', { up: false, reason: (e as Error).message });
      this.opts.log?.warn({
        err: edgeError('EDGE_ERR_VMC_PORT', { path: this.o.path, reason: (e as Error).message }),
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
        err: edgeError('EDGE_ERR_VMC_PORT', { path: this.o.path, reason: err.message }),
      });
    });
    port.on('close', () => {
      if (this.port !== port) return;
      this.port = null;
      this.counters.portLosses++;
      this.setLink(false, 'port closed');
      this.scheduleReopen();
    });
    this.armLinkTimer();
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

  private armLinkTimer(): void {
    clearTimeout(this.linkTimer);
    this.linkTimer = setTimeout(() => {
      if (this.linkUp) {
        this.opts.log?.warn({
          err: edgeError('EDGE_ERR_VMC_LINK_DOWN', { path: this.o.path, silentMs: this.o.linkTimeoutMs }),
        });
        this.setLink(false, 'no poll');
      }
      // [VMC-PORT-2] a pty or USB adapter replaced under us can leave a dead but "open" fd that
      // never reports an error: reopen the path when the controller has gone silent.
      const p = this.port;
      if (p?.isOpen) p.close();
    }, this.o.linkTimeoutMs);
  }

  private onData(chunk: Buffer): void {
    this.handleParsed(this.parser.push(chunk));
    clearTimeout(this.idleTimer);
    if (this.parser.pending > 0) {
      this.idleTimer = setTimeout(() => this.handleParsed(this.parser.idle()), this.o.interByteTimeoutMs);
    }
  }

  private handleParsed(r: { frames: mdb.ParsedFrame[]; errors: StorelinkError[] }): void {
    for (const e of r.errors) {
      // [VMC-CHK-1] a bad frame is dropped unanswered; the controller times out and repeats it.
      this.counters.parseErrors[e.code] = (this.counters.parseErrors[e.code] ?? 0) + 1;
      this.emit('protocolError', e);
    }
    for (const f of r.frames) {
      this.counters.framesIn++;
      this.setLink(true);
      this.armLinkTimer();
      this.onFrame(f);
    }
  }

  private write(msg: mdb.MdbMessage): void {
    const p = this.port;
    if (!p?.isOpen) return;
    this.counters.framesOut++;
    p.write(mdb.serialize(msg), (e) => {
      if (e && this.port === p && p.isOpen) p.close(); // EIO on write: the port is gone [VMC-PORT-1]
    });
  }

  private reply(f: mdb.ParsedFrame, msg: mdb.MdbMessage): void {
    this.lastCommand = { raw: f.raw.toString('hex'), reply: msg };
    if (!mdb.isControl(msg)) this.unconfirmed = msg as mdb.PeripheralMsg;
    this.write(msg);
  }

  private ack(f: mdb.ParsedFrame): void {
    this.reply(f, { dir: 'peripheral', type: 'ACK' });
  }

  private setState(to: ReaderState): void {
    if (to === this.state) return;
    const from = this.state;
    this.state = to;
    this.emit('state', { from, to });
    if (to === 'enabled') this.pump();
  }

  /** One handler per controller message (house style 3). */
  private onFrame(f: mdb.ParsedFrame): void {
    const m = f.msg;
    if (mdb.isControl(m)) {
      if (m.type === 'ACK') {
        this.confirmed();
      } else if (m.type === 'NAK') {
        // [MDB-RETRY-2] the controller did not take our data: it stays unconfirmed and is repeated.
        this.counters.naksReceived++;
      } else if (m.type === 'RET' && this.unconfirmed) {
        this.counters.retransmitRequests++;
        this.write(this.unconfirmed);
      }
      return;
    }
    if (m.dir !== 'vmc') return;
    if (m.addr !== this.o.address) return; // another device's traffic
    // A repeated command (our answer was lost) gets the same answer, never a second action.
    if (m.type !== 'POLL' && this.lastCommand && this.lastCommand.raw === f.raw.toString('hex')) {
      this.counters.repeatedResponses++;
      this.write(this.lastCommand.reply);
      return;
    }
    switch (m.type) {
      case 'RESET':
        this.onReset(f);
        return;
      case 'POLL':
        this.onPoll(f);
        return;
      case 'SETUP_CONFIG':
        this.justReset = false;
        this.reply(f, {
          dir: 'peripheral',
          type: 'READER_CONFIG',
          featureLevel: 1,
          countryCode: this.o.countryCode,
          scaleFactor: 1,
          decimalPlaces: 2,
          maxResponseTime: 5,
          options: 0,
        });
        if (this.state === 'inactive') this.setState('disabled');
        return;
      case 'SETUP_PRICES':
        this.ack(f);
        return;
      case 'READER_ENABLE':
        this.ack(f);
        if (this.state === 'disabled' || this.state === 'inactive') this.setState('enabled');
        return;
      case 'READER_DISABLE':
        this.ack(f);
        if (this.state === 'enabled') this.setState('disabled');
        return;
      case 'READER_CANCEL':
        this.reply(f, { dir: 'peripheral', type: 'CANCELLED' });
        return;
      case 'VEND_REQUEST':
        this.onVendRequest(f, m);
        return;
      case 'VEND_CANCEL':
        this.reply(f, { dir: 'peripheral', type: 'VEND_DENIED' });
        if (this.active && this.active.phase !== 'reported') this.fail(this.active, 'cancelled');
        if (this.state === 'vend') this.setState('session');
        return;
      case 'VEND_SUCCESS':
        this.onVendResult(f, 'success');
        return;
      case 'VEND_FAILURE':
        this.onVendResult(f, 'failure');
        return;
      case 'SESSION_COMPLETE':
        this.onSessionComplete(f);
        return;
      case 'DIAG_TEMPERATURE':
        this.ack(f);
        this.emit('telemetry', { kind: 'temperature', deciCelsius: m.deciCelsius });
        return;
      case 'DIAG_STOCK':
        this.ack(f);
        this.emit('telemetry', { kind: 'stock', slot: m.item, count: m.count });
        return;
      case 'DIAG_DROP':
        this.ack(f);
        if (this.opts.dropOverSerial) this.onDrop(null, 1);
        return;
      case 'DIAG_EVENT':
        this.ack(f);
        this.emit('telemetry', { kind: 'event', code: m.code, active: m.active });
        return;
    }
  }

  private confirmed(): void {
    const u = this.unconfirmed;
    this.unconfirmed = null;
    if (u?.type === 'JUST_RESET') this.justReset = false;
    if (u?.type === 'BEGIN_SESSION' && this.state === 'enabled') this.setState('session');
  }

  private onReset(f: mdb.ParsedFrame): void {
    this.counters.vmcResets++;
    this.ack(f);
    this.unconfirmed = null;
    this.toSay.length = 0;
    this.justReset = true;
    // [VEND-DROP-1] a controller that reboots mid-vend never confirmed the vend: failed, refund.
    const a = this.active;
    if (a) {
      if (a.phase === 'approved' || a.phase === 'requested') this.fail(a, 'vmc_reset');
      else if (a.phase === 'reported')
        this.dropWait = a; // success was reported: its drop timer runs on
      else if (a.phase === 'session') {
        // Session never reached a vend request: re-queue it for the re-established session.
        a.phase = 'waiting';
        this.queue.unshift(a);
      }
      this.active = null;
    }
    this.setState('inactive');
  }

  private onPoll(f: mdb.ParsedFrame): void {
    if (this.unconfirmed) {
      // [MDB-RETRY-2] the last data answer was not ACKed: repeat it.
      this.counters.repeatedResponses++;
      this.reply(f, this.unconfirmed);
      return;
    }
    if (this.justReset) {
      this.reply(f, { dir: 'peripheral', type: 'JUST_RESET' });
      return;
    }
    const next = this.toSay.shift();
    if (next) {
      if (next.type === 'BEGIN_SESSION' && this.state !== 'enabled') {
        this.toSay.unshift(next);
        this.ack(f);
        return;
      }
      this.reply(f, next);
      return;
    }
    this.ack(f);
  }

  private onVendRequest(f: mdb.ParsedFrame, m: { price: number; item: number }): void {
    const a = this.active;
    if (this.state === 'session' && a?.phase === 'done') {
      // The order timed out while the controller was asking: deny, the session then ends.
      this.setState('vend');
      this.reply(f, { dir: 'peripheral', type: 'VEND_DENIED' });
      return;
    }
    if (this.state !== 'session' || !a || a.phase !== 'session') {
      this.outOfSequence(f, 'VEND_REQUEST');
      return;
    }
    // [VEND-MATCH-1] approve only the paid slot at no more than the paid price.
    if (m.item !== a.req.slot || m.price > a.req.priceCents) {
      this.opts.log?.warn({
        err: edgeError('EDGE_ERR_VMC_DENIED', {
          orderId: a.req.orderId,
          ...m,
          slot: a.req.slot,
          priceCents: a.req.priceCents,
        }),
      });
      this.setState('vend');
      this.reply(f, { dir: 'peripheral', type: 'VEND_DENIED' });
      this.fail(a, 'denied');
      return;
    }
    this.setState('vend');
    a.phase = 'approved';
    a.approvedAt = this.now();
    clearTimeout(a.timer);
    a.timer = setTimeout(() => this.fail(a, 'timeout'), this.o.vendResultTimeoutMs);
    this.reply(f, { dir: 'peripheral', type: 'VEND_APPROVED', amount: m.price });
    this.emit('approved', { orderId: a.req.orderId, afterMs: a.approvedAt - a.startedAt });
  }

  private onVendResult(f: mdb.ParsedFrame, result: 'success' | 'failure'): void {
    this.ack(f);
    this.unconfirmed = null;
    if (this.state === 'vend') this.setState('session');
    const a = this.active;
    if (a?.phase !== 'approved') return;
    if (result === 'failure') {
      this.fail(a, 'vend_failed');
      return;
    }
    a.phase = 'reported';
    a.successAt = this.now();
    if (a.dropAt !== undefined) {
      this.finish(a, 'dispensed');
      return;
    }
    // [VEND-DROP-1] success without a drop yet: wait for the beam, else no_drop (refund).
    clearTimeout(a.timer);
    a.timer = setTimeout(() => {
      if (a.phase === 'reported') this.fail(a, 'no_drop');
    }, this.o.dropWindowMs);
  }

  private onSessionComplete(f: mdb.ParsedFrame): void {
    this.reply(f, { dir: 'peripheral', type: 'END_SESSION' });
    const a = this.active;
    if (a && a.phase !== 'done' && a.phase !== 'reported') {
      this.fail(a, a.phase === 'approved' ? 'vend_failed' : 'cancelled');
    }
    // A reported vend still waiting for its drop keeps its timer; it no longer owns the session.
    if (a?.phase === 'reported') this.dropWait = a;
    this.active = null;
    const idx = this.toSay.findIndex((x) => x.type === 'SESSION_CANCEL_REQUEST');
    if (idx >= 0) this.toSay.splice(idx, 1);
    if (this.state === 'session' || this.state === 'vend') this.setState('enabled');
    else this.pump();
  }

  private outOfSequence(f: mdb.ParsedFrame, command: string): void {
    this.counters.outOfSequence++;
    this.opts.log?.warn({ err: edgeError('EDGE_ERR_VMC_OUT_OF_SEQUENCE', { command, state: this.state }) });
    this.reply(f, { dir: 'peripheral', type: 'OUT_OF_SEQUENCE' });
  }
}

async function defaultBinding(): Promise<BindingInterface> {
  const { autoDetect } = await import('@serialport/bindings-cpp');
  return autoDetect() as unknown as BindingInterface;
}
