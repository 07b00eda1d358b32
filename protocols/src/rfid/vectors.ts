/**
 * Test vectors for the two RFID reader framings, annotated byte by byte (house style 2,
 * after mqtt-packet). Each valid vector is parsed, serialised and round-tripped; each error
 * vector must be refused with the named code. Shared with the driver and simulator tests.
 * Chafon replies marked "published" are the chafon-rfid project's test vectors
 * (tests/test_uhfreader288.py); the R2000 SET_WORK_ANTENNA / REAL_TIME_INVENTORY frames are
 * the commonly published examples for reader address 0x01.
 */
import type { ProtoErrorCode } from '../errors.ts';
import type { ChafonMsg } from './chafon.ts';
import type { R2000Msg } from './r2000.ts';

export interface Vector<M> {
  name: string;
  /** Which side sent it (the parser reads one side). */
  from: 'host' | 'reader';
  /** Bytes as hex pairs; comments after `#` annotate each field. */
  bytes: string;
  msg: M;
}

export interface ErrorVector {
  name: string;
  from: 'host' | 'reader';
  bytes: string;
  code: ProtoErrorCode;
}

export const CHAFON_VECTORS: Array<Vector<ChafonMsg>> = [
  {
    name: 'published inventory reply, one tag (RESP_TAGS_1)',
    from: 'reader',
    bytes: `15                        # Len 0x15 = 21: 21 more bytes follow (22 in all)
            00                        # Adr 0x00
            01                        # reCmd 0x01 TAG_INVENTORY
            03                        # Status 0x03 MORE_FRAMES: the round continues
            01                        # antenna bitmask 0x01 = antenna 1
            01                        # 1 tag in this frame
            0c                        # tag 1: EPC length 12
            000000000000000000000313  # EPC (96 bits)
            6b                        # RSSI byte 0x6b
            b1 a5                     # CRC-16/0x8408 of Len..RSSI = 0xa5b1, LSB first`,
    msg: {
      dir: 'reader',
      addr: 0,
      type: 'INVENTORY_REPLY',
      status: 3,
      antenna: 1,
      tags: [{ epc: '000000000000000000000313', rssi: 0x6b }],
    },
  },
  {
    name: 'published inventory reply, end of round with no tags (RESP_NO_TAGS)',
    from: 'reader',
    bytes: `07     # Len 7
            00     # Adr 0x00
            01     # reCmd TAG_INVENTORY
            01     # Status 0x01 COMPLETE: last frame of the round
            01     # antenna 1
            00     # 0 tags
            1e 4b  # CRC 0x4b1e, LSB first`,
    msg: { dir: 'reader', addr: 0, type: 'INVENTORY_REPLY', status: 1, antenna: 1, tags: [] },
  },
  {
    name: 'published inventory reply, two tags (RESP_MULTIPLE_TAGS)',
    from: 'reader',
    bytes: `23 00 01 03                   # Len 35, Adr 0, TAG_INVENTORY, MORE_FRAMES
            01 02                         # antenna 1, 2 tags
            0c 000000000000000000000313 6b # len 12, EPC, RSSI 0x6b
            0c 000000000000000000000314 6c # len 12, EPC, RSSI 0x6c
            70 f2                         # CRC 0xf270`,
    msg: {
      dir: 'reader',
      addr: 0,
      type: 'INVENTORY_REPLY',
      status: 3,
      antenna: 1,
      tags: [
        { epc: '000000000000000000000313', rssi: 0x6b },
        { epc: '000000000000000000000314', rssi: 0x6c },
      ],
    },
  },
  {
    name: '288M inventory command, chafon-rfid defaults (data 0f0001000000008014)',
    from: 'host',
    bytes: `0d     # Len 13
            ff     # Adr 0xFF broadcast
            01     # Cmd TAG_INVENTORY
            0f     # Q = 15 (no flag bits)
            00     # session S0
            01     # mask source 1 (EPC)
            00 00  # mask start address 0
            00     # mask length 0 bits (no mask)
            00     # target A
            80     # antenna 0x80 | 0 = antenna 1
            14     # scan time 0x14 x 100 ms = 2 s
            c0 3a  # CRC 0x3ac0, LSB first`,
    msg: {
      dir: 'host',
      addr: 0xff,
      type: 'INVENTORY',
      q: 0x0f,
      session: 0,
      maskSource: 1,
      maskAddr: 0,
      maskLen: 0,
      target: 0,
      antenna: 1,
      scanTime: 0x14,
    },
  },
  {
    name: 'inventory command on antenna 2 (address 0)',
    from: 'host',
    bytes:
      '0d 00 01 0f 00 01 0000 00 00 81 14 85f3 # Len, Adr 0, INVENTORY, ..., antenna 0x81 = 2, scan 2 s, CRC',
    msg: {
      dir: 'host',
      addr: 0,
      type: 'INVENTORY',
      q: 0x0f,
      session: 0,
      maskSource: 1,
      maskAddr: 0,
      maskLen: 0,
      target: 0,
      antenna: 2,
      scanTime: 0x14,
    },
  },
  {
    name: 'inventory answered with antenna error (status 0xF8)',
    from: 'reader',
    bytes: `05 00 01  # Len 5, Adr 0, reCmd TAG_INVENTORY
            f8        # Status 0xF8 ANTENNA_ERROR, no data
            69 0f     # CRC`,
    msg: { dir: 'reader', addr: 0, type: 'REPLY', cmd: 1, status: 0xf8, data: '' },
  },
  {
    name: 'other command, kept raw (0x21 get reader info)',
    from: 'host',
    bytes: '04 ff 21 19 95 # Len 4, broadcast, Cmd 0x21, CRC',
    msg: { dir: 'host', addr: 0xff, type: 'COMMAND', cmd: 0x21, data: '' },
  },
];

