/**
 * Vending serial link codec: MDB cashless-device messages (MDB/ICP Section 7) framed for an
 * 8-bit UART or pty, which cannot carry MDB's 9th "mode" bit. See docs/protocol.md,
 * "Vending serial link".
 *
 * Frame  := SYNC LEN BODY[LEN] CHK        (data frame, LEN 1..36)
 *         | SYNC 0x00 CODE                (control frame: bare MDB ACK/NAK/RET byte)
 * SYNC   := 0x02 from the VMC (MDB: mode bit set on the first, address byte)
 *         | 0x03 from the peripheral (MDB: mode bit set on the last byte)
 * BODY   := the MDB block without its checksum, e.g. 0x13 0x00 pH pL iH iL (VEND REQUEST)
 * CHK    := sum(BODY) & 0xFF, the MDB checksum [MDB-CHK-1]
 *
 * The codec does no I/O (protocols/ rule); the driver and the simulator own the ports.
 */

import { type ProtoErrorCode, protoError, type StorelinkError } from '../errors.ts';

export const SYNC_VMC = 0x02;
export const SYNC_PERIPHERAL = 0x03;
/** MDB maximum block length (Section 2.2), the checksum excluded. */
export const MAX_BODY = 36;

export const ACK = 0x00;
export const RET = 0xaa;
export const NAK = 0xff;

/** Cashless device #1 and #2 base addresses; the command is in the low 3 bits [MDB-ADDR-1]. */
export const CASHLESS_1 = 0x10;
export const CASHLESS_2 = 0x60;
export type CashlessAddress = typeof CASHLESS_1 | typeof CASHLESS_2;

export const CMD = { RESET: 0, SETUP: 1, POLL: 2, VEND: 3, READER: 4, EXPANSION: 7 } as const;
export const VEND_SUB = {
  REQUEST: 0x00,
  CANCEL: 0x01,
  SUCCESS: 0x02,
  FAILURE: 0x03,
  SESSION_COMPLETE: 0x04,
} as const;
export const READER_SUB = { DISABLE: 0x00, ENABLE: 0x01, CANCEL: 0x02 } as const;
/** EXPANSION 0xFF is MDB's manufacturer-specific "diagnostics"; storelink uses it for telemetry. */
export const EXPANSION_DIAGNOSTICS = 0xff;
export const DIAG_KIND = { TEMPERATURE: 0x01, STOCK: 0x02, EVENT: 0x03, DROP: 0x04 } as const;

/** Poll/command response codes sent by the cashless device (Section 7.4). */
export const RESP = {
  JUST_RESET: 0x00,
  READER_CONFIG: 0x01,
  BEGIN_SESSION: 0x03,
  SESSION_CANCEL_REQUEST: 0x04,
  VEND_APPROVED: 0x05,
  VEND_DENIED: 0x06,
  END_SESSION: 0x07,
  CANCELLED: 0x08,
  MALFUNCTION: 0x0a,
  OUT_OF_SEQUENCE: 0x0b,
} as const;

export type ControlType = 'ACK' | 'NAK' | 'RET';
export type Direction = 'vmc' | 'peripheral';

/** A bare MDB control byte (no checksum in MDB either). */
export interface ControlMsg {
  dir: Direction;
  type: ControlType;
}

interface Addressed {
  dir: 'vmc';
  /** Base address of the cashless device (0x10 or 0x60). */
  addr: CashlessAddress;
}

export type VmcMsg =
  | (Addressed & { type: 'RESET' })
  | (Addressed & {
      type: 'SETUP_CONFIG';
      featureLevel: number;
      columns: number;
      rows: number;
      displayInfo: number;
    })
  | (Addressed & { type: 'SETUP_PRICES'; maxPrice: number; minPrice: number })
  | (Addressed & { type: 'POLL' })
  | (Addressed & { type: 'VEND_REQUEST'; price: number; item: number })
  | (Addressed & { type: 'VEND_CANCEL' })
  | (Addressed & { type: 'VEND_SUCCESS'; item: number })
  | (Addressed & { type: 'VEND_FAILURE' })
  | (Addressed & { type: 'SESSION_COMPLETE' })
  | (Addressed & { type: 'READER_DISABLE' })
  | (Addressed & { type: 'READER_ENABLE' })
  | (Addressed & { type: 'READER_CANCEL' })
  | (Addressed & { type: 'DIAG_TEMPERATURE'; deciCelsius: number })
  | (Addressed & { type: 'DIAG_STOCK'; item: number; count: number })
  | (Addressed & { type: 'DIAG_EVENT'; code: string; active: boolean })
  /** The board's own drop sensor saw an item fall (when the IR beam is wired to the board). */
  | (Addressed & { type: 'DIAG_DROP'; item: number });

