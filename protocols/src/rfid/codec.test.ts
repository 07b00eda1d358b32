import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chafon, hexBytes, r2000 } from './index.ts';
import { CHAFON_ERROR_VECTORS, CHAFON_VECTORS, R2000_ERROR_VECTORS, R2000_VECTORS } from './vectors.ts';

type AnyParser = {
  push(b: Uint8Array): { frames: Array<{ msg: unknown }>; errors: Array<{ code: string }> };
  idle(): { frames: Array<{ msg: unknown }>; errors: Array<{ code: string }> };
  pending: number;
};

const framings = [
  {
    name: 'chafon',
    vectors: CHAFON_VECTORS,
    errors: CHAFON_ERROR_VECTORS,
    parse: (b: Uint8Array, from: 'host' | 'reader') => chafon.parse(b, from),
    serialize: (m: unknown) => chafon.serialize(m as chafon.ChafonMsg),
    parser: (from: 'host' | 'reader'): AnyParser => new chafon.ChafonParser({ from }),
  },
  {
    name: 'r2000',
    vectors: R2000_VECTORS,
    errors: R2000_ERROR_VECTORS,
    parse: (b: Uint8Array, from: 'host' | 'reader') => r2000.parse(b, from),
    serialize: (m: unknown) => r2000.serialize(m as r2000.R2000Msg),
    parser: (from: 'host' | 'reader'): AnyParser => new r2000.R2000Parser({ from }),
  },
] as const;

for (const f of framings) {
  describe(`${f.name} codec vectors`, () => {
    for (const v of f.vectors) {
      it(`${v.name}: parse, serialize, round trip`, () => {
        const bytes = hexBytes(v.bytes);
        expect(f.parse(bytes, v.from)).toEqual(v.msg);
        expect(f.serialize(v.msg).toString('hex')).toBe(bytes.toString('hex'));
        expect(f.parse(f.serialize(v.msg), v.from)).toEqual(v.msg);
      });
    }
    for (const v of f.errors) {
      it(`refuses ${v.name} with ${v.code}`, () => {
        const p = f.parser(v.from);
        const r = p.push(hexBytes(v.bytes));
        const errors = [...r.errors, ...p.idle().errors];
        expect(errors[0]?.code).toBe(v.code);
        expect(r.frames).toEqual([]);
      });
    }
  });

  describe(`${f.name} incremental input`, () => {
    for (const from of ['host', 'reader'] as const) {
      const vs = f.vectors.filter((v) => v.from === from);
      const all = Buffer.concat(vs.map((v) => hexBytes(v.bytes)));
      it(`${from} frames byte at a time yield every frame in order`, () => {
        const p = f.parser(from);
        const got: unknown[] = [];
        for (const byte of all) {
          const r = p.push(Buffer.from([byte]));
          expect(r.errors).toEqual([]);
          got.push(...r.frames.map((x) => x.msg));
        }
        expect(got).toEqual(vs.map((v) => v.msg));
        expect(p.pending).toBe(0);
      });
    }
    it('a bad frame is dropped and the next frame survives (resync)', () => {
      const good = f.vectors.find((v) => v.from === 'reader')!;
      const bad = f.errors.find((e) => e.code === 'PROTO_ERR_RFID_CRC')!;
      const p = f.parser('reader');
      const r = p.push(Buffer.concat([hexBytes(bad.bytes), hexBytes(good.bytes)]));
      expect(r.errors[0]?.code).toBe('PROTO_ERR_RFID_CRC');
      // Chafon has no head byte: a byte inside the bad frame may announce a long frame and
      // hold the rest until the line goes idle (the driver's inter-byte timeout).
      const frames = [...r.frames, ...p.idle().frames];
      expect(frames.map((x) => x.msg)).toEqual([good.msg]);
    });
  });
}

describe('chafon CRC-16', () => {
  it('the table CRC equals the bitwise definition on any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        expect(chafon.crc16(b)).toBe(chafon.crc16Bitwise(b));
      }),
    );
  });
});

describe('field checks on serialize', () => {
  it('refuses out-of-range antennas and bad EPC hex with PROTO_ERR_RFID_FIELD', () => {
    const bad = [
      () => chafon.serialize(chafon.inventoryCommand(5)),
      () =>
        chafon.serialize({
          dir: 'reader',
          addr: 0,
          type: 'INVENTORY_REPLY',
          status: 1,
          antenna: 1,
          tags: [{ epc: 'XYZ', rssi: 1 }],
        }),
      () => r2000.serialize({ dir: 'host', addr: 1, type: 'SET_WORK_ANTENNA', antenna: 0 }),
      () =>
        r2000.serialize({
          dir: 'reader',
          addr: 1,
          type: 'TAG',
          cmd: 0x89,
          antenna: 1,
          freq: 0,
          pc: 0x3000,
          epc: 'aabb',
          rssi: 1,
        }),
    ];
    for (const fn of bad) {
      try {
        fn();
        expect.unreachable();
      } catch (e) {
        expect((e as { code: string }).code).toBe('PROTO_ERR_RFID_FIELD');
      }
    }
  });
  it('an R2000 tag with a 7-byte body (EPC of 3 bytes is impossible: PC counts words) is the end of round', () => {
    // A 4-byte EPC tag (PC 0x1000) has 8 data bytes; the 7-byte end-of-round never matches a PC.
    const m = r2000.parse(
      r2000.serialize({
        dir: 'reader',
        addr: 1,
        type: 'TAG',
        cmd: 0x89,
        antenna: 2,
        freq: 1,
        pc: 0x1000,
        epc: 'a1a2a3a4',
        rssi: 80,
      }),
      'reader',
    );
    expect(m).toMatchObject({ type: 'TAG', antenna: 2, epc: 'a1a2a3a4' });
  });
});

