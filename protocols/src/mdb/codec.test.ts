import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameParser, type MdbMessage, parse, serialize, SYNC_PERIPHERAL, SYNC_VMC } from './codec.ts';
import { ERROR_VECTORS, hexBytes, VECTORS } from './vectors.ts';

describe('vending serial codec vectors', () => {
  for (const v of VECTORS) {
    it(`${v.name}: parse, serialize, round trip`, () => {
      const bytes = hexBytes(v.bytes);
      expect(parse(bytes)).toEqual(v.msg);
      expect(serialize(v.msg).toString('hex')).toBe(bytes.toString('hex'));
      expect(parse(serialize(v.msg))).toEqual(v.msg);
    });
  }
  for (const v of ERROR_VECTORS) {
    it(`refuses ${v.name} with ${v.code}`, () => {
      const p = new FrameParser();
      const r = p.push(hexBytes(v.bytes));
      const errors = [...r.errors, ...p.idle().errors];
      expect(errors.map((e) => e.code)).toContain(v.code);
      expect(errors[0]?.code).toBe(v.code);
    });
  }
  it('refuses out-of-range fields on serialize', () => {
    expect(() => serialize({ dir: 'vmc', addr: 0x10, type: 'VEND_REQUEST', price: 70000, item: 1 })).toThrow(
      /price=70000/,
    );
    try {
      serialize({ dir: 'peripheral', type: 'MALFUNCTION', code: 300 });
      expect.unreachable();
    } catch (e) {
      expect((e as { code: string }).code).toBe('PROTO_ERR_MDB_FIELD');
    }
  });
  it('garbage before a frame is reported and the frame still parsed', () => {
    const r = new FrameParser().push(hexBytes('ff fe 02 01 12 12'));
    expect(r.frames.map((f) => f.msg.type)).toEqual(['POLL']);
    expect(r.errors[0]?.details).toMatchObject({ skipped: 2 });
  });
});

describe('FrameParser incremental input', () => {
  const all = Buffer.concat(VECTORS.map((v) => hexBytes(v.bytes)));
  it('byte-at-a-time input yields every frame in order', () => {
    const p = new FrameParser();
    const got: MdbMessage[] = [];
    for (const byte of all) {
      const r = p.push(Buffer.from([byte]));
      expect(r.errors).toEqual([]);
      got.push(...r.frames.map((f) => f.msg));
    }
    expect(got).toEqual(VECTORS.map((v) => v.msg));
    expect(p.pending).toBe(0);
  });
  it('a bad-checksum frame is dropped and the next frame survives (resync)', () => {
    const p = new FrameParser();
    const r = p.push(hexBytes('02 06 13 00 00 fa 00 0c 18   02 01 12 12'));
    expect(r.errors.map((e) => e.code)).toContain('PROTO_ERR_MDB_CHECKSUM');
    expect(r.frames.map((f) => f.msg.type)).toEqual(['POLL']);
  });
  it('a false SYNC with a long LEN does not stall a short frame after idle()', () => {
    const p = new FrameParser();
    const r1 = p.push(hexBytes('02 20   02 01 12 12'));
    expect(r1.frames).toEqual([]);
    const r2 = p.idle();
    expect(r2.frames.map((f) => f.msg.type)).toEqual(['POLL']);
    expect(r2.errors[0]?.code).toBe('PROTO_ERR_MDB_TRUNCATED');
  });
  it('accept filters the other side (own echo)', () => {
    const p = new FrameParser({ accept: 'vmc' });
    const r = p.push(hexBytes('03 00 00  02 01 12 12'));
    expect(r.frames.map((f) => f.msg.type)).toEqual(['POLL']);
  });
});

const arbMsg: fc.Arbitrary<MdbMessage> = fc
  .constantFrom(...VECTORS.map((v) => v.msg))
  .chain((m): fc.Arbitrary<MdbMessage> => {
    if (m.type === 'VEND_REQUEST') {
      return fc.record({ price: fc.nat(0xffff), item: fc.nat(0xffff) }).map((x) => ({ ...m, ...x }));
    }
    if (m.type === 'VEND_APPROVED') return fc.nat(0xffff).map((amount) => ({ ...m, amount }));
    if (m.type === 'DIAG_TEMPERATURE')
      return fc.integer({ min: -32768, max: 32767 }).map((deciCelsius) => ({ ...m, deciCelsius }));
    return fc.constant(m);
  });

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

describe('FrameParser fuzz', () => {
  it('random bytes in random fragments never throw', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(400), { maxLength: 20 }),
        (bytes, cuts) => {
          const p = new FrameParser();
          for (const c of fragment(Buffer.from(bytes), cuts)) p.push(c);
          p.idle();
          expect(p.pending).toBe(0);
        },
      ),
      { numRuns: 500 },
    );
  });
  it('never loses valid frames embedded in noise, however fragmented', () => {
    // Noise here holds no SYNC byte: a SYNC in noise can open a false frame whose
    // checksum matches by chance (1/256), which MDB covers by the peer's retry, not the parser.
    const noise = fc
      .uint8Array({ maxLength: 40 })
      .map((a) => a.filter((b) => b !== SYNC_VMC && b !== SYNC_PERIPHERAL));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(noise, arbMsg), { minLength: 1, maxLength: 8 }),
        noise,
        fc.array(fc.nat(600), { maxLength: 30 }),
        (parts, tail, cuts) => {
          const stream = Buffer.concat([
            ...parts.flatMap(([n, m]) => [Buffer.from(n), serialize(m)]),
            Buffer.from(tail),
          ]);
          const p = new FrameParser();
          const got: MdbMessage[] = [];
          for (const c of fragment(stream, cuts)) got.push(...p.push(c).frames.map((f) => f.msg));
          got.push(...p.idle().frames.map((f) => f.msg));
          expect(got).toEqual(parts.map(([, m]) => m));
        },
      ),
      { numRuns: 500 },
    );
  });
  it('a valid frame after arbitrary noise (SYNC bytes included) is found once the line idles', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 60 }), arbMsg, (n, m) => {
        const p = new FrameParser();
        const frames = [...p.push(Buffer.from(n)).frames, ...p.idle().frames];
        frames.push(...p.push(serialize(m)).frames);
        expect(frames.at(-1)?.msg).toEqual(m);
      }),
      { numRuns: 500 },
    );
  });
});