interface FromPeripheral {
  dir: 'peripheral';
}

export type PeripheralMsg =
  | (FromPeripheral & { type: 'JUST_RESET' })
  | (FromPeripheral & {
      type: 'READER_CONFIG';
      featureLevel: number;
      countryCode: number;
      scaleFactor: number;
      decimalPlaces: number;
      maxResponseTime: number;
      options: number;
    })
  /** `item` is the storelink remote-selection extension (5-byte BEGIN SESSION). */
  | (FromPeripheral & { type: 'BEGIN_SESSION'; funds: number; item?: number })
  | (FromPeripheral & { type: 'SESSION_CANCEL_REQUEST' })
  | (FromPeripheral & { type: 'VEND_APPROVED'; amount: number })
  | (FromPeripheral & { type: 'VEND_DENIED' })
  | (FromPeripheral & { type: 'END_SESSION' })
  | (FromPeripheral & { type: 'CANCELLED' })
  | (FromPeripheral & { type: 'MALFUNCTION'; code: number })
  | (FromPeripheral & { type: 'OUT_OF_SEQUENCE' });

export type MdbMessage = ControlMsg | VmcMsg | PeripheralMsg;

export function isControl(m: MdbMessage): m is ControlMsg {
  return m.type === 'ACK' || m.type === 'NAK' || m.type === 'RET';
}

export function checksum(body: Uint8Array): number {
  let s = 0;
  for (const b of body) s += b;
  return s & 0xff; // [MDB-CHK-1] sum of all bytes, carry discarded
}

const u16 = (v: number): number[] => [(v >> 8) & 0xff, v & 0xff];

function assertU16(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
    throw protoError('PROTO_ERR_MDB_FIELD', { field: name, value: v, reason: 'must be 0..65535' });
  }
}
function assertU8(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) {
    throw protoError('PROTO_ERR_MDB_FIELD', { field: name, value: v, reason: 'must be 0..255' });
  }
}