const arbEpc = fc.uint8Array({ minLength: 2, maxLength: 31 }).map((a) => {
  const even = a.length % 2 === 0 ? a : a.subarray(1);
  return Buffer.from(even).toString('hex');
});
const arbChafonReply: fc.Arbitrary<chafon.ChafonMsg> = fc
  .record({
    status: fc.constantFrom(1, 2, 3, 4),
    antenna: fc.integer({ min: 1, max: 8 }),
    tags: fc.array(fc.record({ epc: arbEpc.filter((e) => e.length <= 24), rssi: fc.nat(255) }), {
      maxLength: 8,
    }),
    addr: fc.nat(255),
  })
  .map((x) => ({ dir: 'reader' as const, type: 'INVENTORY_REPLY' as const, ...x }));
const arbR2000Tag: fc.Arbitrary<r2000.R2000Msg> = fc
  .record({
    antenna: fc.integer({ min: 1, max: 4 }),
    freq: fc.nat(63),
    epc: arbEpc.filter((e) => e.length >= 4),
    rssi: fc.nat(255),
    addr: fc.nat(255),
    pcLow: fc.nat(0x7ff),
  })
  .map(({ pcLow, ...x }) => ({
    dir: 'reader' as const,
    type: 'TAG' as const,
    cmd: 0x89,
    pc: (((x.epc.length / 4) << 11) | pcLow) & 0xffff,
    ...x,
  }));

function fragment(buf: Buffer, cuts: number[]): Buffer[] {
  const pts = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of pts) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

describe('RFID parsers fuzz', () => {
  for (const f of framings) {
    it(`${f.name}: random bytes in random fragments never throw and leave nothing pending after idle`, () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ maxLength: 400 }),
          fc.array(fc.nat(500), { maxLength: 20 }),
          (bytes, cuts) => {
            const p = f.parser('reader');
            for (const c of fragment(Buffer.from(bytes), cuts)) p.push(c);
            p.idle();
            expect(p.pending).toBe(0);
          },
        ),
        { numRuns: 400 },
      );
    });
  }
  it('round trip of generated messages, however fragmented', () => {
    const arb = fc.oneof(
      fc
        .array(arbChafonReply, { minLength: 1, maxLength: 6 })
        .map((ms) => ({ f: framings[0], ms: ms as unknown[] })),
      fc
        .array(arbR2000Tag, { minLength: 1, maxLength: 6 })
        .map((ms) => ({ f: framings[1], ms: ms as unknown[] })),
    );
    fc.assert(
      fc.property(arb, fc.array(fc.nat(2000), { maxLength: 12 }), ({ f, ms }, cuts) => {
        const p = f.parser('reader');
        const got: unknown[] = [];
        const bytes = Buffer.concat(ms.map((m) => f.serialize(m)));
        for (const c of fragment(bytes, cuts)) {
          const r = p.push(c);
          expect(r.errors).toEqual([]);
          got.push(...r.frames.map((x) => x.msg));
        }
        expect(got).toEqual(ms);
      }),
      { numRuns: 300 },
    );
  });
  it('r2000: never loses valid frames after noise without a head byte, however fragmented', () => {
    const noise = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a.filter((b) => b !== r2000.HEAD)));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(noise, arbR2000Tag), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(800), { maxLength: 12 }),
        (parts, cuts) => {
          const p = new r2000.R2000Parser({ from: 'reader' });
          const got: unknown[] = [];
          const bytes = Buffer.concat(parts.flatMap(([n, m]) => [n, r2000.serialize(m)]));
          for (const c of fragment(bytes, cuts)) got.push(...p.push(c).frames.map((x) => x.msg));
          expect(got).toEqual(parts.map(([, m]) => m));
        },
      ),
      { numRuns: 300 },
    );
  });
  it('chafon: a valid frame after a line glitch is recovered once the line goes idle', () => {
    // Chafon frames have no head byte; noise may announce a long frame and hold bytes until
    // the line goes idle (the driver calls idle() after its inter-byte timeout).
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 30 }), arbChafonReply, (n, m) => {
        const p = new chafon.ChafonParser({ from: 'reader' });
        const r1 = p.push(Buffer.concat([Buffer.from(n), chafon.serialize(m)]));
        const r2 = p.idle();
        const got = [...r1.frames, ...r2.frames].map((x) => x.msg);
        expect(got).toContainEqual(m);
      }),
      { numRuns: 300 },
    );
  });
});