export const R2000_VECTORS: Array<Vector<R2000Msg>> = [
  {
    name: 'set work antenna 1 (published A0 04 01 74 00 E7)',
    from: 'host',
    bytes: `a0     # Head
            04     # Len 4 = Adr + Cmd + 1 data byte + Check
            01     # Adr 0x01
            74     # Cmd SET_WORK_ANTENNA
            00     # antenna 0 = port 1
            e7     # Check: -(a0+04+01+74+00) mod 256 = 0xe7`,
    msg: { dir: 'host', addr: 1, type: 'SET_WORK_ANTENNA', antenna: 1 },
  },
  {
    name: 'real-time inventory, one round (published A0 04 01 89 01 D1)',
    from: 'host',
    bytes: 'a0 04 01 89 01 d1 # Head, Len 4, Adr 1, Cmd REAL_TIME_INVENTORY, repeat 1, Check',
    msg: { dir: 'host', addr: 1, type: 'REAL_TIME_INVENTORY', repeat: 1 },
  },
  {
    name: 'set work antenna answered: success',
    from: 'reader',
    bytes: 'a0 04 01 74 10 d7 # Head, Len 4, Adr 1, Cmd 0x74, result 0x10 SUCCESS, Check',
    msg: { dir: 'reader', addr: 1, type: 'RESULT', cmd: 0x74, code: 0x10 },
  },
  {
    name: 'set work antenna answered: antenna missing',
    from: 'reader',
    bytes: 'a0 04 01 74 22 c5 # Head, Len 4, Adr 1, Cmd 0x74, result 0x22 ANTENNA_MISSING, Check',
    msg: { dir: 'reader', addr: 1, type: 'RESULT', cmd: 0x74, code: 0x22 },
  },
  {
    name: 'real-time inventory tag report',
    from: 'reader',
    bytes: `a0                        # Head
            13                        # Len 19 = Adr Cmd + 16 data + Check
            01 89                     # Adr 1, Cmd REAL_TIME_INVENTORY
            1c                        # freq 7 << 2 | antenna 0 (port 1)
            30 00                     # PC 0x3000: EPC length 6 words = 12 bytes
            e2801160600002040000a1b2  # EPC
            4a                        # RSSI 0x4a = 74 - 129 = -55 dBm
            a1                        # Check`,
    msg: {
      dir: 'reader',
      addr: 1,
      type: 'TAG',
      cmd: 0x89,
      antenna: 1,
      freq: 7,
      pc: 0x3000,
      epc: 'e2801160600002040000a1b2',
      rssi: 0x4a,
    },
  },
  {
    name: 'real-time inventory end of round',
    from: 'reader',
    bytes: `a0 0a 01 89   # Head, Len 0x0A (the end-of-round length), Adr 1, Cmd 0x89
            00            # antenna 0 = port 1
            00 26         # read rate 38 tags/s
            00 00 00 0c   # 12 reads in the round
            9a            # Check`,
    msg: {
      dir: 'reader',
      addr: 1,
      type: 'INVENTORY_END',
      cmd: 0x89,
      antenna: 1,
      readRate: 38,
      totalRead: 12,
    },
  },
  {
    name: 'real-time inventory refused: antenna missing',
    from: 'reader',
    bytes: 'a0 04 01 89 22 b0 # Head, Len 4, Adr 1, Cmd 0x89, 0x22 ANTENNA_MISSING, Check',
    msg: { dir: 'reader', addr: 1, type: 'RESULT', cmd: 0x89, code: 0x22 },
  },
];