/** The MDB block (without checksum) of a data message. */
export function encodeBody(msg: VmcMsg | PeripheralMsg): number[] {
  if (msg.dir === 'vmc') {
    const a = msg.addr;
    switch (msg.type) {
      case 'RESET':
        return [a | CMD.RESET];
      case 'SETUP_CONFIG':
        for (const k of ['featureLevel', 'columns', 'rows', 'displayInfo'] as const) assertU8(k, msg[k]);
        return [a | CMD.SETUP, 0x00, msg.featureLevel, msg.columns, msg.rows, msg.displayInfo];
      case 'SETUP_PRICES':
        assertU16('maxPrice', msg.maxPrice);
        assertU16('minPrice', msg.minPrice);
        return [a | CMD.SETUP, 0x01, ...u16(msg.maxPrice), ...u16(msg.minPrice)];
      case 'POLL':
        return [a | CMD.POLL];
      case 'VEND_REQUEST':
        assertU16('price', msg.price);
        assertU16('item', msg.item);
        return [a | CMD.VEND, VEND_SUB.REQUEST, ...u16(msg.price), ...u16(msg.item)];
      case 'VEND_CANCEL':
        return [a | CMD.VEND, VEND_SUB.CANCEL];
      case 'VEND_SUCCESS':
        assertU16('item', msg.item);
        return [a | CMD.VEND, VEND_SUB.SUCCESS, ...u16(msg.item)];
      case 'VEND_FAILURE':
        return [a | CMD.VEND, VEND_SUB.FAILURE];
      case 'SESSION_COMPLETE':
        return [a | CMD.VEND, VEND_SUB.SESSION_COMPLETE];
      case 'READER_DISABLE':
        return [a | CMD.READER, READER_SUB.DISABLE];
      case 'READER_ENABLE':
        return [a | CMD.READER, READER_SUB.ENABLE];
      case 'READER_CANCEL':
        return [a | CMD.READER, READER_SUB.CANCEL];
      case 'DIAG_TEMPERATURE': {
        const v = msg.deciCelsius;
        if (!Number.isInteger(v) || v < -32768 || v > 32767) {
          throw protoError('PROTO_ERR_MDB_FIELD', { field: 'deciCelsius', value: v, reason: 'int16' });
        }
        return [a | CMD.EXPANSION, EXPANSION_DIAGNOSTICS, DIAG_KIND.TEMPERATURE, ...u16(v & 0xffff)];
      }
      case 'DIAG_STOCK':
        assertU16('item', msg.item);
        assertU16('count', msg.count);
        return [
          a | CMD.EXPANSION,
          EXPANSION_DIAGNOSTICS,
          DIAG_KIND.STOCK,
          ...u16(msg.item),
          ...u16(msg.count),
        ];
      case 'DIAG_DROP':
        assertU16('item', msg.item);
        return [a | CMD.EXPANSION, EXPANSION_DIAGNOSTICS, DIAG_KIND.DROP, ...u16(msg.item)];
      case 'DIAG_EVENT': {
        if (!/^[A-Z0-9]{2,8}$/.test(msg.code)) {
          throw protoError('PROTO_ERR_MDB_FIELD', {
            field: 'code',
            value: msg.code,
            reason: '2-8 of A-Z 0-9',
          });
        }
        const chars = [...msg.code].map((c) => c.charCodeAt(0));
        return [a | CMD.EXPANSION, EXPANSION_DIAGNOSTICS, DIAG_KIND.EVENT, msg.active ? 1 : 0, ...chars];
      }
    }
  }
  switch (msg.type) {
    case 'JUST_RESET':
      return [RESP.JUST_RESET];
    case 'READER_CONFIG':
      for (const k of [
        'featureLevel',
        'scaleFactor',
        'decimalPlaces',
        'maxResponseTime',
        'options',
      ] as const) {
        assertU8(k, msg[k]);
      }
      assertU16('countryCode', msg.countryCode);
      return [
        RESP.READER_CONFIG,
        msg.featureLevel,
        ...u16(msg.countryCode),
        msg.scaleFactor,
        msg.decimalPlaces,
        msg.maxResponseTime,
        msg.options,
      ];
    case 'BEGIN_SESSION':
      assertU16('funds', msg.funds);
      if (msg.item === undefined) return [RESP.BEGIN_SESSION, ...u16(msg.funds)];
      assertU16('item', msg.item);
      return [RESP.BEGIN_SESSION, ...u16(msg.funds), ...u16(msg.item)];
    case 'SESSION_CANCEL_REQUEST':
      return [RESP.SESSION_CANCEL_REQUEST];
    case 'VEND_APPROVED':
      assertU16('amount', msg.amount);
      return [RESP.VEND_APPROVED, ...u16(msg.amount)];
    case 'VEND_DENIED':
      return [RESP.VEND_DENIED];
    case 'END_SESSION':
      return [RESP.END_SESSION];
    case 'CANCELLED':
      return [RESP.CANCELLED];
    case 'MALFUNCTION':
      assertU8('code', msg.code);
      return [RESP.MALFUNCTION, msg.code];
    case 'OUT_OF_SEQUENCE':
      return [RESP.OUT_OF_SEQUENCE];
  }
}

const CONTROL_BYTE: Record<ControlType, number> = { ACK, NAK, RET };

/** Serialises one message into one UART frame. Throws PROTO_ERR_MDB_FIELD on out-of-range fields. */
export function serialize(msg: MdbMessage): Buffer {
  const sync = msg.dir === 'vmc' ? SYNC_VMC : SYNC_PERIPHERAL;
  if (isControl(msg)) return Buffer.from([sync, 0x00, CONTROL_BYTE[msg.type]]);
  const body = encodeBody(msg);
  return Buffer.from([sync, body.length, ...body, checksum(Uint8Array.from(body))]);
}

const rd16 = (b: Uint8Array, i: number): number => ((b[i] ?? 0) << 8) | (b[i + 1] ?? 0);

type DecodeResult =
  | { ok: true; msg: VmcMsg | PeripheralMsg }
  | { ok: false; code: ProtoErrorCode; reason: string };

function bad(code: ProtoErrorCode, reason: string): DecodeResult {
  return { ok: false, code, reason };
}

function want(body: Uint8Array, n: number, what: string, msg: () => VmcMsg | PeripheralMsg): DecodeResult {
  if (body.length !== n)
    return bad('PROTO_ERR_MDB_LENGTH', `${what} has ${body.length} bytes, expected ${n}`);
  return { ok: true, msg: msg() };
}

