import { decodeTime, isValid } from 'ulidx';
import { describe, expect, test } from 'vitest';
import { newId } from './ids.ts';

describe('newId', () => {
  test('is a valid ULID carrying the given time', () => {
    const t = Date.now() + 10_000;
    const id = newId(t);
    expect(isValid(id)).toBe(true);
    expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(decodeTime(id)).toBe(t);
  });

  test('is strictly increasing within one millisecond and when the clock steps back', () => {
    const t = Date.now() + 20_000;
    let prev = newId(t);
    for (let i = 0; i < 20_000; i++) {
      const id = newId(i < 10_000 ? t : t - 1000);
      expect(id > prev).toBe(true);
      prev = id;
    }
    expect(decodeTime(prev)).toBe(t);
    expect(decodeTime(newId(t + 1))).toBe(t + 1);
  });

  test('rejects a time outside the ULID range', () => {
    expect(() => newId(-1)).toThrow(RangeError);
    expect(() => newId(Number.NaN)).toThrow(RangeError);
  });
});
