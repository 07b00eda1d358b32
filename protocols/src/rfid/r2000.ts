/**
 * Impinj R2000-style serial framing ("CF/R2000" UHF modules; hex-in/pyImpinj protocol),
 * both directions:
 *
 *   Head(0xA0) Len Adr Cmd Data[...] Check
 *
 * Len = 3 + data length (counts Adr, Cmd, Data and Check; a frame is Len+2 bytes). Check
 * is the two's complement of the byte sum of Head..Data, so the sum of the whole frame is
 * 0 mod 256 [R2000-CHK-1]. Adr 0xFF is the default/broadcast address.
 * Real-time inventory (0x89) answers with one frame per tag read,
 * [freq<<2 | ant][PC 2B][EPC][RSSI], then one end-of-round frame
 * [ant][read rate 2B][total reads 4B] (Len 0x0A), or a 1-byte error code [R2000-INV-1].
 * The codec does no I/O (protocols/ rule).
 */
import { protoError, type StorelinkError } from '../errors.ts';
import { type Attempt, hex2, hexHead, RfidStreamParser } from './stream.ts';

export const HEAD = 0xa0;
export const BROADCAST = 0xff;
export const CMD = {
  RESET: 0x70,
  GET_FIRMWARE_VERSION: 0x72,
  SET_WORK_ANTENNA: 0x74,
  GET_WORK_ANTENNA: 0x75,
  SET_OUTPUT_POWER: 0x76,
  INVENTORY: 0x80,
  REAL_TIME_INVENTORY: 0x89,
  FAST_SWITCH_ANT_INVENTORY: 0x8a,
  CUSTOMIZED_SESSION_TARGET_INVENTORY: 0x8b,
} as const;
const TAG_REPORTING: readonly number[] = [
  CMD.REAL_TIME_INVENTORY,
  CMD.FAST_SWITCH_ANT_INVENTORY,
  CMD.CUSTOMIZED_SESSION_TARGET_INVENTORY,
];

/** One-byte result codes (ImpinjR2KGlobalErrors). */
export const RESULT = {
  SUCCESS: 0x10,
  FAIL: 0x11,
  MCU_RESET_ERROR: 0x20,
  CW_ON_ERROR: 0x21,
  ANTENNA_MISSING: 0x22,
  TAG_INVENTORY_ERROR: 0x31,
  NO_TAG: 0x36,
  BUFFER_EMPTY: 0x38,
  PLL_LOCK_FAIL: 0x52,
  RF_CHIP_NO_RESPONSE: 0x53,
  OUTPUT_POWER_TOO_LOW: 0x57,
} as const;

export type R2000HostMsg =
  | { dir: 'host'; addr: number; type: 'SET_WORK_ANTENNA' /** 1..4 (sent 0..3) */; antenna: number }
  | {
      dir: 'host';
      addr: number;
      type: 'REAL_TIME_INVENTORY' /** inventory rounds per command, 1..255 */;
      repeat: number;
    }
  | { dir: 'host'; addr: number; type: 'COMMAND'; cmd: number; data: string };

export type R2000ReaderMsg =
  /** One tag read during a real-time inventory [R2000-INV-1]. */
  | {
      dir: 'reader';
      addr: number;
      type: 'TAG';
      cmd: number;
      /** Antenna 1..4 (low 2 bits + 1). */
      antenna: number;
      /** Frequency point index (high 6 bits). */
      freq: number;
      /** Protocol-control word; its top 5 bits give the EPC length in 16-bit words. */
      pc: number;
      epc: string;
      /** Raw RSSI byte; dBm = raw − 129. */
      rssi: number;
    }
  /** End of one real-time inventory round on an antenna. */
  | {
      dir: 'reader';
      addr: number;
      type: 'INVENTORY_END';
      cmd: number;
      antenna: number;
      readRate: number;
      totalRead: number;
    }
  /** A one-byte answer: 0x10 success or an error code (RESULT). */
  | { dir: 'reader'; addr: number; type: 'RESULT'; cmd: number; code: number }
  | { dir: 'reader'; addr: number; type: 'REPLY'; cmd: number; data: string };

export type R2000Msg = R2000HostMsg | R2000ReaderMsg;

/** Two's complement of the byte sum [R2000-CHK-1]. */
export function check(bytes: Uint8Array, from = 0, to = bytes.length): number {
  let s = 0;
  for (let i = from; i < to; i++) s += bytes[i] as number;
  return (~s + 1) & 0xff;
}

/** dBm from the raw RSSI byte (pyImpinj: raw − 129). */
export function rssiDbm(raw: number): number {
  return raw - 129;
}