/** Decodes an MDB block whose checksum is already verified. */
export function decodeBody(dir: Direction, body: Uint8Array): DecodeResult {
  const b0 = body[0] ?? 0;
  if (dir === 'peripheral') {
    const p = { dir: 'peripheral' as const };
    switch (b0) {
      case RESP.JUST_RESET:
        return want(body, 1, 'JUST RESET', () => ({ ...p, type: 'JUST_RESET' }));
      case RESP.READER_CONFIG:
        return want(body, 8, 'READER CONFIG', () => ({
          ...p,
          type: 'READER_CONFIG',
          featureLevel: body[1] ?? 0,
          countryCode: rd16(body, 2),
          scaleFactor: body[4] ?? 0,
          decimalPlaces: body[5] ?? 0,
          maxResponseTime: body[6] ?? 0,
          options: body[7] ?? 0,
        }));
      case RESP.BEGIN_SESSION:
        if (body.length === 3)
          return { ok: true, msg: { ...p, type: 'BEGIN_SESSION', funds: rd16(body, 1) } };
        return want(body, 5, 'BEGIN SESSION', () => ({
          ...p,
          type: 'BEGIN_SESSION',
          funds: rd16(body, 1),
          item: rd16(body, 3),
        }));
      case RESP.SESSION_CANCEL_REQUEST:
        return want(body, 1, 'SESSION CANCEL REQUEST', () => ({ ...p, type: 'SESSION_CANCEL_REQUEST' }));
      case RESP.VEND_APPROVED:
        return want(body, 3, 'VEND APPROVED', () => ({ ...p, type: 'VEND_APPROVED', amount: rd16(body, 1) }));
      case RESP.VEND_DENIED:
        return want(body, 1, 'VEND DENIED', () => ({ ...p, type: 'VEND_DENIED' }));
      case RESP.END_SESSION:
        return want(body, 1, 'END SESSION', () => ({ ...p, type: 'END_SESSION' }));
      case RESP.CANCELLED:
        return want(body, 1, 'CANCELLED', () => ({ ...p, type: 'CANCELLED' }));
      case RESP.MALFUNCTION:
        return want(body, 2, 'MALFUNCTION', () => ({ ...p, type: 'MALFUNCTION', code: body[1] ?? 0 }));
      case RESP.OUT_OF_SEQUENCE:
        return want(body, 1, 'OUT OF SEQUENCE', () => ({ ...p, type: 'OUT_OF_SEQUENCE' }));
      default:
        return bad('PROTO_ERR_MDB_UNKNOWN_COMMAND', `peripheral response 0x${hex(b0)}`);
    }
  }
  const base = b0 & 0xf8;
  if (base !== CASHLESS_1 && base !== CASHLESS_2) {
    return bad('PROTO_ERR_MDB_UNKNOWN_COMMAND', `address 0x${hex(base)} is not a cashless device`);
  }
  const v = { dir: 'vmc' as const, addr: base as CashlessAddress };
  const cmd = b0 & 0x07;
  const sub = body[1];
  switch (cmd) {
    case CMD.RESET:
      return want(body, 1, 'RESET', () => ({ ...v, type: 'RESET' }));
    case CMD.POLL:
      return want(body, 1, 'POLL', () => ({ ...v, type: 'POLL' }));
    case CMD.SETUP:
      if (sub === 0x00) {
        return want(body, 6, 'SETUP CONFIG DATA', () => ({
          ...v,
          type: 'SETUP_CONFIG',
          featureLevel: body[2] ?? 0,
          columns: body[3] ?? 0,
          rows: body[4] ?? 0,
          displayInfo: body[5] ?? 0,
        }));
      }
      if (sub === 0x01) {
        return want(body, 6, 'SETUP MAX/MIN PRICES', () => ({
          ...v,
          type: 'SETUP_PRICES',
          maxPrice: rd16(body, 2),
          minPrice: rd16(body, 4),
        }));
      }
      break;
    case CMD.VEND:
      switch (sub) {
        case VEND_SUB.REQUEST:
          return want(body, 6, 'VEND REQUEST', () => ({
            ...v,
            type: 'VEND_REQUEST',
            price: rd16(body, 2),
            item: rd16(body, 4),
          }));
        case VEND_SUB.CANCEL:
          return want(body, 2, 'VEND CANCEL', () => ({ ...v, type: 'VEND_CANCEL' }));
        case VEND_SUB.SUCCESS:
          return want(body, 4, 'VEND SUCCESS', () => ({ ...v, type: 'VEND_SUCCESS', item: rd16(body, 2) }));
        case VEND_SUB.FAILURE:
          return want(body, 2, 'VEND FAILURE', () => ({ ...v, type: 'VEND_FAILURE' }));
        case VEND_SUB.SESSION_COMPLETE:
          return want(body, 2, 'SESSION COMPLETE', () => ({ ...v, type: 'SESSION_COMPLETE' }));
      }
      break;
    case CMD.READER:
      if (sub === READER_SUB.DISABLE)
        return want(body, 2, 'READER DISABLE', () => ({ ...v, type: 'READER_DISABLE' }));
      if (sub === READER_SUB.ENABLE)
        return want(body, 2, 'READER ENABLE', () => ({ ...v, type: 'READER_ENABLE' }));
      if (sub === READER_SUB.CANCEL)
        return want(body, 2, 'READER CANCEL', () => ({ ...v, type: 'READER_CANCEL' }));
      break;
    case CMD.EXPANSION:
      if (sub === EXPANSION_DIAGNOSTICS) {
        const kind = body[2];
        if (kind === DIAG_KIND.TEMPERATURE) {
          return want(body, 5, 'DIAG TEMPERATURE', () => {
            const raw = rd16(body, 3);
            return { ...v, type: 'DIAG_TEMPERATURE', deciCelsius: raw >= 0x8000 ? raw - 0x10000 : raw };
          });
        }
        if (kind === DIAG_KIND.STOCK) {
          return want(body, 7, 'DIAG STOCK', () => ({
            ...v,
            type: 'DIAG_STOCK',
            item: rd16(body, 3),
            count: rd16(body, 5),
          }));
        }
        if (kind === DIAG_KIND.DROP) {
          return want(body, 5, 'DIAG DROP', () => ({ ...v, type: 'DIAG_DROP', item: rd16(body, 3) }));
        }
        if (kind === DIAG_KIND.EVENT) {
          const code = Buffer.from(body.subarray(4)).toString('latin1');
          if (body.length < 6 || body.length > 12 || !/^[A-Z0-9]+$/.test(code)) {
            return bad('PROTO_ERR_MDB_LENGTH', 'DIAG EVENT needs a 2-8 character A-Z 0-9 code');
          }
          if (body[3] !== 0 && body[3] !== 1)
            return bad('PROTO_ERR_MDB_FIELD', 'DIAG EVENT active flag must be 0 or 1');
          return { ok: true, msg: { ...v, type: 'DIAG_EVENT', active: body[3] === 1, code } };
        }
      }
      break;
  }
  return bad(
    'PROTO_ERR_MDB_UNKNOWN_COMMAND',
    `command 0x${hex(b0)}${sub === undefined ? '' : ` subcommand 0x${hex(sub)}`}`,
  );
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

export interface ParsedFrame {
  msg: MdbMessage;
  /** The frame's bytes as received. */
  raw: Buffer;
}

export interface FrameParserOptions {
  /** Accept only frames from this side (a driver ignores its own echo); default both. */
  accept?: Direction;
}

/**
 * Incremental frame parser [MDB-FRAME-1]: takes chunks of any size (partial, fragmented,
 * several frames at once), skips garbage, and resynchronises after any bad frame by
 * rescanning from the byte after the bad frame's SYNC, so a valid frame that follows
 * (or overlaps) noise is never lost. Never throws on input.
 */
export class FrameParser {
  private buf: Buffer = Buffer.alloc(0);
  private readonly accept: Direction | undefined;

  constructor(opts: FrameParserOptions = {}) {
    this.accept = opts.accept;
  }

  /** Bytes held while waiting for the rest of a frame. */
  get pending(): number {
    return this.buf.length;
  }

  push(chunk: Uint8Array): { frames: ParsedFrame[]; errors: StorelinkError[] } {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    return this.drain(false);
  }

  /**
   * The line went idle (no byte for an inter-byte timeout): a frame still incomplete is
   * truncated [MDB-FRAME-2]. Its SYNC is dropped and the rest rescanned, so a false SYNC in
   * noise announcing a long LEN cannot stall a real short frame behind it.
   */
  idle(): { frames: ParsedFrame[]; errors: StorelinkError[] } {
    const frames: ParsedFrame[] = [];
    const errors: StorelinkError[] = [];
    while (this.buf.length > 0) {
      errors.push(
        protoError('PROTO_ERR_MDB_TRUNCATED', {
          pending: this.buf.length,
          bytes: this.buf.subarray(0, 8).toString('hex'),
        }),
      );
      this.buf = this.buf.subarray(1);
      const r = this.drain(false);
      frames.push(...r.frames);
      errors.push(...r.errors);
    }
    return { frames, errors };
  }

  reset(): void {
    this.buf = Buffer.alloc(0);
  }

  private drain(_final: boolean): { frames: ParsedFrame[]; errors: StorelinkError[] } {
    const frames: ParsedFrame[] = [];
    const errors: StorelinkError[] = [];
    let pos = 0;
    const b = this.buf;
    while (pos < b.length) {
      // Skip to the next SYNC byte; count what was skipped as one garbage error.
      let s = pos;
      while (s < b.length && b[s] !== SYNC_VMC && b[s] !== SYNC_PERIPHERAL) s++;
      if (s > pos) {
        errors.push(protoError('PROTO_ERR_MDB_GARBAGE', { skipped: s - pos, bytes: hexHead(b, pos, s) }));
        pos = s;
        if (pos >= b.length) break;
      }
      const dir: Direction = b[pos] === SYNC_VMC ? 'vmc' : 'peripheral';
      if (pos + 1 >= b.length) break; // need LEN
      const len = b[pos + 1] as number;
      if (len === 0) {
        if (pos + 2 >= b.length) break;
        const code = b[pos + 2];
        const type: ControlType | undefined =
          code === ACK ? 'ACK' : code === NAK ? 'NAK' : code === RET ? 'RET' : undefined;
        if (!type) {
          errors.push(
            protoError('PROTO_ERR_MDB_UNKNOWN_COMMAND', { reason: `control byte 0x${hex(code ?? 0)}` }),
          );
          pos += 1;
          continue;
        }
        const raw = Buffer.from(b.subarray(pos, pos + 3));
        pos += 3;
        if (!this.accept || this.accept === dir) frames.push({ msg: { dir, type }, raw });
        continue;
      }
      if (len > MAX_BODY) {
        errors.push(protoError('PROTO_ERR_MDB_LENGTH', { reason: `LEN ${len} exceeds ${MAX_BODY}` }));
        pos += 1;
        continue;
      }
      const end = pos + 2 + len + 1;
      if (end > b.length) break; // partial frame: wait for more bytes
      const body = b.subarray(pos + 2, pos + 2 + len);
      const chk = b[end - 1] as number;
      const want = checksum(body);
      if (chk !== want) {
        // [MDB-FRAME-1] resync from the byte after this SYNC, not after the claimed frame.
        errors.push(
          protoError('PROTO_ERR_MDB_CHECKSUM', {
            got: `0x${hex(chk)}`,
            want: `0x${hex(want)}`,
            bytes: hexHead(b, pos, end),
          }),
        );
        pos += 1;
        continue;
      }
      const raw = Buffer.from(b.subarray(pos, end));
      const d = decodeBody(dir, body);
      pos = end;
      if (!d.ok) {
        errors.push(protoError(d.code, { reason: d.reason, bytes: raw.toString('hex') }));
        continue;
      }
      if (!this.accept || this.accept === dir) frames.push({ msg: d.msg, raw });
    }
    this.buf = pos >= b.length ? Buffer.alloc(0) : Buffer.from(b.subarray(pos));
    return { frames, errors };
  }
}

function hexHead(b: Buffer, from: number, to: number): string {
  const s = b.subarray(from, Math.min(to, from + 16)).toString('hex');
  return to - from > 16 ? `${s}...` : s;
}

/** Parses exactly one complete frame; throws the first error (for tests and tools). */
export function parse(bytes: Uint8Array): MdbMessage {
  const p = new FrameParser();
  const r = p.push(bytes);
  if (r.errors.length > 0) throw r.errors[0];
  if (p.pending > 0) {
    throw protoError('PROTO_ERR_MDB_TRUNCATED', {
      pending: p.pending,
      bytes: Buffer.from(bytes).toString('hex'),
    });
  }
  const f = r.frames[0];
  if (!f || r.frames.length !== 1) {
    throw protoError('PROTO_ERR_MDB_LENGTH', { reason: `expected one frame, found ${r.frames.length}` });
  }
  return f.msg;
}