export const CHAFON_ERROR_VECTORS: ErrorVector[] = [
  {
    name: 'published reply with its last CRC byte flipped',
    from: 'reader',
    bytes: '1500010301010c0000000000000000000003136b b1 a4 # CRC MSB a5 -> a4',
    code: 'PROTO_ERR_RFID_CRC',
  },
  {
    name: 'inventory reply whose antenna byte has two bits',
    from: 'reader',
    bytes: '07 00 01 01 03 00 ae 78 # antenna 0x03: not one antenna; CRC valid',
    code: 'PROTO_ERR_RFID_PAYLOAD',
  },
  {
    name: 'inventory reply claiming 2 tags but holding one',
    from: 'reader',
    bytes: '15 00 01 03 01 02 0c 000000000000000000000313 6b cf 7d # count 2, one tag; CRC valid',
    code: 'PROTO_ERR_RFID_PAYLOAD',
  },
  {
    name: 'frame cut off (line went idle)',
    from: 'reader',
    bytes: '15 00 01 03 01 01 0c 0000 # 9 of 22 bytes',
    code: 'PROTO_ERR_RFID_TRUNCATED',
  },
  {
    name: 'bytes too small to be a Len',
    from: 'reader',
    bytes: '00 01 02 03 04 # none >= 5 (shortest reply)',
    code: 'PROTO_ERR_RFID_GARBAGE',
  },
];

export const R2000_ERROR_VECTORS: ErrorVector[] = [
  {
    name: 'bad check byte',
    from: 'reader',
    bytes: 'a0 04 01 74 10 d8 # check d7 -> d8',
    code: 'PROTO_ERR_RFID_CRC',
  },
  {
    name: 'Len below 3',
    from: 'reader',
    bytes: 'a0 02 01 74 # Len 2 cannot hold Adr Cmd Check',
    code: 'PROTO_ERR_RFID_LENGTH',
  },
  {
    name: 'inventory frame neither tag nor end of round',
    from: 'reader',
    bytes: 'a0 06 01 89 00 30 00 a0 # 3 data bytes: PC 0x3000 announces 12 EPC bytes, none present',
    code: 'PROTO_ERR_RFID_PAYLOAD',
  },
  { name: 'noise without a head byte', from: 'reader', bytes: '01 02 03 ff', code: 'PROTO_ERR_RFID_GARBAGE' },
  {
    name: 'frame cut off',
    from: 'reader',
    bytes: 'a0 13 01 89 1c 30 00 e2 80',
    code: 'PROTO_ERR_RFID_TRUNCATED',
  },
];