/** EPC length in bytes announced by a PC word (bits 15..11 = length in words). */
export function epcBytesFromPc(pc: number): number {
  return ((pc >> 11) & 0x1f) * 2;
}

function u(field: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw protoError('PROTO_ERR_RFID_FIELD', { field, value: v, reason: `must be ${min}..${max}` });
  }
  return v;
}

function hexData(field: string, data: string): number[] {
  if (!/^(?:[0-9a-f]{2})*$/.test(data)) {
    throw protoError('PROTO_ERR_RFID_FIELD', { field, value: data, reason: 'lower-case hex byte pairs' });
  }
  return [...Buffer.from(data, 'hex')];
}

function encodeBody(msg: R2000Msg): number[] {
  switch (msg.type) {
    case 'SET_WORK_ANTENNA':
      return [CMD.SET_WORK_ANTENNA, u('antenna', msg.antenna, 1, 4) - 1];
    case 'REAL_TIME_INVENTORY':
      return [CMD.REAL_TIME_INVENTORY, u('repeat', msg.repeat, 0, 255)];
    case 'COMMAND':
    case 'REPLY':
      return [u('cmd', msg.cmd, 0, 255), ...hexData('data', msg.data)];
    case 'RESULT':
      return [u('cmd', msg.cmd, 0, 255), u('code', msg.code, 0, 255)];
    case 'TAG': {
      const epc = hexData('epc', msg.epc);
      u('pc', msg.pc, 0, 0xffff);
      if (epcBytesFromPc(msg.pc) !== epc.length) {
        throw protoError('PROTO_ERR_RFID_FIELD', {
          field: 'pc',
          value: msg.pc,
          reason: `announces ${epcBytesFromPc(msg.pc)} EPC bytes, epc has ${epc.length}`,
        });
      }
      return [
        u('cmd', msg.cmd, 0, 255),
        (u('freq', msg.freq, 0, 63) << 2) | (u('antenna', msg.antenna, 1, 4) - 1),
        msg.pc >> 8,
        msg.pc & 0xff,
        ...epc,
        u('rssi', msg.rssi, 0, 255),
      ];
    }
    case 'INVENTORY_END':
      return [
        u('cmd', msg.cmd, 0, 255),
        u('antenna', msg.antenna, 1, 4) - 1,
        (u('readRate', msg.readRate, 0, 0xffff) >> 8) & 0xff,
        msg.readRate & 0xff,
        ...u32(u('totalRead', msg.totalRead, 0, 0xffffffff)),
      ];
  }
}

const u32 = (v: number): number[] => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];

/** Serialises one message into one frame. Throws PROTO_ERR_RFID_FIELD on out-of-range fields. */
export function serialize(msg: R2000Msg): Buffer {
  const body = encodeBody(msg);
  const len = body.length + 2; // Adr + body (Cmd, Data) + Check
  if (len > 0xff) {
    throw protoError('PROTO_ERR_RFID_FIELD', { field: 'length', value: len, reason: 'frame over 257 bytes' });
  }
  const out = Buffer.allocUnsafe(len + 2);
  out[0] = HEAD;
  out[1] = len;
  out[2] = u('addr', msg.addr, 0, 255);
  for (let i = 0; i < body.length; i++) out[3 + i] = body[i] as number;
  out[len + 1] = check(out, 0, len + 1);
  return out;
}

type Decoded<M> = { ok: true; msg: M } | { ok: false; error: StorelinkError };

export function decodeHost(addr: number, cmd: number, d: Uint8Array): Decoded<R2000HostMsg> {
  if (cmd === CMD.SET_WORK_ANTENNA && d.length === 1 && (d[0] as number) <= 3) {
    return { ok: true, msg: { dir: 'host', addr, type: 'SET_WORK_ANTENNA', antenna: (d[0] as number) + 1 } };
  }
  if (cmd === CMD.REAL_TIME_INVENTORY && d.length === 1) {
    return { ok: true, msg: { dir: 'host', addr, type: 'REAL_TIME_INVENTORY', repeat: d[0] as number } };
  }
  return { ok: true, msg: { dir: 'host', addr, type: 'COMMAND', cmd, data: Buffer.from(d).toString('hex') } };
}

