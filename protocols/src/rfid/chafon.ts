/**
 * Chafon / UHFReader-style serial framing (UHFReader18, UHFReader288M, CF-RU5xxx and the
 * many clones; see docs/protocol.md "RFID reader serial links"):
 *
 *   host → reader:  Len Adr Cmd Data[...] CRC-LSB CRC-MSB
 *   reader → host:  Len Adr reCmd Status Data[...] CRC-LSB CRC-MSB
 *
 * Len counts the bytes after itself, the CRC included (a frame with Len N has N+1 bytes).
 * CRC-16: preset 0xFFFF, reflected polynomial 0x8408, over Len..Data, sent LSB first
 * [CHAFON-CRC-1]. Adr 0xFF is broadcast. An inventory reply with status 0x03 is followed by
 * more frames of the same round; status 0x01 ends it [CHAFON-INV-1].
 * The codec does no I/O (protocols/ rule).
 */
import { protoError, type StorelinkError } from '../errors.ts';
import { type Attempt, hex2, hexHead, RfidStreamParser } from './stream.ts';

export const BROADCAST = 0xff;
export const CMD = {
  INVENTORY: 0x01,
  READ_DATA: 0x02,
  WRITE_DATA: 0x03,
  SINGLE_TAG_INVENTORY: 0x0f,
  GET_READER_INFO: 0x21,
} as const;

/** Status byte of a reply [CHAFON-INV-1]. */
export const STATUS = {
  SUCCESS: 0x00,
  COMPLETE: 0x01,
  TIMEOUT: 0x02,
  MORE_FRAMES: 0x03,
  MEMORY_EXCEEDED: 0x04,
  ANTENNA_ERROR: 0xf8,
  NO_TAG: 0xfb,
  COMMAND_ERROR: 0xfe,
  PARAMETER_ERROR: 0xff,
} as const;

/** Statuses that carry an inventory result body ([antenna mask][count][tags]). */
export const INVENTORY_STATUSES: readonly number[] = [
  STATUS.COMPLETE,
  STATUS.TIMEOUT,
  STATUS.MORE_FRAMES,
  STATUS.MEMORY_EXCEEDED,
];

export interface ChafonTag {
  /** EPC bytes as lower-case hex. */
  epc: string;
  /** Raw RSSI byte as the reader sends it (higher = stronger). */
  rssi: number;
}

export type ChafonHostMsg =
  /** UHFReader288M tag inventory (cmd 0x01, 9 data bytes). */
  | {
      dir: 'host';
      addr: number;
      type: 'INVENTORY';
      /** Q value 0..15 with the flag bits above it (stats<<7 | strategy<<6 | fastId<<5 | Q). */
      q: number;
      /** 0..3 = S0..S3, 0xFF = reader chooses. */
      session: number;
      maskSource: number;
      maskAddr: number;
      maskLen: number;
      target: number;
      /** Antenna port 1..4 (sent as 0x80 | (antenna-1)). */
      antenna: number;
      /** Inventory time budget in units of 100 ms. */
      scanTime: number;
    }
  /** Any other command, data kept as hex. */
  | { dir: 'host'; addr: number; type: 'COMMAND'; cmd: number; data: string };

export type ChafonReaderMsg =
  /** One frame of an inventory round's answer [CHAFON-INV-1]. */
  | {
      dir: 'reader';
      addr: number;
      type: 'INVENTORY_REPLY';
      status: number;
      /** Antenna port 1..8 (from the one-hot antenna byte). */
      antenna: number;
      tags: ChafonTag[];
    }
  /** Any other reply (or an inventory error status such as 0xF8 antenna error), data as hex. */
  | { dir: 'reader'; addr: number; type: 'REPLY'; cmd: number; status: number; data: string };

export type ChafonMsg = ChafonHostMsg | ChafonReaderMsg;

/** CRC-16 preset 0xFFFF, polynomial 0x8408 (reflected CCITT) [CHAFON-CRC-1]. */
export function crc16(bytes: Uint8Array, from = 0, to = bytes.length): number {
  let crc = 0xffff;
  for (let i = from; i < to; i++)
    crc = (crc >>> 8) ^ (CRC_TABLE[(crc ^ (bytes[i] as number)) & 0xff] as number);
  return crc;
}

/** Bitwise definition of the same CRC (one byte at a time), kept as the reference the table is built from. */
export function crc16Bitwise(bytes: Uint8Array, from = 0, to = bytes.length): number {
  let crc = 0xffff;
  for (let i = from; i < to; i++) {
    crc ^= bytes[i] as number;
    for (let j = 0; j < 8; j++) crc = crc & 1 ? (crc >>> 1) ^ 0x8408 : crc >>> 1;
  }
  return crc;
}

