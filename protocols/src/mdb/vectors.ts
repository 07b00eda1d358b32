/**
 * Test vectors for the vending serial link, annotated byte by byte (house style 2, after
 * mqtt-packet). Each valid vector is parsed, serialised and round-tripped; each error
 * vector must be refused with the named code. Shared with the driver and simulator tests.
 */
import type { ProtoErrorCode } from '../errors.ts';
import type { MdbMessage } from './codec.ts';

export interface Vector {
  name: string;
  /** Bytes as hex pairs; comments after `#` annotate each field. */
  bytes: string;
  msg: MdbMessage;
}

export interface ErrorVector {
  name: string;
  bytes: string;
  code: ProtoErrorCode;
}

/** Strips `# comments` and whitespace: 'aa bb # x' → Buffer<aa bb>. */
export function hexBytes(annotated: string): Buffer {
  const hex = annotated
    .split('\n')
    .map((l) => l.replace(/#.*$/, ''))
    .join('')
    .replace(/\s+/g, '');
  return Buffer.from(hex, 'hex');
}

const V = 'vmc' as const;
const P = 'peripheral' as const;
const A = 0x10 as const;

export const VECTORS: Vector[] = [
  {
    name: 'RESET (VMC → cashless #1)',
    bytes: `02     # SYNC: from VMC (MDB mode bit on address byte)
            01     # LEN: 1 body byte
            10     # address 0x10 (cashless #1) | command 0 RESET
            10     # CHK = 0x10`,
    msg: { dir: V, addr: A, type: 'RESET' },
  },
  {
    name: 'POLL (cashless #2)',
    bytes: `02 01  # SYNC VMC, LEN 1
            62     # address 0x60 (cashless #2) | command 2 POLL
            62     # CHK`,
    msg: { dir: V, addr: 0x60, type: 'POLL' },
  },
  {
    name: 'SETUP config data',
    bytes: `02 06  # SYNC VMC, LEN 6
            11     # 0x10 | SETUP
            00     # subcommand 0 config data
            03     # VMC feature level 3
            04 05  # display columns 4, rows 5
            01     # display info
            1e     # CHK = 11+00+03+04+05+01 = 0x1e`,
    msg: { dir: V, addr: A, type: 'SETUP_CONFIG', featureLevel: 3, columns: 4, rows: 5, displayInfo: 1 },
  },
  {
    name: 'SETUP max/min prices',
    bytes: `02 06  # SYNC VMC, LEN 6
            11 01  # SETUP, subcommand 1 max/min prices
            27 10  # max price 10000 (scaled units = cents)
            00 0a  # min price 10
            53     # CHK = 11+01+27+10+00+0a = 0x53`,
    msg: { dir: V, addr: A, type: 'SETUP_PRICES', maxPrice: 10000, minPrice: 10 },
  },
  {
    name: 'READER ENABLE',
    bytes: `02 02 14 01  # SYNC VMC, LEN 2, 0x10|READER, subcommand 1 ENABLE
            15           # CHK`,
    msg: { dir: V, addr: A, type: 'READER_ENABLE' },
  },
  {
    name: 'READER DISABLE',
    bytes: '02 02 14 00 14 # SYNC, LEN 2, READER, DISABLE, CHK',
    msg: { dir: V, addr: A, type: 'READER_DISABLE' },
  },
  {
    name: 'READER CANCEL',
    bytes: '02 02 14 02 16 # SYNC, LEN 2, READER, CANCEL, CHK',
    msg: { dir: V, addr: A, type: 'READER_CANCEL' },
  },
  {
    name: 'VEND REQUEST',
    bytes: `02 06  # SYNC VMC, LEN 6
            13 00  # 0x10|VEND, subcommand 0 REQUEST
            00 fa  # price 250
            00 0c  # item (slot) 12
            19     # CHK = 13+00+00+fa+00+0c = 0x119 & 0xff = 0x19`,
    msg: { dir: V, addr: A, type: 'VEND_REQUEST', price: 250, item: 12 },
  },
  {
    name: 'VEND CANCEL',
    bytes: '02 02 13 01 14 # SYNC, LEN 2, VEND, CANCEL, CHK',
    msg: { dir: V, addr: A, type: 'VEND_CANCEL' },
  },
  {
    name: 'VEND SUCCESS',
    bytes: `02 04  # SYNC VMC, LEN 4
            13 02  # VEND, subcommand 2 SUCCESS
            00 0c  # item 12
            21     # CHK`,
    msg: { dir: V, addr: A, type: 'VEND_SUCCESS', item: 12 },
  },
  {
    name: 'VEND FAILURE',
    bytes: '02 02 13 03 16 # SYNC, LEN 2, VEND, subcommand 3 FAILURE, CHK',
    msg: { dir: V, addr: A, type: 'VEND_FAILURE' },
  },
  {
    name: 'SESSION COMPLETE',
    bytes: '02 02 13 04 17 # SYNC, LEN 2, VEND, subcommand 4 SESSION COMPLETE, CHK',
    msg: { dir: V, addr: A, type: 'SESSION_COMPLETE' },
  },
  {
    name: 'DIAG temperature −2.5 °C (storelink extension)',
    bytes: `02 05  # SYNC VMC, LEN 5
            17 ff  # 0x10|EXPANSION, 0xFF diagnostics
            01     # kind 1 temperature
            ff e7  # int16 -25 tenths of a degree
            fd     # CHK = 17+ff+01+ff+e7 = 0x2fd & 0xff`,
    msg: { dir: V, addr: A, type: 'DIAG_TEMPERATURE', deciCelsius: -25 },
  },
  {
    name: 'DIAG stock',
    bytes: `02 07 17 ff  # SYNC VMC, LEN 7, EXPANSION, diagnostics
            02           # kind 2 stock
            00 0c        # item 12
            00 07        # count 7
            2b           # CHK`,
    msg: { dir: V, addr: A, type: 'DIAG_STOCK', item: 12, count: 7 },
  },
  {
    name: 'DIAG event EJL active',
    bytes: `02 07 17 ff  # SYNC VMC, LEN 7, EXPANSION, diagnostics
            03           # kind 3 EVA-DTS event
            01           # active
            45 4a 4c     # "EJL" failed to drop
            f5           # CHK`,
    msg: { dir: V, addr: A, type: 'DIAG_EVENT', code: 'EJL', active: true },
  },
  {
    name: 'DIAG drop (board-side drop sensor)',
    bytes: `02 05 17 ff  # SYNC VMC, LEN 5, EXPANSION, diagnostics
            04           # kind 4 drop sensor fired
            00 0c        # item 12
            26           # CHK = 17+ff+04+0c = 0x126 & 0xff`,
    msg: { dir: V, addr: A, type: 'DIAG_DROP', item: 12 },
  },
  {
    name: 'ACK from peripheral',
    bytes: `03     # SYNC: from peripheral
            00     # LEN 0: control frame
            00     # ACK (no checksum, as in MDB)`,
    msg: { dir: P, type: 'ACK' },
  },
  {
    name: 'NAK from peripheral',
    bytes: '03 00 ff # SYNC periph, control, NAK',
    msg: { dir: P, type: 'NAK' },
  },
  { name: 'ACK from VMC', bytes: '02 00 00 # SYNC VMC, control, ACK', msg: { dir: V, type: 'ACK' } },
  {
    name: 'RET from VMC',
    bytes: '02 00 aa # SYNC VMC, control, RET (retransmit)',
    msg: { dir: V, type: 'RET' },
  },
  {
    name: 'JUST RESET',
    bytes: `03 01  # SYNC periph, LEN 1
            00     # JUST RESET (distinct from ACK by LEN)
            00     # CHK`,
    msg: { dir: P, type: 'JUST_RESET' },
  },
  {
    name: 'READER CONFIG',
    bytes: `03 08  # SYNC periph, LEN 8
            01     # READER CONFIG
            01     # reader feature level 1
            11 56  # country code 0x1156 (ISO 4217 156 CNY, BCD with leading 1)
            01     # scale factor 1
            02     # decimal places 2
            05     # max response time 5 s
            00     # options
            71     # CHK`,
    msg: {
      dir: P,
      type: 'READER_CONFIG',
      featureLevel: 1,
      countryCode: 0x1156,
      scaleFactor: 1,
      decimalPlaces: 2,
      maxResponseTime: 5,
      options: 0,
    },
  },
  {
    name: 'BEGIN SESSION (standard, 3 bytes)',
    bytes: `03 03  # SYNC periph, LEN 3
            03     # BEGIN SESSION
            01 f4  # funds 500
            f8     # CHK`,
    msg: { dir: P, type: 'BEGIN_SESSION', funds: 500 },
  },
  {
    name: 'BEGIN SESSION with remote selection (storelink extension, 5 bytes)',
    bytes: `03 05  # SYNC periph, LEN 5
            03     # BEGIN SESSION
            00 fa  # funds 250
            00 0c  # item 12 chosen on the phone
            09     # CHK = 03+fa+0c = 0x109 & 0xff`,
    msg: { dir: P, type: 'BEGIN_SESSION', funds: 250, item: 12 },
  },
  {
    name: 'SESSION CANCEL REQUEST',
    bytes: '03 01 04 04 # LEN 1, 0x04, CHK',
    msg: { dir: P, type: 'SESSION_CANCEL_REQUEST' },
  },
  {
    name: 'VEND APPROVED',
    bytes: `03 03  # SYNC periph, LEN 3
            05     # VEND APPROVED
            00 fa  # amount 250
            ff     # CHK`,
    msg: { dir: P, type: 'VEND_APPROVED', amount: 250 },
  },
  { name: 'VEND DENIED', bytes: '03 01 06 06 # LEN 1, 0x06, CHK', msg: { dir: P, type: 'VEND_DENIED' } },
  { name: 'END SESSION', bytes: '03 01 07 07 # LEN 1, 0x07, CHK', msg: { dir: P, type: 'END_SESSION' } },
  { name: 'CANCELLED', bytes: '03 01 08 08 # LEN 1, 0x08, CHK', msg: { dir: P, type: 'CANCELLED' } },
  {
    name: 'MALFUNCTION',
    bytes: '03 02 0a 13 1d # LEN 2, MALFUNCTION, code 0x13, CHK',
    msg: { dir: P, type: 'MALFUNCTION', code: 0x13 },
  },
  {
    name: 'OUT OF SEQUENCE',
    bytes: '03 01 0b 0b # LEN 1, 0x0B, CHK',
    msg: { dir: P, type: 'OUT_OF_SEQUENCE' },
  },
];

export const ERROR_VECTORS: ErrorVector[] = [
  {
    name: 'bad checksum',
    bytes: '02 01 12 13 # POLL with CHK 0x13 instead of 0x12',
    code: 'PROTO_ERR_MDB_CHECKSUM',
  },
  { name: 'LEN over 36', bytes: '02 25 # LEN 37', code: 'PROTO_ERR_MDB_LENGTH' },
  {
    name: 'VEND REQUEST too short',
    bytes: '02 04 13 00 00 fa 0d # VEND REQUEST without item, valid CHK',
    code: 'PROTO_ERR_MDB_LENGTH',
  },
  {
    name: 'unknown VEND subcommand',
    bytes: '02 02 13 09 1c # VEND sub 0x09',
    code: 'PROTO_ERR_MDB_UNKNOWN_COMMAND',
  },
  {
    name: 'address of a coin changer',
    bytes: '02 01 08 08 # address 0x08',
    code: 'PROTO_ERR_MDB_UNKNOWN_COMMAND',
  },
  {
    name: 'unknown poll response',
    bytes: '03 01 0c 0c # response 0x0C',
    code: 'PROTO_ERR_MDB_UNKNOWN_COMMAND',
  },
  { name: 'unknown control byte', bytes: '03 00 55 # control 0x55', code: 'PROTO_ERR_MDB_UNKNOWN_COMMAND' },
  {
    name: 'garbage before a frame',
    bytes: 'ff fe 02 01 12 12 # two noise bytes, then POLL',
    code: 'PROTO_ERR_MDB_GARBAGE',
  },
  {
    name: 'truncated frame',
    bytes: '02 06 13 00 00 # VEND REQUEST cut off',
    code: 'PROTO_ERR_MDB_TRUNCATED',
  },
  {
    name: 'DIAG event with lowercase code',
    bytes: '02 06 17 ff 03 01 65 6a e9 # "ej", CHK',
    code: 'PROTO_ERR_MDB_LENGTH',
  },
];