export function decodeReader(addr: number, cmd: number, d: Uint8Array): Decoded<R2000ReaderMsg> {
  if (d.length === 1)
    return { ok: true, msg: { dir: 'reader', addr, type: 'RESULT', cmd, code: d[0] as number } };
  if (TAG_REPORTING.includes(cmd)) {
    // [R2000-INV-1] a tag frame is recognised by its PC announcing exactly the EPC bytes
    // present; a 7-byte body that is not such a frame is the end-of-round summary.
    if (d.length >= 4) {
      const pc = ((d[1] as number) << 8) | (d[2] as number);
      const n = epcBytesFromPc(pc);
      if (n > 0 && d.length === 4 + n) {
        return {
          ok: true,
          msg: {
            dir: 'reader',
            addr,
            type: 'TAG',
            cmd,
            antenna: ((d[0] as number) & 0x03) + 1,
            freq: (d[0] as number) >> 2,
            pc,
            epc: Buffer.from(d.subarray(3, 3 + n)).toString('hex'),
            rssi: d[3 + n] as number,
          },
        };
      }
    }
    if (d.length === 7) {
      if ((d[0] as number) > 3)
        return payloadError(`end-of-round antenna byte 0x${hex2(d[0] as number)} is not 0..3`, d);
      return {
        ok: true,
        msg: {
          dir: 'reader',
          addr,
          type: 'INVENTORY_END',
          cmd,
          antenna: (d[0] as number) + 1,
          readRate: ((d[1] as number) << 8) | (d[2] as number),
          totalRead:
            (((d[3] as number) << 24) |
              ((d[4] as number) << 16) |
              ((d[5] as number) << 8) |
              (d[6] as number)) >>>
            0,
        },
      };
    }
    return payloadError(
      `inventory frame of ${d.length} data bytes is neither a tag (PC/EPC length mismatch) nor an end of round`,
      d,
    );
  }
  return { ok: true, msg: { dir: 'reader', addr, type: 'REPLY', cmd, data: Buffer.from(d).toString('hex') } };
}

function payloadError(reason: string, bytes: Uint8Array): { ok: false; error: StorelinkError } {
  return {
    ok: false,
    error: protoError('PROTO_ERR_RFID_PAYLOAD', {
      framing: 'r2000',
      reason,
      bytes: hexHead(bytes, 0, bytes.length),
    }),
  };
}

export interface R2000ParserOptions {
  from: 'host' | 'reader';
}

/** Incremental parser for one direction of an R2000 link [RFID-FRAME-1]. */
export class R2000Parser extends RfidStreamParser<R2000Msg> {
  private readonly from: 'host' | 'reader';

  constructor(opts: R2000ParserOptions) {
    super();
    this.from = opts.from;
  }

  protected isStart(byte: number): boolean {
    return byte === HEAD;
  }

  protected attempt(b: Buffer, pos: number): Attempt<R2000Msg> {
    if (pos + 1 >= b.length) return { kind: 'need' };
    const len = b[pos + 1] as number;
    if (len < 3) {
      return {
        kind: 'bad',
        error: protoError('PROTO_ERR_RFID_LENGTH', {
          framing: 'r2000',
          reason: `Len ${len} is below 3 (Adr Cmd Check)`,
        }),
      };
    }
    const end = pos + len + 2;
    if (end > b.length) return { kind: 'need' };
    const want = check(b, pos, end - 1);
    const got = b[end - 1] as number;
    if (got !== want) {
      return {
        kind: 'bad',
        error: protoError('PROTO_ERR_RFID_CRC', {
          framing: 'r2000',
          got: `0x${hex2(got)}`,
          want: `0x${hex2(want)}`,
          bytes: hexHead(b, pos, end),
        }),
      };
    }
    const addr = b[pos + 2] as number;
    const cmd = b[pos + 3] as number;
    const d = b.subarray(pos + 4, end - 1);
    const r = this.from === 'host' ? decodeHost(addr, cmd, d) : decodeReader(addr, cmd, d);
    return r.ok
      ? { kind: 'frame', length: len + 2, msg: r.msg }
      : { kind: 'frame', length: len + 2, error: r.error };
  }
}

/** Parses exactly one complete frame; throws the first error (for tests and tools). */
export function parse(bytes: Uint8Array, from: 'host' | 'reader'): R2000Msg {
  const p = new R2000Parser({ from });
  const r = p.push(bytes);
  if (r.errors.length > 0) throw r.errors[0];
  if (p.pending > 0) {
    throw protoError('PROTO_ERR_RFID_TRUNCATED', {
      pending: p.pending,
      bytes: hexHead(bytes, 0, bytes.length),
    });
  }
  const f = r.frames[0];
  if (!f || r.frames.length !== 1) {
    throw protoError('PROTO_ERR_RFID_PAYLOAD', {
      framing: 'r2000',
      reason: `expected one frame, found ${r.frames.length}`,
      bytes: hexHead(bytes, 0, bytes.length),
    });
  }
  return f.msg;
}
