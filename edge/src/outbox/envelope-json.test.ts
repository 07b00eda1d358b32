import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { EventEnvelope } from '@storelink/protocols';
import { envelopeJson } from './core.ts';
import { decodeRecord, encodeRecord } from './dedupe.ts';

const envelope = (payload: unknown, mid?: string): EventEnvelope => ({
  id: '01JDZQ6W8Y3V5K9M2N4P6R8T0A',
  type: 'shelf.weight',
  device: 'shelf-01',
  gateway: 'gw-1',
  site: 'site-1',
  ts: 1_700_000_000_000,
  rts: 1_700_000_000_005,
  lane: 'telemetry',
  payload,
  ...(mid === undefined ? {} : { mid }),
  seq: 42,
});

describe('envelopeJson [OUTBOX-WRITE-2]', () => {
  test('with the payload text it is exactly JSON.stringify of the envelope', () => {
    fc.assert(
      fc.property(
        fc.jsonValue(),
        fc.option(fc.string({ minLength: 1, maxLength: 64 }), { nil: undefined }),
        (p, mid) => {
          const e = envelope(p, mid);
          expect(envelopeJson(e, JSON.stringify(p))).toBe(JSON.stringify(e));
        },
      ),
    );
  });

  test('every field, whatever characters or numbers it holds, is written as JSON.stringify writes it', () => {
    const text = fc.string({ unit: 'binary', maxLength: 30 });
    const num = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-0, 1e21, Number.MAX_SAFE_INTEGER));
    fc.assert(
      fc.property(
        fc.record({ id: text, type: text, device: text, gateway: text, site: text, mid: text }),
        num,
        num,
        num,
        fc.jsonValue(),
        (f, ts, rts, seq, p) => {
          const e = { ...envelope(p, f.mid), ...f, ts, rts, seq } as EventEnvelope;
          expect(envelopeJson(e, JSON.stringify(p))).toBe(JSON.stringify(e));
        },
      ),
      { numRuns: 300 },
    );
  });

  test("the device's own spelling is kept and parses to the value the edge validated", () => {
    const text = '{ "grams" : 1.50, "tags":["a" , "b"], "big": 12345678901234567890 }';
    const e = envelope(JSON.parse(text), 'm-1');
    const json = envelopeJson(e, text);
    expect(json).toContain(text);
    expect(JSON.parse(json)).toEqual({ ...e, payload: JSON.parse(text) });
  });

  test('text with a newline or a number that overflows to Infinity is serialised from the value', () => {
    for (const text of ['{"a":\n1}', '{"t":1e999}', '{"t":-2E+400}', `{"n":${'9'.repeat(400)}}`]) {
      const e = envelope(JSON.parse(text));
      const json = envelopeJson(e, text);
      expect(json).toBe(JSON.stringify(e));
      expect(json).not.toContain('\n');
    }
  });
});

describe('dedupe record encoding', () => {
  test('is the JSON of its rows and decodes back to the entries', () => {
    const entry = fc.record({
      device: fc.string(),
      mid: fc.string(),
      lane: fc.constantFrom('tx' as const, 'event' as const, 'telemetry' as const),
      seq: fc.integer({ min: 1 }),
      id: fc.string(),
      rts: fc.nat(),
      ts: fc.nat(),
      type: fc.string(),
    });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 20 }), (entries) => {
        const text = encodeRecord(entries);
        expect(text).toBe(
          JSON.stringify(entries.map((e) => [e.device, e.mid, e.lane, e.seq, e.id, e.rts, e.ts, e.type])),
        );
        expect(decodeRecord(text)).toEqual(entries);
      }),
    );
  });
});