/** Byte-at-a-time table for the reflected polynomial 0x8408 (8x fewer steps than bitwise). */
const CRC_TABLE = Uint16Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let j = 0; j < 8; j++) c = c & 1 ? (c >>> 1) ^ 0x8408 : c >>> 1;
  return c;
});

function u8(field: string, v: number, max = 0xff): number {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw protoError('PROTO_ERR_RFID_FIELD', { field, value: v, reason: `must be 0..${max}` });
  }
  return v;
}

function hexData(field: string, data: string): number[] {
  if (!/^(?:[0-9a-f]{2})*$/.test(data)) {
    throw protoError('PROTO_ERR_RFID_FIELD', { field, value: data, reason: 'lower-case hex byte pairs' });
  }
  return [...Buffer.from(data, 'hex')];
}

/** The bytes between the address and the CRC: [cmd or reCmd, status?, data...]. */
function encodeBody(msg: ChafonMsg): number[] {
  switch (msg.type) {
    case 'INVENTORY':
      return [
        CMD.INVENTORY,
        u8('q', msg.q),
        u8('session', msg.session),
        u8('maskSource', msg.maskSource),
        (u8('maskAddr', msg.maskAddr, 0xffff) >> 8) & 0xff,
        msg.maskAddr & 0xff,
        u8('maskLen', msg.maskLen),
        u8('target', msg.target),
        0x80 | (u8('antenna', msg.antenna - 1, 3) & 0x03),
        u8('scanTime', msg.scanTime),
      ];
    case 'COMMAND':
      return [u8('cmd', msg.cmd), ...hexData('data', msg.data)];
    case 'INVENTORY_REPLY': {
      u8('antenna', msg.antenna - 1, 7);
      const body = [
        CMD.INVENTORY,
        u8('status', msg.status),
        1 << (msg.antenna - 1),
        u8('tags', msg.tags.length),
      ];
      for (const t of msg.tags) {
        const epc = hexData('epc', t.epc);
        if (epc.length < 1 || epc.length > 62) {
          throw protoError('PROTO_ERR_RFID_FIELD', { field: 'epc', value: t.epc, reason: '1..62 bytes' });
        }
        body.push(epc.length, ...epc, u8('rssi', t.rssi));
      }
      return body;
    }
    case 'REPLY':
      return [u8('cmd', msg.cmd), u8('status', msg.status), ...hexData('data', msg.data)];
  }
}

/** Serialises one message into one frame. Throws PROTO_ERR_RFID_FIELD on out-of-range fields. */
export function serialize(msg: ChafonMsg): Buffer {
  const body = encodeBody(msg);
  const len = body.length + 1 /* addr */ + 2; /* crc */
  if (len > 0xff) {
    throw protoError('PROTO_ERR_RFID_FIELD', {
      field: 'length',
      value: len + 1,
      reason: 'frame over 256 bytes',
    });
  }
  const out = Buffer.allocUnsafe(len + 1);
  out[0] = len;
  out[1] = u8('addr', msg.addr);
  for (let i = 0; i < body.length; i++) out[2 + i] = body[i] as number;
  const crc = crc16(out, 0, len - 1);
  out[len - 1] = crc & 0xff; // [CHAFON-CRC-1] LSB first
  out[len] = crc >>> 8;
  return out;
}

type Decoded<M> = { ok: true; msg: M } | { ok: false; error: StorelinkError };

function payloadError(reason: string, bytes: Uint8Array): { ok: false; error: StorelinkError } {
  return {
    ok: false,
    error: protoError('PROTO_ERR_RFID_PAYLOAD', {
      framing: 'chafon',
      reason,
      bytes: hexHead(bytes, 0, bytes.length),
    }),
  };
}

/** Decodes a CRC-checked host frame (without Len and CRC: [Adr Cmd Data...]). */
export function decodeHost(f: Uint8Array): Decoded<ChafonHostMsg> {
  const addr = f[0] as number;
  const cmd = f[1] as number;
  const d = f.subarray(2);
  if (cmd === CMD.INVENTORY && d.length === 9 && ((d[7] as number) & 0xfc) === 0x80) {
    return {
      ok: true,
      msg: {
        dir: 'host',
        addr,
        type: 'INVENTORY',
        q: d[0] as number,
        session: d[1] as number,
        maskSource: d[2] as number,
        maskAddr: ((d[3] as number) << 8) | (d[4] as number),
        maskLen: d[5] as number,
        target: d[6] as number,
        antenna: ((d[7] as number) & 0x03) + 1,
        scanTime: d[8] as number,
      },
    };
  }
  return { ok: true, msg: { dir: 'host', addr, type: 'COMMAND', cmd, data: Buffer.from(d).toString('hex') } };
}

/** Decodes a CRC-checked reader frame (without Len and CRC: [Adr reCmd Status Data...]). */
export function decodeReader(f: Uint8Array): Decoded<ChafonReaderMsg> {
  const addr = f[0] as number;
  const cmd = f[1] as number;
  const status = f[2] as number;
  const d = f.subarray(3);
  if (cmd !== CMD.INVENTORY || !INVENTORY_STATUSES.includes(status)) {
    return {
      ok: true,
      msg: { dir: 'reader', addr, type: 'REPLY', cmd, status, data: Buffer.from(d).toString('hex') },
    };
  }
  if (d.length < 2) return payloadError(`inventory reply has ${d.length} data bytes, needs 2+`, f);
  const mask = d[0] as number;
  if (mask === 0 || (mask & (mask - 1)) !== 0) {
    return payloadError(`antenna byte 0x${hex2(mask)} is not one antenna bit`, f);
  }
  const antenna = 31 - Math.clz32(mask) + 1;
  const count = d[1] as number;
  const tags: ChafonTag[] = [];
  let i = 2;
  for (let k = 0; k < count; k++) {
    const n = d[i];
    if (n === undefined || n < 1 || n > 62 || i + 1 + n + 1 > d.length) {
      return payloadError(`tag ${k + 1} of ${count} runs past the frame`, f);
    }
    tags.push({
      epc: Buffer.from(d.subarray(i + 1, i + 1 + n)).toString('hex'),
      rssi: d[i + 1 + n] as number,
    });
    i += n + 2;
  }
  if (i !== d.length) return payloadError(`${d.length - i} bytes after ${count} tags`, f);
  return { ok: true, msg: { dir: 'reader', addr, type: 'INVENTORY_REPLY', status, antenna, tags } };
}

export interface ChafonParserOptions {
  /** Which side's frames this parser reads: the driver reads 'reader', the simulator 'host'. */
  from: 'host' | 'reader';
}

/** Incremental parser for one direction of a Chafon link [RFID-FRAME-1]. */
export class ChafonParser extends RfidStreamParser<ChafonMsg> {
  private readonly from: 'host' | 'reader';
  private readonly minLen: number;

  constructor(opts: ChafonParserOptions) {
    super();
    this.from = opts.from;
    // Smallest frame: Len Adr Cmd CRC CRC (host) / Len Adr reCmd Status CRC CRC (reader).
    this.minLen = opts.from === 'host' ? 4 : 5;
  }

  protected isStart(byte: number): boolean {
    return byte >= this.minLen;
  }

  protected attempt(b: Buffer, pos: number): Attempt<ChafonMsg> {
    const len = b[pos] as number;
    const end = pos + len + 1;
    if (end > b.length) return { kind: 'need' };
    const want = crc16(b, pos, end - 2);
    const got = (b[end - 2] as number) | ((b[end - 1] as number) << 8);
    if (got !== want) {
      return {
        kind: 'bad',
        error: protoError('PROTO_ERR_RFID_CRC', {
          framing: 'chafon',
          got: `0x${got.toString(16).padStart(4, '0')}`,
          want: `0x${want.toString(16).padStart(4, '0')}`,
          bytes: hexHead(b, pos, end),
        }),
      };
    }
    const inner = b.subarray(pos + 1, end - 2);
    const d = this.from === 'host' ? decodeHost(inner) : decodeReader(inner);
    return d.ok
      ? { kind: 'frame', length: len + 1, msg: d.msg }
      : { kind: 'frame', length: len + 1, error: d.error };
  }
}

/** The 288M default inventory command for one antenna (chafon-rfid G2InventoryCommand defaults). */
export function inventoryCommand(
  antenna: number,
  o: { addr?: number; scanTime?: number; session?: number } = {},
): ChafonHostMsg {
  return {
    dir: 'host',
    addr: o.addr ?? BROADCAST,
    type: 'INVENTORY',
    q: 0x0f,
    session: o.session ?? 0x00,
    maskSource: 0x01,
    maskAddr: 0,
    maskLen: 0,
    target: 0,
    antenna,
    scanTime: o.scanTime ?? 0x14,
  };
}

/** Parses exactly one complete frame; throws the first error (for tests and tools). */
export function parse(bytes: Uint8Array, from: 'host' | 'reader'): ChafonMsg {
  const p = new ChafonParser({ from });
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
      framing: 'chafon',
      reason: `expected one frame, found ${r.frames.length}`,
      bytes: hexHead(bytes, 0, bytes.length),
    });
  }
  return f.msg;
}
